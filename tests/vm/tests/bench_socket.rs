//! Benchmark (prints figures, asserts nothing about them): TCP through the socket data
//! plane against the same client going straight to a backend and through IPVS, in the
//! same VM run, on the real-network lab (firewall on), IPv4 and IPv6.
//!
//! * Connection setup: `CLIENTS` closed-loop clients, each connecting, reading a
//!   greeting and closing, again and again; connections per second and the latency of
//!   each (connect to the greeting's end), p50 and p99.
//! * Bulk: one upload stream into a sink for `BULK` seconds; bytes per second.
//!
//! Targets: one backend straight; a VIP of IPVS (`vipd run`, two backends); a VIP of the
//! socket plane (another `vipd run`, `dataplane = "socket"`, the same two backends); and the
//! backend straight from inside the socket plane's cgroup (its programs run on every
//! connect there and find no VIP: the cost on a client's other traffic). The socket
//! plane is attached to a cgroup of the benchmark's own, and the benchmark moves itself
//! in and out of it, so the other targets run with no program at all. Rounds
//! interleave the targets. Printed: each run, the means, and the ratios to straight.
//!
//! `#[ignore]`d, so `cargo xtask vm-test` skips it;
//! `cargo xtask vm-bench --kernel 6.12 bench_socket` runs it (release build).

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use vipd::config::SocketSettings;
use vipd_vmtests::{
    conn_bench::{setup, upload, Setup},
    daemon::{each_at, tcp_service, weighted_service, Vipd},
    lab::{Family, Lab},
    native::ClientCgroup,
    require_vm, sh,
};

/// Each target's greeting port (on every backend): a target's connections never share a
/// 4-tuple with another's, whose TIME_WAIT and conntrack entries would otherwise take
/// over a new connection that happens to reuse their client port.
const GREET: [u16; 4] = [8080, 8081, 8082, 8083];
const VPORT: u16 = 80;
const SINK: u16 = 9100;
const CLIENTS: usize = 4;
const WARMUP: Duration = Duration::from_millis(500);
const WINDOW: Duration = Duration::from_secs(3);
const BULK: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;
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
    to: SocketAddr,
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

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn bench(family: Family) {
    require_vm();
    sh("ipvsadm -C");
    let lab = Lab::new(family, 2);
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
        "== bench_socket {family:?}: {CLIENTS} closed-loop clients, {} ms warm-up, {} s window, {ROUNDS} rounds; bulk {} s; kernel {}",
        WARMUP.as_millis(),
        WINDOW.as_secs(),
        BULK.as_secs(),
        sh("uname -r").trim()
    );
    let setups = [
        Target {
            label: "straight",
            to: greet[0][0],
            in_plane: false,
        },
        Target {
            label: "IPVS VIP",
            to: at(ipvs_vip, VPORT),
            in_plane: false,
        },
        Target {
            label: "socket plane VIP",
            to: at(sock_vip, VPORT),
            in_plane: true,
        },
        Target {
            label: "straight, plane attached",
            to: greet[3][0],
            in_plane: true,
        },
    ];
    let mut runs: Vec<Vec<Setup>> = vec![Vec::new(); setups.len()];
    for round in 1..=ROUNDS {
        for (k, t) in setups.iter().enumerate() {
            place(&mut cgroup, t.in_plane);
            let s = setup(t.to, CLIENTS, WARMUP, WINDOW);
            println!("round {round} {:26} {}", t.label, s.line());
            runs[k].push(s);
        }
    }
    let bulks = [
        Target {
            label: "straight",
            to: sink[0],
            in_plane: false,
        },
        Target {
            label: "IPVS VIP",
            to: at(ipvs_vip, SINK),
            in_plane: false,
        },
        Target {
            label: "socket plane VIP",
            to: at(sock_vip, SINK),
            in_plane: true,
        },
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); bulks.len()];
    for round in 1..=ROUNDS {
        for (k, t) in bulks.iter().enumerate() {
            place(&mut cgroup, t.in_plane);
            match upload(t.to, BULK) {
                Ok(r) => {
                    println!("round {round} bulk {:21} {:8.1} MB/s", t.label, r / 1e6);
                    rates[k].push(r);
                }
                Err(e) => println!("round {round} bulk {:21} failed: {e}", t.label),
            }
        }
    }
    place(&mut cgroup, false);

    println!("== bench_socket {family:?} means over {ROUNDS} rounds");
    let rate = |k: usize| mean(&runs[k].iter().map(Setup::rate).collect::<Vec<_>>());
    let p50 = |k: usize| {
        mean(
            &runs[k]
                .iter()
                .map(|s| us(s.quantile(0.5)))
                .collect::<Vec<_>>(),
        )
    };
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
            p50(k),
            p99(k)
        );
    }
    for (k, t) in setups.iter().enumerate().skip(1) {
        println!(
            "  ratio straight / {:26} rate {:.3}  p50 latency {:.3}",
            t.label,
            rate(0) / rate(k),
            p50(k) / p50(0)
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
