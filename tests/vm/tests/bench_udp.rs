//! Benchmark (prints figures, asserts nothing about them): DNS queries per second through
//! a VIP (a `vipd apply`-ed UDP rr service, two dnsmasq backends) against the same
//! client querying the backends straight, in the same VM run, IPv4 and IPv6.
//!
//! The client ([`closed_loop`]): `CLIENTS` sockets, each its own source port and so its
//! own UDP flow, each with one query in flight; a warm-up, then a measured window. Three
//! targets, each measured `ROUNDS` times, interleaved: one backend straight (what the
//! issue asks for), both backends straight (the client's sockets split between them:
//! the same servers as behind the VIP, without IPVS), and the VIP. Printed: each run,
//! then the means and the ratios VIP / straight; loss counts timeouts and errors.
//!
//! `#[ignore]`d, so `cargo xtask vm-test` skips it;
//! `cargo xtask vm-bench --kernel 6.12 bench_udp` runs it (release build).

use std::{net::SocketAddr, time::Duration};

use vipd_vmtests::{
    daemon::udp_service,
    dns::bench::{closed_loop, Throughput},
    lab::{Family, Lab},
    require_vm, sh,
    vipd_cli::VipdRun,
};

const PORT: u16 = 53;
const CLIENTS: usize = 8;
const WARMUP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(1);
const ROUNDS: usize = 2;

fn mean(runs: &[Throughput]) -> f64 {
    runs.iter().map(Throughput::qps).sum::<f64>() / runs.len() as f64
}

fn bench(family: Family) {
    require_vm();
    sh("ipvsadm -C");
    let lab = Lab::new(family, 2);
    let backends = [lab.serve_dns(0, PORT), lab.serve_dns(1, PORT)];
    let vip = SocketAddr::new(lab.vip, PORT);
    let run = VipdRun::new(&format!("bench-udp-{family:?}"));
    run.apply(&udp_service("dns", vip, &backends, 1, ""));
    println!(
        "== bench_udp {family:?}: {CLIENTS} closed-loop clients, {} s warm-up, {} s window, timeout {} s, {ROUNDS} rounds; kernel {}",
        WARMUP.as_secs(),
        WINDOW.as_secs(),
        TIMEOUT.as_secs(),
        sh("uname -r").trim()
    );
    let targets: [(&str, Vec<SocketAddr>); 3] = [
        ("one backend straight", vec![backends[0]]),
        ("both backends straight", backends.to_vec()),
        ("VIP (IPVS, 2 backends)", vec![vip]),
    ];
    let mut results: Vec<Vec<Throughput>> = vec![Vec::new(); targets.len()];
    for round in 1..=ROUNDS {
        for (k, (label, to)) in targets.iter().enumerate() {
            let t = closed_loop(to, CLIENTS, WARMUP, WINDOW, TIMEOUT);
            println!("round {round} {label:24} {}", t.line());
            results[k].push(t);
        }
    }
    let (one, both, via) = (mean(&results[0]), mean(&results[1]), mean(&results[2]));
    let lost = |k: usize| -> (u64, u64) {
        results[k].iter().fold((0, 0), |(t, e), r| {
            (t + r.timed_out, e + r.refused + r.errors)
        })
    };
    println!("== bench_udp {family:?} means over {ROUNDS} rounds");
    for (k, (label, _)) in targets.iter().enumerate() {
        let (t, e) = lost(k);
        println!(
            "  {label:24} {:8.0} queries/s  timed out {t}, errors {e}",
            mean(&results[k])
        );
    }
    println!("  ratio VIP / one backend straight:   {:.2}", via / one);
    println!("  ratio VIP / both backends straight: {:.2}", via / both);
    let _ = run.apply_output("");
}

#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_udp"]
fn bench_udp_v4() {
    bench(Family::V4);
}

#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_udp"]
fn bench_udp_v6() {
    bench(Family::V6);
}
