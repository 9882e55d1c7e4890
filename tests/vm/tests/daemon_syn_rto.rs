//! `vipd run` with `[service.health] syn_rto`, on the real kernel, under a steady 50 new
//! connections/s through a VIP with three backends:
//!
//! * with `syn_rto = "200ms"` a backend that drops SYNs is quarantined within 600 ms of
//!   the first SYN it dropped (the client's first retransmission comes after 200 ms,
//!   not the kernel's 1 s);
//! * a backend that is merely slow (netem adds 50 ms to everything it sends) with
//!   `syn_rto = "500ms"`, ten times its handshake time, is never quarantined in 20 s.
//!   (At 3x, an emulated VM starved of CPU stalled past the timeout once: syn_rto needs
//!   a wide margin over the slowest backend's handshake, see docs/watcher.md.)
//! * with `syn_rto = "auto"` a backend 100 ms slower than the two others is never
//!   quarantined in 60 s of load (the timeout follows the VIP's handshake p99), and the
//!   same backend, blackholed, is quarantined within 2 s of the first SYN it dropped.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use vipd_ipvs::ServiceKey;
use vipd_vmtests::{
    daemon::{tcp_service, Vipd},
    lab::{Family, Lab},
    load::Load,
    require_vm, sh,
    weights::{quarantined, WeightWatcher},
};

const VPORT: u16 = 80;
const RPORT: u16 = 8080;
const WEIGHT: u32 = 10;

/// The lab, its backends, vipd in charge with `syn_rto` (and the watcher attached in
/// full, the `sock_ops` program included), and a watch on the weights.
fn start(name: &str, syn_rto: &str) -> (Lab, Vec<SocketAddr>, Vipd, WeightWatcher) {
    require_vm();
    sh("ipvsadm -C; true");
    let lab = Lab::new(Family::V4, 3);
    let backends: Vec<SocketAddr> = (0..3).map(|i| lab.serve_greeting(i, RPORT)).collect();
    let vip = SocketAddr::new(lab.vip, VPORT);
    let health = format!("  base_ejection = \"2s\"\n  syn_rto = \"{syn_rto}\"\n");
    let mut vipd = Vipd::new(name);
    vipd.write_config(&tcp_service("web", vip, &backends, WEIGHT, &health));
    vipd.start();
    let log = vipd.log(1);
    assert!(
        log.contains("SYN timeout set") && !log.contains("syn_rto not"),
        "syn_rto not applied:\n{log}"
    );
    let watcher = WeightWatcher::start(ServiceKey::tcp(vip.ip(), VPORT), Duration::from_millis(2));
    for b in &backends {
        assert!(
            watcher.wait_state(*b, Duration::from_secs(15), |w| w == Some(WEIGHT)),
            "vipd did not program {b}:\n{}",
            vipd.log(1)
        );
    }
    (lab, backends, vipd, watcher)
}

/// Backend `slow` made `delay_ms` slower (netem on everything it sends), then the
/// load started: returns when, and the load.
fn slowed_under_load(lab: &Lab, slow: usize, delay_ms: u64) -> (Instant, Load) {
    sh(&format!(
        "ip netns exec vb{} tc qdisc add dev eth0 root netem delay {delay_ms}ms",
        slow + 1
    ));
    let from = Instant::now();
    let load = Load::start(
        SocketAddr::new(lab.vip, VPORT),
        50.0,
        Duration::from_secs(3),
    );
    (from, load)
}

/// Backend `victim` (`dest` in IPVS) starts dropping SYNs; returns the time from the
/// first SYN it dropped to its quarantine.
fn blackhole(
    lab: &Lab,
    watcher: &WeightWatcher,
    vipd: &Vipd,
    victim: usize,
    dest: SocketAddr,
) -> Duration {
    let sniffer = lab.sniff_syns(victim, RPORT);
    std::thread::sleep(Duration::from_millis(200));
    lab.drop_syns(victim);
    let fault = Instant::now();
    let zero = watcher
        .wait_for(dest, fault, Duration::from_secs(5), quarantined)
        .unwrap_or_else(|| panic!("{dest} never quarantined\n{}", vipd.log(1)));
    let syn = sniffer
        .first_from_after(lab.client_addr(), fault)
        .expect("the backend saw a SYN after the fault");
    zero.saturating_duration_since(syn.at)
}

/// No backend's weight changed since `from` (`why`: what makes it hard).
fn assert_steady(
    watcher: &WeightWatcher,
    backends: &[SocketAddr],
    from: Instant,
    why: &str,
    vipd: &Vipd,
) {
    let log = watcher.snapshot();
    for b in backends {
        let changes: Vec<_> = log
            .history(*b)
            .into_iter()
            .filter(|(at, _)| *at >= from)
            .collect();
        assert!(
            changes.iter().all(|(_, w)| *w == Some(WEIGHT)),
            "{b} changed weight under load ({why}): {changes:?}\n{}",
            vipd.log(1)
        );
    }
}

#[test]
fn blackholed_backend_is_quarantined_within_600ms_with_syn_rto_200ms() {
    let (lab, backends, vipd, watcher) = start("syn-rto-drop", "200ms");
    let load = Load::start(
        SocketAddr::new(lab.vip, VPORT),
        50.0,
        Duration::from_secs(3),
    );
    std::thread::sleep(Duration::from_secs(2));
    let victim = 1;
    let dest = backends[victim];
    let latency = blackhole(&lab, &watcher, &vipd, victim, dest);
    println!(
        "quarantined {:.0} ms after the first SYN it dropped",
        latency.as_secs_f64() * 1e3
    );
    assert!(
        latency < Duration::from_millis(600),
        "quarantined {latency:?} after the first dropped SYN (syn_rto 200ms)\n{}",
        vipd.log(1)
    );
    let r = load.stop();
    println!("load: {}", r.summary());
}

#[test]
fn slow_backend_within_syn_rto_is_never_quarantined() {
    let (lab, backends, vipd, watcher) = start("syn-rto-slow", "500ms");
    let slow = 2;
    let (from, load) = slowed_under_load(&lab, slow, 50);
    std::thread::sleep(Duration::from_secs(20));
    let r = load.stop();
    println!("load: {}", r.summary());
    let slow_one = format!("vb{} is 50 ms slow", slow + 1);
    assert_steady(&watcher, &backends, from, &slow_one, &vipd);
    assert!(
        r.failures().is_empty(),
        "client failures with a slow backend: {}",
        r.summary()
    );
}

#[test]
fn auto_syn_rto_keeps_a_slow_backend_and_quarantines_it_once_blackholed() {
    let (lab, backends, vipd, watcher) = start("syn-rto-auto", "auto");
    let slow = 2;
    let dest = backends[slow];
    let (from, load) = slowed_under_load(&lab, slow, 100);
    std::thread::sleep(Duration::from_secs(60));
    let slow_one = format!("vb{} is 100 ms slow, syn_rto auto", slow + 1);
    assert_steady(&watcher, &backends, from, &slow_one, &vipd);
    let steady = Instant::now();
    let latency = blackhole(&lab, &watcher, &vipd, slow, dest);
    let r = load.stop();
    println!(
        "auto syn_rto: slow backend kept 60 s; blackholed, quarantined {:.0} ms after the first SYN it dropped; load: {}",
        latency.as_secs_f64() * 1e3,
        r.summary()
    );
    let log = vipd.log(1);
    let timeouts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("adaptive SYN timeout") || l.contains("answered"))
        .collect();
    println!("{}", timeouts.join("\n"));
    assert!(
        latency < Duration::from_secs(2),
        "quarantined {latency:?} after the first dropped SYN (syn_rto auto)\n{log}"
    );
    assert!(
        r.failures_in(from, steady).is_empty(),
        "client failures with a slow backend: {}",
        r.summary()
    );
}
