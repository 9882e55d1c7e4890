//! `vipd run` with the socket plane: it drains the health ring seldom, with traffic or
//! without (successes can wait; failures wake it), and still counts a success that comes
//! after a quiet spell within its drain period.

use std::time::{Duration, Instant};

use crate::{
    socket_common::{procs::client, web::WebRun, BACKENDS4, VIP4, VIP_PORT},
    xdp_common::daemon::{backend, Daemon},
};

/// A process's run time (ns) and times it was scheduled in, over all its threads, as
/// the kernel's scheduler counts them (`/proc/<pid>/task/*/schedstat`).
fn schedstat(pid: u32) -> (u64, u64) {
    let mut out = (0, 0);
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the daemon's threads") {
        let path = t.unwrap().path().join("schedstat");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let f: Vec<u64> = text
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [run, _, slices] = f.as_slice() {
            out.0 += run;
            out.1 += slices;
        }
    }
    out
}

/// The daemon's share of a core and wake-ups a second while `work` runs, and for how
/// long it ran (s).
fn cost_while(d: &Daemon, work: impl FnOnce()) -> (f64, f64, f64) {
    let pid = d.child.id();
    let (r0, s0) = schedstat(pid);
    let t = Instant::now();
    work();
    let secs = t.elapsed().as_secs_f64();
    let (r1, s1) = schedstat(pid);
    (
        100.0 * (r1 - r0) as f64 / 1e9 / secs,
        (s1 - s0) as f64 / secs,
        secs,
    )
}

/// The daemon's share of a core and wake-ups a second over `span` of nothing.
fn idle_cost(d: &Daemon, span: Duration) -> (f64, f64) {
    let (cpu, wakeups, _) = cost_while(d, || std::thread::sleep(span));
    (cpu, wakeups)
}

fn established(d: &Daemon, good: &str) -> u64 {
    backend(&d.status(), good).outcomes.established
}

/// How long until the daemon's status counts `at_least` successes of `good` (within
/// 5 s, or the test fails).
fn await_established(run: &WebRun, good: &str, at_least: u64) -> Duration {
    let t = Instant::now();
    loop {
        let n = established(&run.daemon, good);
        if n >= at_least {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{n} of {at_least} successes counted:\n{}",
            run.daemon.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// From one connection through the VIP (the client has its answer) to its success in
/// the daemon's status.
fn success_lag(run: &WebRun) -> Duration {
    let good = run.good.to_string();
    let before = established(&run.daemon, &good);
    client(&run.ns, &run.cg.0, VIP4, VIP_PORT, 1, "tcp");
    await_established(run, &good, before + 1)
}

/// `vipd run` with the socket plane that has seen a few connections and then 2 s of
/// nothing.
fn quiet_run(tag: &str) -> WebRun {
    // One backend only, so that every connection is a success of `good`.
    let run = WebRun::start(tag, VIP4, &BACKENDS4, &BACKENDS4[..1], "");
    assert_eq!(run.daemon.status().dataplane, "socket");
    // The first connections, then a quiet spell.
    client(&run.ns, &run.cg.0, VIP4, VIP_PORT, 3, "tcp");
    std::thread::sleep(Duration::from_secs(2));
    run
}

#[test]
fn a_quiet_daemon_wakes_seldom_and_still_counts_a_success_soon() {
    let run = quiet_run("sock-idle");
    let (cpu, wakeups) = idle_cost(&run.daemon, Duration::from_secs(3));
    println!("idle: {cpu:.3} % of a core, {wakeups:.1} wake-ups a second");
    // Draining every 20 ms alone would be 50 a second.
    assert!(wakeups < 25.0, "{wakeups:.1} wake-ups a second while idle");
    let lag = success_lag(&run);
    println!("a success after the quiet spell counted {lag:?} after the connection");
    // At most the drain period (500 ms) and the status's own republishing (1 s).
    assert!(lag < Duration::from_secs(3), "{lag:?}");
}

#[test]
fn a_busy_daemon_wakes_as_seldom_and_counts_every_success() {
    let run = quiet_run("sock-busy");
    let good = run.good.to_string();
    let good_ip = run.good.ip().to_string();
    let before = established(&run.daemon, &good);
    // Connections back to back, each a success of `good` that waits for a drain (one
    // to the backend without a server is a refusal, which wakes the daemon).
    let mut made = 0;
    let (cpu, wakeups, secs) = cost_while(&run.daemon, || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            made += client(&run.ns, &run.cg.0, VIP4, VIP_PORT, 50, "tcp")
                .iter()
                .filter(|s| s.backend == good_ip)
                .count();
        }
    });
    println!(
        "{made} connections in {secs:.1} s: {cpu:.3} % of a core, {wakeups:.1} wake-ups a second"
    );
    // Draining every 20 ms while records flow would be 50 a second.
    assert!(
        wakeups < 25.0,
        "{wakeups:.1} wake-ups a second under traffic"
    );
    await_established(&run, &good, before + made as u64);
}

/// Benchmark (prints figures): the daemon's CPU and wake-ups idle and under one
/// connection a second, and how long a success after a quiet spell takes to reach its
/// status (which is also republished once a second).
/// `cargo test --release -p vipd --test socket_plane idle -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: run explicitly, as root"]
fn bench_a_quiet_daemon() {
    let run = quiet_run("sock-idle-bench");
    let (cpu, wakeups) = idle_cost(&run.daemon, Duration::from_secs(20));
    println!("idle, 20 s: {cpu:.3} % of a core, {wakeups:.1} wake-ups a second");
    let (cpu, wakeups, secs) = cost_while(&run.daemon, || {
        let t = Instant::now();
        for i in 1..=20u32 {
            client(&run.ns, &run.cg.0, VIP4, VIP_PORT, 1, "tcp");
            std::thread::sleep(
                (t + Duration::from_secs(i.into())).saturating_duration_since(Instant::now()),
            );
        }
    });
    println!(
        "one connection a second, {secs:.0} s: {cpu:.3} % of a core, {wakeups:.1} wake-ups a second"
    );
    // Each after a second and a half of quiet (status polled only here).
    let mut lags = Vec::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(1500));
        lags.push(success_lag(&run));
    }
    lags.sort();
    println!(
        "connection after a quiet spell to its success in status, {} connections: median {:?}, max {:?}",
        lags.len(),
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );
}
