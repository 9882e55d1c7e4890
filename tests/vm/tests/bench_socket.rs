//! Benchmark (prints figures, asserts nothing about them): TCP through the socket data
//! plane against the same client going straight to a backend and through IPVS, in the
//! same VM run, on the real-network lab (firewall on), IPv4 and IPv6.
//!
//! * Connection setup: `CLIENTS` closed-loop clients, each connecting, reading a
//!   greeting and closing, again and again; connections per second and the latency of
//!   each (connect to the greeting's end), p50 and p99.
//! * Bulk: one upload stream into a sink for `BULK` seconds; bytes per second.
//!
//! Targets: straight to the two backends; a VIP of IPVS (`vipd run`, two backends); a
//! VIP of the socket plane (another `vipd run`, `dataplane = "socket"`, two backends);
//! and the backends straight from inside the socket plane's cgroup (its programs run on
//! every connect there and find no VIP: the cost on a client's other traffic). The
//! socket plane is attached to a cgroup of the benchmark's own, and the benchmark moves
//! itself in and out of it, so the other targets run with no program at all. The
//! straight targets pick one of both backends at random for each connection, as the
//! VIPs do.
//!
//! Rounds interleave the targets, each round starting at another one, with BPF
//! statistics off. Printed: each run, the means, and each target's ratio to straight as
//! the median of the rounds' ratios (each round's straight run is its baseline, so the
//! host's slow drifts cancel), with their range; each daemon's CPU while each target
//! ran; then, from one more window per target with BPF statistics on, the kernel
//! programs' time per connection.
//!
//! `#[ignore]`d, so `cargo xtask vm-test` skips it;
//! `cargo xtask vm-bench --kernel 6.12 bench_socket` runs it (release build).

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use vipd::config::SocketSettings;
use vipd_vmtests::{
    bpf_stats,
    conn_bench::{setup, upload, Setup},
    daemon::{each_at, tcp_service, weighted_service, Vipd},
    lab::{Family, Lab},
    native::ClientCgroup,
    require_vm, sh,
    stats::{median, range},
};

/// Each target's greeting port (on every backend): a target's connections never share a
/// 4-tuple with another's, whose TIME_WAIT and conntrack entries would otherwise take
/// over a new connection that happens to reuse their client port.
const GREET: [u16; 4] = [8080, 8081, 8082, 8083];
const VPORT: u16 = 80;
const SINK: u16 = 9100;
const CLIENTS: usize = 4;
const WARMUP: Duration = Duration::from_millis(500);
const WINDOW: Duration = Duration::from_millis(1500);
const BULK: Duration = Duration::from_secs(3);
const ROUNDS: usize = 9;
const BULK_ROUNDS: usize = 3;
/// The socket plane's cgroup, a child of the cgroup v2 root.
const CGROUP: &str = "vipd-bench";

/// The socket plane's VIP: another address of the VIP range than IPVS's.
fn socket_vip(family: Family) -> IpAddr {
    match family {
        Family::V4 => "198.18.0.20".parse().unwrap(),
        Family::V6 => "fd00:18::20".parse().unwrap(),
    }
}

struct Target {
    label: &'static str,
    to: Vec<SocketAddr>,
    /// Run from inside the socket plane's cgroup.
    in_plane: bool,
}

/// Puts this process inside the socket plane's cgroup, or back where it was.
fn place(cgroup: &mut ClientCgroup, in_plane: bool) {
    let moved = if in_plane {
        cgroup.join()
    } else {
        cgroup.leave()
    };
    moved.unwrap_or_else(|e| panic!("{e:#}"));
}

/// What one profiled run of a target measured: each program's runs and run time
/// (seconds), and the connections attempted.
#[derive(Clone, Default)]
struct Profile {
    programs: BTreeMap<String, (u64, f64)>,
    connections: f64,
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Connection tracking entries the client's firewall may hold. Every connection leaves
/// one for the TIME_WAIT timeout (2 min): at these rates the VM's default (64 Ki) fills
/// within one family's rounds, and then new connections are dropped. A client that
/// opens thousands of connections a second raises it as this does.
const CONNTRACK_MAX: u32 = 1 << 20;

fn bench(family: Family) {
    require_vm();
    sh("ipvsadm -C");
    let lab = Lab::new(family, 2);
    // After the lab: its firewall is what loads connection tracking.
    sh(&format!(
        "sysctl -qw net.netfilter.nf_conntrack_max={CONNTRACK_MAX}"
    ));
    let greet: Vec<[SocketAddr; 2]> = GREET
        .iter()
        .map(|p| [lab.serve_greeting(0, *p), lab.serve_greeting(1, *p)])
        .collect();
    let sink = [lab.serve_sink(0, SINK), lab.serve_sink(1, SINK)];
    let (ipvs_vip, sock_vip) = (lab.vip, socket_vip(family));
    let at = |ip: IpAddr, port: u16| SocketAddr::new(ip, port);

    // Both planes under `vipd run`, each with its passive health on, as an operator runs
    // them. The socket plane first: a first start unloads ip_vs, as at a host's boot.
    let root = SocketSettings::default_cgroup();
    let mut cgroup = ClientCgroup::create(&root, CGROUP).expect("the socket plane's cgroup");
    let mut socket = Vipd::new(&format!("bench-socket-{family:?}"));
    // Pins of its own: the IPVS daemon's start removes a socket plane's default pins.
    socket.env.push((
        "VIPD_SOCKET_PIN_DIR".to_owned(),
        "/sys/fs/bpf/vipd-bench".to_owned(),
    ));
    socket.write_config(&format!(
        "dataplane = \"socket\"\n\n[daemon]\nmetrics_address = \"off\"\n\n[socket]\ncgroup = \"{}\"\n\n{}\n{}",
        cgroup.path.display(),
        weighted_service("greet", "tcp", at(sock_vip, VPORT), &each_at(&greet[2], 1), ""),
        weighted_service("sink", "tcp", at(sock_vip, SINK), &each_at(&sink, 1), "")
    ));
    socket.start();
    let mut ipvs = Vipd::new(&format!("bench-socket-ipvs-{family:?}"));
    ipvs.write_config(&format!(
        "{}\n{}",
        tcp_service("greet", at(ipvs_vip, VPORT), &greet[1], 1, ""),
        tcp_service("sink", at(ipvs_vip, SINK), &sink, 1, "")
    ));
    ipvs.start();

    println!(
        "== bench_socket {family:?}: {CLIENTS} closed-loop clients, {} ms warm-up, {} ms window, {ROUNDS} rounds; bulk {} s; kernel {}, clock source {}",
        WARMUP.as_millis(),
        WINDOW.as_millis(),
        BULK.as_secs(),
        sh("uname -r").trim(),
        sh("cat /sys/devices/system/clocksource/clocksource0/current_clocksource").trim()
    );
    let setups = [
        Target {
            label: "straight",
            to: greet[0].to_vec(),
            in_plane: false,
        },
        Target {
            label: "IPVS VIP",
            to: vec![at(ipvs_vip, VPORT)],
            in_plane: false,
        },
        Target {
            label: "socket plane VIP",
            to: vec![at(sock_vip, VPORT)],
            in_plane: true,
        },
        Target {
            label: "straight, plane attached",
            to: greet[3].to_vec(),
            in_plane: true,
        },
    ];
    // Rate rounds, BPF statistics off (they cost each program run two clock reads,
    // which would weigh on the targets that run more programs). Each round starts at
    // another target, so that none always follows the same one.
    let mut runs: Vec<Vec<Setup>> = vec![Vec::new(); setups.len()];
    // Each daemon's CPU over each target's runs (seconds of CPU, seconds of wall).
    let mut cpu: Vec<[(f64, f64); 2]> = vec![[(0.0, 0.0); 2]; setups.len()];
    for round in 0..ROUNDS {
        for i in 0..setups.len() {
            let k = (round + i) % setups.len();
            let t = &setups[k];
            place(&mut cgroup, t.in_plane);
            let c0 = [socket.cpu_time(), ipvs.cpu_time()];
            let started = Instant::now();
            let s = setup(&t.to, CLIENTS, WARMUP, WINDOW);
            let wall = started.elapsed().as_secs_f64();
            for (d, now) in [socket.cpu_time(), ipvs.cpu_time()].into_iter().enumerate() {
                cpu[k][d].0 += (now - c0[d]).as_secs_f64();
                cpu[k][d].1 += wall;
            }
            println!("round {} {:26} {}", round + 1, t.label, s.line());
            runs[k].push(s);
        }
    }
    // One profiled window per target, BPF statistics on: the kernel programs' runs and
    // run time per connection.
    let mut programs: Vec<Profile> = vec![Profile::default(); setups.len()];
    {
        let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling BPF stats");
        for (k, t) in setups.iter().enumerate() {
            place(&mut cgroup, t.in_plane);
            let p0 = bpf_stats::snapshot();
            let s = setup(&t.to, CLIENTS, WARMUP, WINDOW);
            bpf_stats::add_delta(&mut programs[k].programs, &p0, &bpf_stats::snapshot());
            programs[k].connections = s.attempts as f64;
        }
    }
    let bulks = [
        Target {
            label: "straight",
            to: vec![sink[0]],
            in_plane: false,
        },
        Target {
            label: "IPVS VIP",
            to: vec![at(ipvs_vip, SINK)],
            in_plane: false,
        },
        Target {
            label: "socket plane VIP",
            to: vec![at(sock_vip, SINK)],
            in_plane: true,
        },
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); bulks.len()];
    for round in 1..=BULK_ROUNDS {
        for (k, t) in bulks.iter().enumerate() {
            place(&mut cgroup, t.in_plane);
            match upload(t.to[0], BULK) {
                Ok(r) => {
                    println!("round {round} bulk {:21} {:8.1} MB/s", t.label, r / 1e6);
                    rates[k].push(r);
                }
                Err(e) => println!("round {round} bulk {:21} failed: {e}", t.label),
            }
        }
    }
    place(&mut cgroup, false);

    println!("== bench_socket {family:?} over {ROUNDS} rounds");
    let rate = |k: usize| mean(&runs[k].iter().map(Setup::rate).collect::<Vec<_>>());
    let p50s = |k: usize| -> Vec<f64> { runs[k].iter().map(|s| us(s.quantile(0.5))).collect() };
    let p99 = |k: usize| {
        mean(
            &runs[k]
                .iter()
                .map(|s| us(s.quantile(0.99)))
                .collect::<Vec<_>>(),
        )
    };
    for (k, t) in setups.iter().enumerate() {
        let failed: usize = runs[k].iter().map(|s| s.failed).sum();
        println!(
            "  setup {:26} {:8.0} conn/s  p50 {:6.0} us  p99 {:6.0} us  failed {failed}",
            t.label,
            rate(k),
            mean(&p50s(k)),
            p99(k)
        );
    }
    // Each round's ratio to that round's straight run: the host's slow drifts, which
    // move every target of a round alike, cancel out.
    for (k, t) in setups.iter().enumerate().skip(1) {
        let ratios: Vec<f64> = (0..ROUNDS)
            .map(|r| runs[0][r].rate() / runs[k][r].rate())
            .collect();
        let (lo, hi) = range(&ratios);
        let (p50, p50_straight) = (p50s(k), p50s(0));
        let lat: Vec<f64> = (0..ROUNDS).map(|r| p50[r] / p50_straight[r]).collect();
        println!(
            "  ratio straight / {:26} rate: median {:.3} (rounds {lo:.3}-{hi:.3}, of means {:.3})  p50 latency: median {:.3}",
            t.label,
            median(&ratios),
            rate(0) / rate(k),
            median(&lat)
        );
    }
    for (k, t) in setups.iter().enumerate() {
        let (progs, conns) = (&programs[k].programs, programs[k].connections.max(1.0));
        let (runs, busy) = progs
            .values()
            .fold((0, 0.0), |(r, b), (runs, busy)| (r + runs, b + busy));
        println!(
            "  kernel programs during {:26} {:7.0} ns a connection, {:6.0} ns a run, {:4.1} runs a connection",
            t.label,
            1e9 * busy / conns,
            1e9 * busy / (runs.max(1) as f64),
            runs as f64 / conns
        );
        for (name, (runs, busy)) in progs {
            if *runs as f64 >= conns / 2.0 {
                println!(
                    "    {name:16} {:4.1} runs a connection, {:6.0} ns a run",
                    *runs as f64 / conns,
                    1e9 * busy / (*runs as f64)
                );
            }
        }
    }
    for (k, t) in setups.iter().enumerate() {
        let pct = |d: usize| 100.0 * cpu[k][d].0 / cpu[k][d].1.max(1e-9);
        println!(
            "  daemon CPU during {:26} socket vipd {:5.1} %  IPVS vipd {:5.1} % of a core",
            t.label,
            pct(0),
            pct(1)
        );
    }
    for (k, t) in bulks.iter().enumerate() {
        if rates[k].is_empty() {
            continue;
        }
        println!(
            "  bulk {:21} {:8.1} MB/s  ratio to straight {:.3}",
            t.label,
            mean(&rates[k]) / 1e6,
            mean(&rates[k]) / mean(&rates[0])
        );
    }
    socket.stop();
    ipvs.stop();
    // Its pins go before the cgroup they are attached to.
    drop(socket);
    drop(cgroup);
}

#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_socket"]
fn bench_socket_v4() {
    bench(Family::V4);
}

#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_socket"]
fn bench_socket_v6() {
    bench(Family::V6);
}
