//! Packet-level scheduler conformance, IPv4 and IPv6, services applied by vipd: hand-made
//! TCP SYNs and UDP datagrams from chosen sources go through IPVS in a director network
//! namespace, and the packets it forwards show which backend it picked (see
//! `vipd_vmtests::conformance`).
//!
//! - rr rotates strictly over the backends whatever their weights; wrr 3:2:1 gives every
//!   run of 6 new flows exactly 3, 2 and 1 (TCP and UDP, masquerade and IPIP tunnel);
//! - a flow sent again (SYN retransmit, next datagram) stays on its backend; with
//!   `one-packet` every UDP datagram is scheduled on its own;
//! - sh and mh send every flow of a source address to one backend and spread sources
//!   over all backends; with `sh-port` / `mh-port` the source port counts too; the
//!   hashes hold with no connection entry to remember a flow (`one-packet`);
//! - twos spreads over all backends, favouring the heavier, where the kernel was built
//!   with it; where not, vipd says that the scheduler module is missing.

use std::net::{IpAddr, SocketAddr};

use vipd_vmtests::{
    conformance::{
        check::{assert_cycles, assert_same, by_key, counts, describe, picks},
        packet::{Flow, Proto},
        rig::Rig,
        service::ServiceToml,
        topology::{backend, client, vip},
    },
    kernel_option,
    lab::Family,
};

const RPORT: u16 = 8080;

fn backends(family: Family, n: usize) -> Vec<IpAddr> {
    (0..n).map(|i| backend(family, i)).collect()
}

/// A service on the suite's VIP at `port`, masquerading to `weights.len()` backends.
fn service(
    family: Family,
    proto: Proto,
    port: u16,
    scheduler: &str,
    flags: &[&str],
    weights: &[u32],
) -> String {
    let backends: Vec<(SocketAddr, u32)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (SocketAddr::new(backend(family, i), RPORT), *w))
        .collect();
    ServiceToml {
        name: &format!("{scheduler}-{proto:?}-{port}-{family:?}").to_lowercase(),
        proto,
        vip: SocketAddr::new(vip(family), port),
        scheduler,
        flags,
        forwarding: "masq",
        backends: &backends,
    }
    .toml()
}

/// The flow from client `c` port `sport` to the VIP at `port`.
fn flow(family: Family, proto: Proto, c: usize, sport: u16, port: u16) -> Flow {
    Flow {
        proto,
        src: SocketAddr::new(client(family, c), sport),
        dst: SocketAddr::new(vip(family), port),
    }
}

/// `n` new flows: distinct source addresses and ports.
fn new_flows(family: Family, proto: Proto, port: u16, n: usize) -> Vec<Flow> {
    (0..n)
        .map(|i| flow(family, proto, i % 7, 40_000 + i as u16, port))
        .collect()
}

/// Sends `flows`, checks that masquerade kept each source and rewrote the destination
/// to a backend at `RPORT`, and returns the picks.
fn send(rig: &Rig, family: Family, n: usize, flows: &[Flow]) -> Vec<usize> {
    let out = rig.send_all(flows);
    for (f, o) in flows.iter().zip(&out) {
        assert!(
            !o.tunnelled && o.flow.src == f.src && o.flow.dst == SocketAddr::new(o.to, RPORT),
            "{f:?} was forwarded as {o:?}"
        );
    }
    picks(&backends(family, n), &out)
}

fn rotation(family: Family) {
    let rig = Rig::new(&format!("rotation-{family:?}"));
    let weights = [3, 2, 1];
    let config = [
        service(family, Proto::Tcp, 80, "rr", &[], &weights),
        service(family, Proto::Udp, 53, "rr", &[], &weights),
        service(family, Proto::Udp, 54, "rr", &["one-packet"], &weights),
        service(family, Proto::Tcp, 81, "wrr", &[], &weights),
        service(family, Proto::Udp, 55, "wrr", &[], &weights),
    ]
    .concat();
    rig.apply(&config);

    for (proto, rr_port, wrr_port) in [(Proto::Tcp, 80, 81), (Proto::Udp, 53, 55)] {
        let what = format!("{family:?} {proto:?}");
        // rr ignores weights (other than 0): 12 new flows, 4 rounds of 3.
        let flows = new_flows(family, proto, rr_port, 12);
        let first = send(&rig, family, 3, &flows);
        assert_cycles(&format!("rr {what}: 12 new flows"), &first, &[1, 1, 1]);
        let again = send(&rig, family, 3, &flows);
        assert_same(&format!("rr {what}: flows sent again"), &first, &again, 3);
        eprintln!("rr {what}: {}", describe(&first, 3));

        let flows = new_flows(family, proto, wrr_port, 24);
        let first = send(&rig, family, 3, &flows);
        assert_cycles(
            &format!("wrr 3:2:1 {what}: 24 new flows"),
            &first,
            &[3, 2, 1],
        );
        let again = send(&rig, family, 3, &flows);
        assert_same(&format!("wrr {what}: flows sent again"), &first, &again, 3);
        eprintln!("wrr 3:2:1 {what}: {}", describe(&first, 3));
    }

    // one-packet: the same datagram six times is scheduled six times.
    let same = vec![flow(family, Proto::Udp, 0, 40_000, 54); 6];
    let picks = send(&rig, family, 3, &same);
    assert_cycles(
        &format!("rr one-packet {family:?}: one flow's 6 datagrams"),
        &picks,
        &[1, 1, 1],
    );
    eprintln!(
        "rr one-packet {family:?}, one flow: {}",
        describe(&picks, 3)
    );
}

#[test]
fn sched_rotation_v4() {
    rotation(Family::V4);
}

#[test]
fn sched_rotation_v6() {
    rotation(Family::V6);
}

const SOURCES: usize = 32;
const PORTS: u16 = 3;

/// Every (source, port) of `SOURCES` clients x `PORTS` ports, source-major.
fn per_source(family: Family, proto: Proto, port: u16) -> Vec<Flow> {
    (0..SOURCES)
        .flat_map(|c| (0..PORTS).map(move |p| flow(family, proto, c, 50_000 + p, port)))
        .collect()
}

/// sh or mh: sticky by source address (or by address and port with the port flag),
/// spread over all backends.
fn hashing(family: Family, scheduler: &str) {
    let rig = Rig::new(&format!("{scheduler}-{family:?}"));
    let port_flag = format!("{scheduler}-port");
    let w = [1, 1, 1];
    let config = [
        service(family, Proto::Tcp, 80, scheduler, &[], &w),
        service(family, Proto::Udp, 53, scheduler, &["one-packet"], &w),
        service(
            family,
            Proto::Udp,
            54,
            scheduler,
            &[&port_flag, "one-packet"],
            &w,
        ),
    ]
    .concat();
    rig.apply(&config);

    for (proto, port, flags) in [
        (Proto::Tcp, 80, ""),
        (Proto::Udp, 53, " one-packet"),
        (Proto::Udp, 54, &*format!(" {port_flag} one-packet")),
    ] {
        let what = format!("{scheduler}{flags} {family:?} {proto:?}");
        let flows = per_source(family, proto, port);
        let first = send(&rig, family, 3, &flows);
        // Sent again: TCP finds its connection entries; one-packet UDP has none, so
        // the hash alone must give the same answer.
        let again = send(&rig, family, 3, &flows);
        assert_same(&format!("{what}: flows sent again"), &first, &again, 3);
        let all = counts(&first, 3);
        assert!(
            all.iter().all(|&c| c > 0),
            "{what}: {SOURCES} sources x {PORTS} ports did not reach every backend: {}",
            describe(&first, 3)
        );
        let per_addr = by_key(flows.iter().map(|f| f.src.ip()).zip(first.iter().copied()));
        let split = per_addr.values().filter(|b| b.len() > 1).count();
        if port == 54 {
            // Hashing the port too: most sources' 3 ports do not all land together
            // (each does with probability 1/9 for 3 equal backends).
            assert!(
                split >= SOURCES / 2,
                "{what}: only {split} of {SOURCES} sources spread their ports over more \
                 than one backend: {per_addr:?}"
            );
        } else {
            assert_eq!(
                split, 0,
                "{what}: sources whose ports went to different backends: {per_addr:?}"
            );
        }
        eprintln!("{what}: counts {all:?}, {split} of {SOURCES} sources split by port");
    }
}

#[test]
fn sched_sh_v4() {
    hashing(Family::V4, "sh");
}

#[test]
fn sched_sh_v6() {
    hashing(Family::V6, "sh");
}

#[test]
fn sched_mh_v4() {
    hashing(Family::V4, "mh");
}

#[test]
fn sched_mh_v6() {
    hashing(Family::V6, "mh");
}

/// IPIP forwarding: the packet arrives at the backend unchanged inside an outer header
/// addressed to the backend; rr still rotates and flows still stick.
fn tunnel(family: Family) {
    let rig = Rig::new(&format!("tunnel-{family:?}"));
    let port = 80;
    let backends_w: Vec<(SocketAddr, u32)> = (0..3)
        .map(|i| (SocketAddr::new(backend(family, i), port), 1))
        .collect();
    rig.apply(
        &ServiceToml {
            name: "tunnel",
            proto: Proto::Tcp,
            vip: SocketAddr::new(vip(family), port),
            scheduler: "rr",
            flags: &[],
            forwarding: "tunnel",
            backends: &backends_w,
        }
        .toml(),
    );
    let flows = new_flows(family, Proto::Tcp, port, 9);
    let run = |flows: &[Flow]| -> Vec<usize> {
        let out = rig.send_all(flows);
        for (f, o) in flows.iter().zip(&out) {
            assert!(o.tunnelled && o.flow == *f, "{f:?} was forwarded as {o:?}");
        }
        picks(&backends(family, 3), &out)
    };
    let first = run(&flows);
    assert_cycles(&format!("rr tunnel {family:?}"), &first, &[1, 1, 1]);
    let again = run(&flows);
    assert_same(&format!("rr tunnel {family:?}"), &first, &again, 3);
    eprintln!("rr tunnel {family:?}: {}", describe(&first, 3));
}

#[test]
fn sched_tunnel_v4() {
    tunnel(Family::V4);
}

#[test]
fn sched_tunnel_v6() {
    tunnel(Family::V6);
}

/// twos (two random choices, weighted): with a kernel built with it, 70 new flows per
/// family reach every backend and the weight-4 backend gets more than the weight-1 one.
/// A kernel built without it (Debian's 6.1) must get a clear error from vipd, not a skip.
#[test]
fn sched_twos() {
    let rig = Rig::new("twos");
    let families = [Family::V4, Family::V6];
    let config: String = families
        .iter()
        .map(|&f| service(f, Proto::Tcp, 80, "twos", &[], &[4, 2, 1]))
        .collect();
    match kernel_option("CONFIG_IP_VS_TWOS").as_deref() {
        Some("m") | Some("y") => {
            rig.apply(&config);
            for family in families {
                let flows = new_flows(family, Proto::Tcp, 80, 70);
                let picks = send(&rig, family, 3, &flows);
                let c = counts(&picks, 3);
                assert!(
                    c.iter().all(|&n| n > 0) && c[0] > c[2],
                    "twos 4:2:1 {family:?}: {}",
                    describe(&picks, 3)
                );
                eprintln!("twos 4:2:1 {family:?}, 70 new flows: counts {c:?}");
            }
        }
        built => {
            let out = rig.apply_output(&config);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "CONFIG_IP_VS_TWOS is {built:?}, yet vipd applied twos services:\n{stderr}"
            );
            for svc in ["tcp 198.18.93.10:80", "tcp [fd00:18:93::10]:80"] {
                assert!(
                    stderr.contains(&format!("new service {svc} scheduler twos: "))
                        && stderr.contains("no IPVS scheduler \"twos\" (module ip_vs_twos"),
                    "vipd's error does not name {svc}'s missing scheduler module:\n{stderr}"
                );
            }
            eprintln!("twos without the module: {stderr}");
        }
    }
}
