//! Benchmark (not a test; `#[ignore]`, run by `scripts/bench-xdp.sh`): in one run,
//!
//! 1. packets/s through the XDP balancer and through the same lab with nftables DNAT in
//!    the balancer's namespace instead: 64-byte UDP frames over 256 flows from the
//!    client, counted where they arrive (an nftables counter at each backend's input).
//!    The two alternate, `ROUNDS` times each, so that load from elsewhere on the host
//!    falls on both alike; the medians are compared;
//! 2. the program alone: nanoseconds per packet from BPF_PROG_TEST_RUN on a forwarded
//!    flow's packet;
//! 3. flows moved when one of N backends is removed: 200,000 random client tuples looked
//!    up with the kernel's flow hash in the Maglev table before and after, against the
//!    ideal 1/N.
//!
//! Prints the figures and ratios; asserts only that each setup carried traffic.

mod xdp_common;

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use vipd::xdp::{
    maglev::{self, Member},
    packet::{self, Ipv4Opts, PROTO_UDP},
    test_run, Dataplane, Sizes, XdpProgram, XdpServiceSpec,
};
use vipd_common::xdp::{flow_hash, XdpTuple, MAGLEV_M};
use xdp_common::{
    gen::blast,
    lab::{Lab, B1, B2, CLIENT, VIP},
    Netns,
};

const SECONDS: u64 = 3;
const ROUNDS: usize = 3;
const FLOWS: u16 = 256;

fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let s = ns.run(&format!("cat /sys/class/net/{dev}/address"));
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// 64-byte frames (60 + FCS) from the client to VIP:9 over `FLOWS` source ports.
fn frames(dst_mac: [u8; 6], src_mac: [u8; 6]) -> Vec<Vec<u8>> {
    (0..FLOWS)
        .map(|i| {
            let src = SocketAddrV4::new(CLIENT, 10000 + i);
            let dst = SocketAddrV4::new(VIP, 9);
            let mut f = packet::ipv4_frame(
                CLIENT,
                VIP,
                PROTO_UDP,
                &packet::udp(src, dst, &[0u8; 18]),
                &Ipv4Opts::default(),
            );
            f[0..6].copy_from_slice(&dst_mac);
            f[6..12].copy_from_slice(&src_mac);
            f
        })
        .collect()
}

/// Packets the backends' input counters have seen.
fn delivered(lab: &Lab) -> u64 {
    let mut total = 0;
    for (ns, _, _) in lab.backends() {
        let out = ns.run("nft list chain inet bench in");
        let n: u64 = out
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        total += n;
    }
    total
}

fn run_load(lab: &Lab, frames: &[Vec<u8>]) -> (u64, u64) {
    let before = delivered(lab);
    let sent = blast(&lab.cl, "eth0", frames, Duration::from_secs(SECONDS));
    std::thread::sleep(Duration::from_millis(200));
    (sent, delivered(lab) - before)
}

fn moved_when_one_removed(n: usize) -> f64 {
    let members: Vec<Member> = (0..n)
        .map(|i| Member {
            id: i as u32 + 1,
            identity: maglev::identity(SocketAddr::new(
                Ipv4Addr::new(198, 18, 2, 10 + i as u8).into(),
                9,
            )),
            weight: 1,
        })
        .collect();
    let before = maglev::table(&members, MAGLEV_M);
    let after = maglev::table(&members[..n - 1], MAGLEV_M);
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut moved = 0;
    const SAMPLES: usize = 200_000;
    for _ in 0..SAMPLES {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut t = XdpTuple {
            sport: rng as u16,
            dport: 9,
            family: 2,
            protocol: PROTO_UDP,
            ..Default::default()
        };
        t.src[..4].copy_from_slice(&((rng >> 16) as u32).to_be_bytes());
        t.dst[..4].copy_from_slice(&VIP.octets());
        let i = (flow_hash(&t) % MAGLEV_M) as usize;
        moved += usize::from(before[i] != after[i]);
    }
    moved as f64 / SAMPLES as f64
}

#[test]
#[ignore = "benchmark: run by scripts/bench-xdp.sh"]
fn bench_xdp_vs_nftables_dnat_and_maglev_disruption() {
    let lab = Lab::new();
    for (ns, _, _) in lab.backends() {
        ns.run(
            "nft add table inet bench && \
             nft add chain inet bench in \"{ type filter hook input priority 0; }\" && \
             nft add rule inet bench in udp dport 9 counter drop",
        );
    }
    let frames = frames(mac_of(&lab.lb, "eth0"), mac_of(&lab.cl, "eth0"));

    // XDP.
    let mut prog = XdpProgram::load(
        Sizes {
            services: 2,
            backends: 16,
            flows: 65536,
            events_bytes: 1 << 16,
        },
        None,
    )
    .expect("loading the XDP program (root?)");
    lab.lb.enter(|| prog.attach("eth0")).unwrap();
    lab.sw.enter(|| prog.attach_pass("p-lb")).unwrap();
    let mut dp = Dataplane::adopt(prog.take_maps().unwrap()).unwrap();
    dp.apply(&[XdpServiceSpec {
        vip: SocketAddr::new(VIP.into(), 9),
        protocol: PROTO_UDP,
        backends: vec![
            (SocketAddr::new(B1.into(), 9), 1),
            (SocketAddr::new(B2.into(), 9), 1),
        ],
    }])
    .unwrap();
    lab.lb.run(
        "nft add table ip lb && \
         nft add chain ip lb pre \"{ type nat hook prerouting priority dstnat; }\"",
    );
    let nft_rule = "nft add rule ip lb pre ip daddr 198.18.100.1 udp dport 9 \
           dnat to jhash ip saddr . udp sport mod 2 map \"{ 0 : 198.18.2.11, 1 : 198.18.2.12 }\"";
    let mut xdp_runs = Vec::new();
    let mut nft_runs = Vec::new();
    for round in 0..ROUNDS {
        // XDP: the balancer and the peer's receiver attached, no nftables rule.
        if round > 0 {
            lab.lb.enter(|| prog.attach("eth0")).unwrap();
            lab.sw.enter(|| prog.attach_pass("p-lb")).unwrap();
        }
        // Warm the neighbour entries (the first packets go through the kernel).
        blast(&lab.cl, "eth0", &frames, Duration::from_millis(200));
        xdp_runs.push(run_load(&lab, &frames));
        prog.detach_all().unwrap();
        // nftables DNAT in the same namespace.
        lab.lb.run(nft_rule);
        nft_runs.push(run_load(&lab, &frames));
        lab.lb.run("nft flush chain ip lb pre");
    }
    let stats = dp.maps().stats().unwrap();

    // The program alone, on a packet of a known flow, in the balancer's namespace.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&prog.lb_fd().unwrap());
    let ifindex = lab.lb.ifindex("eth0");
    let one = frames[0].clone();
    let ns_per_packet = lab.lb.enter(move || {
        // SAFETY: `prog` owns the descriptor and outlives this call.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        test_run::run(fd, &one, ifindex, 1_000_000)
            .unwrap()
            .duration_ns
    });
    drop(dp);
    drop(prog);

    let pps = |r: &(u64, u64)| r.1 as f64 / SECONDS as f64;
    let median = |runs: &[(u64, u64)]| {
        let mut v: Vec<f64> = runs.iter().map(pps).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "== packets/s through the balancer ({ROUNDS} alternating rounds of {SECONDS} s, 64-byte UDP, {FLOWS} flows, veth lab)"
    );
    for (i, (x, n)) in xdp_runs.iter().zip(&nft_runs).enumerate() {
        println!(
            "  round {}: XDP {:>9.0} pps ({:.1} % of sent), nftables DNAT {:>9.0} pps ({:.1} % of sent), ratio {:.2}x",
            i + 1,
            pps(x),
            100.0 * x.1 as f64 / x.0.max(1) as f64,
            pps(n),
            100.0 * n.1 as f64 / n.0.max(1) as f64,
            pps(x) / pps(n).max(1.0)
        );
    }
    let (xdp_pps, nft_pps) = (median(&xdp_runs), median(&nft_runs));
    println!("  median: XDP {xdp_pps:.0} pps, nftables DNAT {nft_pps:.0} pps");
    println!(
        "  ratio XDP / nftables (medians): {:.2}x",
        xdp_pps / nft_pps.max(1.0)
    );
    println!(
        "  (on veth every hop runs in the sender's softirq on one CPU, so with everything \
         delivered this is the whole chain's cost per packet: sender, balancer, bridge, \
         backend)"
    );
    println!(
        "  XDP counters: forwarded {} fib_pass {}",
        stats[vipd_common::xdp::stat::FORWARDED as usize],
        stats[vipd_common::xdp::stat::FIB_PASS as usize]
    );
    println!("  program alone (BPF_PROG_TEST_RUN, 1e6 runs): {ns_per_packet} ns/packet");
    println!(
        "== flows moved when one of N backends is removed (200,000 flows, Maglev M = {MAGLEV_M})"
    );
    for n in [2usize, 3, 5, 10, 20] {
        let moved = moved_when_one_removed(n);
        println!(
            "  N = {n:>2}: moved {:.4}, ideal 1/N = {:.4}, ratio {:.3}",
            moved,
            1.0 / n as f64,
            moved * n as f64
        );
    }
    assert!(
        xdp_runs.iter().chain(&nft_runs).all(|r| r.1 > 0),
        "a setup carried no traffic"
    );
}
