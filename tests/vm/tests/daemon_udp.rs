//! `vipd run` with a UDP service: three dnsmasq backends behind a VIP on port 53, and a
//! resolver-like client that sends 50 queries per second from ONE fixed source port
//! (the case where IPVS keeps a flow pinned to its backend). IPv4 and IPv6:
//!
//! * a backend whose DNS server dies answers with ICMP port unreachable: it is
//!   quarantined, leaves IPVS, and the fixed-port client's failures end within 1 s of
//!   its first failed query (its flow moves to a live backend);
//! * a backend that silently drops queries is quarantined within the service's
//!   `silence_window` (plus one poll) of the first query it left unanswered, and the
//!   client's failures end there;
//! * after each recovery the UDP probe (a DNS query, its reply checked by ID) passes and
//!   the backend is re-admitted.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use vipd::daemon::view::DaemonView;
use vipd_vmtests::{
    daemon::{udp_service, Vipd},
    dns::{load::UdpLoad, wire},
    lab::{Family, Lab},
    require_vm, sh,
};

const PORT: u16 = 53;
const WINDOW: Duration = Duration::from_millis(500);
const QUERY_TIMEOUT: Duration = Duration::from_millis(250);
const CLIENT_PORT: u16 = 40_053;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn state(v: &DaemonView, backend: SocketAddr) -> String {
    v.services
        .iter()
        .flat_map(|s| &s.backends)
        .find(|b| b.addr == backend.to_string())
        .map(|b| b.state.clone())
        .unwrap_or_default()
}

fn in_ipvs(vip: SocketAddr, backend: SocketAddr, family: Family) -> bool {
    let list = sh(&format!(
        "ipvsadm -Ln -u {}",
        family.ipvs(vip.ip(), vip.port())
    ));
    list.contains(&family.ipvs(backend.ip(), backend.port()))
}

/// The backend (index) that answered the client's latest query.
fn current(load: &UdpLoad) -> usize {
    let r = load.report();
    let name = r
        .per_backend_in(Instant::now() - Duration::from_millis(500), Instant::now())
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(b, _)| b)
        .unwrap_or_else(|| panic!("no answers lately: {}", r.summary()));
    name.trim_start_matches("vb").parse::<usize>().unwrap() - 1
}

fn udp_failover(family: Family, name: &str) {
    require_vm();
    sh("ipvsadm -C; ip link del vipd0 2>/dev/null; true");
    let lab = Lab::new(family, 3);
    let backends: Vec<SocketAddr> = (0..3).map(|i| lab.serve_dns(i, PORT)).collect();
    let vip = SocketAddr::new(lab.vip, PORT);
    let probe = wire::query(0x1234, wire::WHICH, wire::TXT);
    let health = format!(
        "  silence_window = \"{}ms\"\n  base_ejection = \"2s\"\n  max_ejection = \"2s\"\n  slow_start = \"1s\"\n  payload_hex = \"{}\"\n  expect_hex = \"1234\"\n  probe_timeout = \"500ms\"\n",
        WINDOW.as_millis(),
        hex(&probe)
    );
    let mut vipd = Vipd::new(name);
    vipd.write_config(&udp_service("dns", vip, &backends, 10, &health));
    vipd.start();
    let v = vipd.status();
    assert_eq!(v.watcher.mode, "full", "the UDP hooks must load: {v:#?}");
    let load = UdpLoad::start(vip, CLIENT_PORT, 50.0, QUERY_TIMEOUT);
    std::thread::sleep(Duration::from_millis(1500));
    let r = load.report();
    assert!(
        r.failures().is_empty(),
        "failures before any fault: {}",
        r.summary()
    );

    // 1. The DNS server of the client's backend dies.
    let victim = current(&load);
    let dest = backends[victim];
    let killed = Instant::now();
    lab.kill_dns(victim);
    vipd.wait_for(
        "the stopped backend quarantined",
        Duration::from_secs(5),
        |v| state(v, dest) == "quarantined",
    );
    assert!(
        !in_ipvs(vip, dest, family),
        "a quarantined UDP backend stays in IPVS"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let r = load.report();
    let failures = r.failures_in(killed, Instant::now());
    let first = failures
        .first()
        .expect("the stopped server failed no query")
        .sent;
    let last = failures.last().unwrap().sent;
    assert!(
        last.duration_since(first) <= Duration::from_secs(1),
        "failures went on for {:?} after the first (must end within 1 s): {}",
        last.duration_since(first),
        r.summary()
    );
    let moved = current(&load);
    assert_ne!(
        moved, victim,
        "the fixed-port client still reaches the dead backend"
    );
    eprintln!(
        "{family:?} stop: {} failed queries over {:?}, client moved vb{} -> vb{}",
        failures.len(),
        last.duration_since(first),
        victim + 1,
        moved + 1
    );

    // Recovery: the probe passes, the backend is back in IPVS.
    lab.restart_dns(victim);
    vipd.wait_for(
        "the restarted backend re-admitted",
        Duration::from_secs(10),
        |v| matches!(state(v, dest).as_str(), "slow-start" | "healthy"),
    );
    assert!(
        in_ipvs(vip, dest, family),
        "a re-admitted backend is back in IPVS"
    );

    // 2. The client's backend goes silent.
    let victim = current(&load);
    let dest = backends[victim];
    let dropped = Instant::now();
    lab.drop_udp(victim);
    let v = vipd.wait_for(
        "the silent backend quarantined",
        Duration::from_secs(5),
        |v| state(v, dest) == "quarantined",
    );
    let quarantined = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let r = load.report();
    let failures = r.failures_in(dropped, Instant::now());
    // The silence starts with the first query the backend left unanswered.
    let first = failures
        .first()
        .expect("the silent backend failed no query")
        .sent;
    let last = failures.last().unwrap().sent;
    let seen = quarantined.saturating_duration_since(first);
    // The window, one 50 ms poll, and the status round trip in a busy emulated VM.
    let bound = WINDOW + Duration::from_millis(400);
    assert!(
        seen <= bound,
        "quarantine seen {seen:?} after the first unanswered query (window {WINDOW:?}): {v:#?}"
    );
    assert!(
        last.duration_since(first) <= bound,
        "failures went on for {:?} after the first: {}",
        last.duration_since(first),
        r.summary()
    );
    assert_ne!(
        current(&load),
        victim,
        "the fixed-port client still reaches the silent backend"
    );
    eprintln!(
        "{family:?} silence: quarantine seen {seen:?} after the first unanswered query, {} failed queries, the last sent {:?} after the first",
        failures.len(),
        last.duration_since(first)
    );
    lab.accept_udp(victim);
    vipd.wait_for(
        "the silent backend re-admitted",
        Duration::from_secs(10),
        |v| matches!(state(v, dest).as_str(), "slow-start" | "healthy"),
    );
    let text = vipd.status_text();
    assert!(text.contains("UdpSent/Replies"), "{text}");
    load.stop();
    vipd.stop();
}

#[test]
fn udp_backend_failures_move_a_fixed_port_client_ipv4() {
    udp_failover(Family::V4, "udp4");
}

#[test]
fn udp_backend_failures_move_a_fixed_port_client_ipv6() {
    udp_failover(Family::V6, "udp6");
}
