//! Host tier: the socket data plane (`dataplane = "socket"`) on this kernel. Each test
//! makes a network namespace with backends on its loopback, a child cgroup of the host's
//! cgroup v2 root, and its own pin directory; the plane's programs attach to that cgroup
//! only, and clients run in it. TCP connects to a VIP reach backends in proportion to
//! their weights, a backend at weight 0 gets none, `getpeername` shows the VIP, UDP
//! (connected and not) works, v4 and v6, and a restarted plane takes over its pinned
//! programs and maps with no write. Needs root.

mod socket_common;
mod socket_plane_tests;
mod xdp_common;

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use socket_common::{
    addr, backend_netns, drop_syns_to,
    procs::{client, OneSocket, Seen},
    socket_config,
    web::WebRun,
    Cgroup, Pins, Servers, BACKENDS4, BACKENDS6, TCP_PORT, UDP_PORT, VIP4, VIP6, VIP_PORT,
};
use vipd::{
    config::{Config, Protocol, SocketSettings},
    model::{BackendId, ServiceKey, Vip},
    plane::{socket::SocketPlane, DataPlane, Held, Weights},
    sockplane::maps::Records,
};

/// Weights of the TCP and UDP services of `vip` over `backends` (the UDP ones on
/// [`UDP_PORT`]).
fn weights(vip: &str, backends: &[&str], w: &[u32]) -> Weights {
    let mut out = Weights::default();
    for (protocol, port) in [(Protocol::Tcp, TCP_PORT), (Protocol::Udp, UDP_PORT)] {
        let vport = if protocol == Protocol::Tcp {
            VIP_PORT
        } else {
            UDP_PORT
        };
        let key = ServiceKey::Addr(Vip::new(protocol, addr(vip, vport)));
        for (b, w) in backends.iter().zip(w) {
            let a = addr(b, port);
            out.insert(
                key,
                BackendId::new(a.ip(), a.port()),
                Held {
                    configured: *w,
                    weight: Some(*w),
                },
            );
        }
    }
    out
}

/// The service of `vip` with `backend` alone, at weight 1.
fn one_backend(protocol: Protocol, vip: SocketAddr, backend: SocketAddr) -> Weights {
    let mut w = Weights::default();
    w.insert(
        ServiceKey::Addr(Vip::new(protocol, vip)),
        BackendId::new(backend.ip(), backend.port()),
        Held {
            configured: 1,
            weight: Some(1),
        },
    );
    w
}

fn start(cgroup: &Path, pins: &Path) -> SocketPlane {
    let s = SocketSettings {
        cgroup: cgroup.to_owned(),
    };
    SocketPlane::start_with(&s, pins).unwrap_or_else(|e| panic!("starting: {}", e.chain()))
}

/// How many exchanges each backend answered; panics on an error or a peer that is not
/// `vip`.
fn tally(seen: &[Seen], vip: SocketAddr) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in seen {
        assert!(
            !s.backend.starts_with("error"),
            "an exchange failed: {seen:?}"
        );
        assert_eq!(s.peer, vip, "the socket's peer is not the VIP");
        *out.entry(s.backend.clone()).or_default() += 1;
    }
    out
}

fn spread_per_weights(vip: &str, backends: [&str; 3], tag: &str) {
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    let cg = Cgroup::new(tag);
    let pins = Pins::new(tag);
    let mut plane = start(&cg.0, &pins.0);
    let applied = plane
        .apply(&Config::default(), &weights(vip, &backends, &[3, 1, 0]))
        .unwrap();
    // Three backends on a TCP and a UDP port each, two services.
    assert_eq!(applied.writes, 8, "{applied:?}");

    let n = 400;
    let seen = client(&ns, &cg.0, vip, VIP_PORT, n, "tcp");
    assert_eq!(seen.len(), n);
    let t = tally(&seen, addr(vip, VIP_PORT));
    let (a, b) = (
        t.get(backends[0]).copied().unwrap_or(0),
        t.get(backends[1]).copied().unwrap_or(0),
    );
    assert_eq!(
        t.get(backends[2]),
        None,
        "the weight 0 backend got connections: {t:?}"
    );
    // 3:1 of 400: 300 and 100; the binomial spread is about 9, allow 40.
    assert!(
        a.abs_diff(300) <= 40 && b.abs_diff(100) <= 40,
        "not 3:1: {t:?}"
    );
    // Closed connections leave no translation behind (a few may still be closing).
    let left = plane.records().translations;
    assert!(
        left < 20,
        "{left} translations after {n} closed connections"
    );

    // The first backend goes to weight 0: one map write, and it gets no new connection.
    let w = weights(vip, &backends, &[0, 1, 1]);
    let wrote = plane.write_weights(&w).unwrap();
    assert_eq!(wrote.ops, 2, "one write per service: {wrote:?}");
    let seen = client(&ns, &cg.0, vip, VIP_PORT, 100, "tcp");
    let t = tally(&seen, addr(vip, VIP_PORT));
    assert_eq!(
        t.get(backends[0]),
        None,
        "a weight 0 backend got connections: {t:?}"
    );
    assert!(
        t.contains_key(backends[1]) && t.contains_key(backends[2]),
        "{t:?}"
    );
    // The same weights again: nothing to write.
    assert_eq!(plane.write_weights(&w).unwrap().ops, 0);
}

#[test]
fn tcp_connects_spread_per_weights_and_see_the_vip_v4() {
    spread_per_weights(VIP4, BACKENDS4, "sock-tcp4");
}

/// Thousands of connections, each from its own source port, spread 5:3:2 within 3
/// percentage points of each share (the binomial standard deviation of a share at
/// n = 3,000 is at most 0.9 points).
#[test]
fn three_thousand_connections_spread_per_weights_within_three_points() {
    let backends = BACKENDS4;
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    let cg = Cgroup::new("sock-spread");
    let pins = Pins::new("sock-spread");
    let mut plane = start(&cg.0, &pins.0);
    plane
        .apply(&Config::default(), &weights(VIP4, &backends, &[5, 3, 2]))
        .unwrap();
    let n = 3000;
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, n, "tcp");
    let t = tally(&seen, addr(VIP4, VIP_PORT));
    assert_eq!(t.values().sum::<usize>(), n);
    for (b, want) in backends.iter().zip([0.5, 0.3, 0.2]) {
        let share = t.get(*b).copied().unwrap_or(0) as f64 / n as f64;
        assert!(
            (share - want).abs() <= 0.03,
            "{b}: {share:.3}, want {want}: {t:?}"
        );
    }
}

#[test]
fn tcp_connects_spread_per_weights_and_see_the_vip_v6() {
    spread_per_weights(VIP6, BACKENDS6, "sock-tcp6");
}

fn udp(vip: &str, backends: [&str; 3], tag: &str) {
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    let cg = Cgroup::new(tag);
    let pins = Pins::new(tag);
    let mut plane = start(&cg.0, &pins.0);
    plane
        .apply(&Config::default(), &weights(vip, &backends, &[1, 1, 0]))
        .unwrap();
    let none = Records::default();
    for mode in ["udp", "udp-unconnected"] {
        let seen = client(&ns, &cg.0, vip, UDP_PORT, 60, mode);
        assert_eq!(seen.len(), 60, "{mode}");
        let t = tally(&seen, addr(vip, UDP_PORT));
        assert_eq!(t.get(backends[2]), None, "{mode}: weight 0 answered: {t:?}");
        assert!(
            t.contains_key(backends[0]) && t.contains_key(backends[1]),
            "{mode}: not spread: {t:?}"
        );
        // Every socket was closed: its records went with it.
        assert_eq!(plane.records(), none, "{mode}: records of closed sockets");
    }
    // A socket still open keeps them: both directions, its flow and its VIP.
    let mut sock = OneSocket::start(&ns, &cg.0, vip, UDP_PORT);
    assert_eq!(sock.exchange(3).len(), 3);
    let open = Records {
        translations: 2,
        udp_flows: 1,
        udp_sent: 1,
    };
    assert_eq!(plane.records(), open, "an open socket's records");
    drop(sock);
    assert_eq!(plane.records(), none, "the closed socket's records");
}

/// One unconnected UDP socket keeps its backend across datagrams; when that backend
/// goes to weight 0, its next datagram goes to another, and stays there.
#[test]
fn an_unconnected_udp_socket_sticks_to_its_backend_until_it_leaves_the_selection() {
    let backends = BACKENDS4;
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    let cg = Cgroup::new("sock-sticky");
    let pins = Pins::new("sock-sticky");
    let mut plane = start(&cg.0, &pins.0);
    plane
        .apply(&Config::default(), &weights(VIP4, &backends, &[1, 1, 1]))
        .unwrap();
    let vip = addr(VIP4, UDP_PORT);
    let mut sock = OneSocket::start(&ns, &cg.0, VIP4, UDP_PORT);
    let t = tally(&sock.exchange(20), vip);
    assert_eq!(t.len(), 1, "one socket, several backends: {t:?}");
    let first = t.keys().next().unwrap().clone();
    let i = backends.iter().position(|b| *b == first).unwrap();
    let mut w = [1, 1, 1];
    w[i] = 0;
    plane.write_weights(&weights(VIP4, &backends, &w)).unwrap();
    let t = tally(&sock.exchange(20), vip);
    assert_eq!(t.len(), 1, "not sticky after the move: {t:?}");
    assert!(
        !t.contains_key(&first),
        "still on the backend at weight 0: {t:?}"
    );
}

/// A dual-stack IPv6 socket reaching the IPv4 VIP as `::ffff:a.b.c.d` (as Java and other
/// dual-stack clients do) is balanced as the IPv4 VIP, sees that form as its peer, and
/// its connections are reported with plain IPv4 addresses.
#[test]
fn a_dual_stack_socket_reaching_an_ipv4_vip_is_balanced() {
    use vipd::model::Outcome;
    let backends = BACKENDS4;
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    let cg = Cgroup::new("sock-mapped");
    let pins = Pins::new("sock-mapped");
    let mut plane = start(&cg.0, &pins.0);
    plane
        .apply(&Config::default(), &weights(VIP4, &backends, &[1, 1, 0]))
        .unwrap();
    let mapped = format!("::ffff:{VIP4}");
    let seen = client(&ns, &cg.0, &mapped, VIP_PORT, 40, "tcp");
    let t = tally(&seen, addr(&mapped, VIP_PORT));
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(!t.contains_key(backends[2]), "{t:?}");
    let mut got = Vec::new();
    plane.take_reports(1000, &mut got);
    let established: Vec<_> = got
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Established { .. }))
        .collect();
    assert_eq!(established.len(), 40, "{got:#?}");
    assert!(
        established.iter().all(|r| r.vip == addr(VIP4, VIP_PORT)
            && r.backend
                .is_some_and(|b| b.is_ipv4() && b.port() == TCP_PORT)),
        "{got:#?}"
    );
    let seen = client(&ns, &cg.0, &mapped, UDP_PORT, 20, "udp-unconnected");
    let t = tally(&seen, addr(&mapped, UDP_PORT));
    assert!(!t.contains_key(backends[2]), "{t:?}");
    // Its datagrams were recorded in IPv4 form; the sockets' release found them so.
    let left = plane.records();
    assert_eq!((left.udp_flows, left.udp_sent), (0, 0), "{left:?}");
}

#[test]
fn udp_connected_and_unconnected_see_the_vip_v4() {
    udp(VIP4, BACKENDS4, "sock-udp4");
}

#[test]
fn udp_connected_and_unconnected_see_the_vip_v6() {
    udp(VIP6, BACKENDS6, "sock-udp6");
}

/// The plane goes away (vipd stops): balancing goes on through the pinned links. A
/// new plane takes the links over in place and adopts the maps: the same weights write
/// nothing. Removing the pins detaches the programs.
#[test]
fn a_restart_adopts_the_pinned_programs_with_zero_writes() {
    let backends = BACKENDS4;
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    let cg = Cgroup::new("sock-restart");
    let pins = Pins::new("sock-restart");
    let w = weights(VIP4, &backends, &[1, 1, 1]);
    let vip = addr(VIP4, VIP_PORT);

    let mut first = start(&cg.0, &pins.0);
    assert!(first.apply(&Config::default(), &w).unwrap().writes > 0);
    drop(first);
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, 30, "tcp");
    assert_eq!(
        tally(&seen, vip).values().sum::<usize>(),
        30,
        "not balanced while stopped"
    );

    let mut second = start(&cg.0, &pins.0);
    let status = second.status();
    let programs = vipd::sockplane::loader::program_names().count();
    assert!(
        status.hooks.contains(&format!("{programs} taken over")),
        "{}",
        status.hooks
    );
    let applied = second.apply(&Config::default(), &w).unwrap();
    assert_eq!(applied.writes, 0, "the restart wrote: {applied:?}");
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, 30, "tcp");
    assert_eq!(
        tally(&seen, vip).len(),
        3,
        "not spread over the three: {seen:?}"
    );
    drop(second);

    let removed = vipd::sockplane::pins::remove_ours(&pins.0).unwrap();
    assert_eq!(
        removed.removed.len(),
        programs + vipd::sockplane::loader::PINNED_MAPS.len(),
        "{removed:?}"
    );
    assert!(removed.kept.is_empty(), "{removed:?}");
    // The VIP itself is routed nowhere in the namespace: ENETUNREACH.
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, 1, "tcp");
    assert_eq!(
        seen[0].backend, "error:101",
        "still balanced after the pins went: {seen:?}"
    );
}

/// A setting that is not a cgroup v2 directory is refused before anything is loaded.
#[test]
fn a_cgroup_that_is_not_cgroup2_is_refused() {
    let pins = Pins::new("sock-bad");
    let s = SocketSettings {
        cgroup: "/proc".into(),
    };
    let e = SocketPlane::start_with(&s, &pins.0)
        .err()
        .expect("started on /proc");
    assert!(
        e.chain().contains("not on a cgroup v2 file system"),
        "{}",
        e.chain()
    );
    assert!(!pins.0.exists(), "pins were made for a refused cgroup");
}

/// `vipd run` with `dataplane = "socket"`: it balances the cgroup's clients; killed
/// (SIGKILL), the programs go on balancing; started again, it takes them over and
/// writes nothing for the unchanged config.
#[test]
fn the_daemon_balances_and_a_killed_daemon_restarts_with_zero_writes() {
    use xdp_common::daemon::{Daemon, Scratch};
    let backends = BACKENDS4;
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &[backends[0], backends[1], BACKENDS6[0]]);
    let cg = Cgroup::new("sock-daemon");
    let pins = Pins::new("sock-daemon");
    let scratch = Scratch::new("sock-daemon");
    let dir = &scratch.0;
    let cfg = socket_config(
        dir,
        &cg,
        &format!(
            r#"[[service]]
name = "web"
vip = "{VIP4}:{VIP_PORT}"
backend = [{{ address = "{b0}:{TCP_PORT}", weight = 2 }}, {{ address = "{b1}:{TCP_PORT}" }}]

[[service]]
name = "web6"
vip = "[{VIP6}]:{VIP_PORT}"
backend = [{{ address = "[{c0}]:{TCP_PORT}" }}]
"#,
            b0 = backends[0],
            b1 = backends[1],
            c0 = BACKENDS6[0],
        ),
    );
    let runtime = dir.join("run");
    let pin_dir = pins.0.display().to_string();
    let env = [("VIPD_SOCKET_PIN_DIR", pin_dir.as_str())];
    let running = |d: &Daemon| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let log = d.log();
            if let Some(line) = log.lines().find(|l| l.contains("vipd running")) {
                return line.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "vipd did not start:\n{log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let first = Daemon::start_in(&ns, &cfg, &runtime, &dir.join("first.log"), &env);
    let line = running(&first);
    assert!(
        line.contains("dataplane=\"socket\"") || line.contains("dataplane=socket"),
        "{line}"
    );
    assert!(
        !line.contains("writes=0"),
        "the first start wrote nothing: {line}"
    );
    let vip = addr(VIP4, VIP_PORT);
    let t = tally(&client(&ns, &cg.0, VIP4, VIP_PORT, 90, "tcp"), vip);
    assert_eq!(t.len(), 2, "not spread over both: {t:?}");
    assert!(t[backends[0]] > t[backends[1]], "not 2:1: {t:?}");
    let t6 = tally(
        &client(&ns, &cg.0, VIP6, VIP_PORT, 5, "tcp"),
        addr(VIP6, VIP_PORT),
    );
    assert_eq!(t6.get(BACKENDS6[0]), Some(&5), "{t6:?}");

    drop(first);
    let t = tally(&client(&ns, &cg.0, VIP4, VIP_PORT, 20, "tcp"), vip);
    assert_eq!(
        t.values().sum::<usize>(),
        20,
        "not balanced while vipd is down"
    );

    let second = Daemon::start_in(&ns, &cfg, &runtime, &dir.join("second.log"), &env);
    let line = running(&second);
    assert!(
        line.contains("writes=0"),
        "the restart wrote: {line}\n{}",
        second.log()
    );
    let t = tally(&client(&ns, &cg.0, VIP4, VIP_PORT, 20, "tcp"), vip);
    assert_eq!(t.values().sum::<usize>(), 20);
    drop(second);

    // A vipd started with another data plane removes the socket plane's pins first
    // (whether or not that plane then starts here: this host has no IPVS).
    let ipvs = dir.join("ipvs.toml");
    std::fs::write(
        &ipvs,
        format!(
            "[[service]]\nname = \"web\"\nvip = \"{VIP4}:{VIP_PORT}\"\nbackend = [{{ address = \"{}:{TCP_PORT}\" }}]\n",
            backends[0]
        ),
    )
    .unwrap();
    let mut third = Daemon::start_in(&ns, &ipvs, &runtime, &dir.join("third.log"), &env);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pins.0.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pins stayed:\n{}",
            third.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = third.child.kill();
    let _ = third.child.wait();
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, 1, "tcp");
    assert_eq!(seen[0].backend, "error:101", "still balanced: {seen:?}");
}

/// The `sock_ops` program reports a translated connection's establishment, and the SYN
/// retransmission of one whose backend drops SYNs (a firewall in the namespace); the
/// reset tracepoint reports a refusal; each names the VIP and the real backend.
#[test]
fn established_refused_and_unanswered_syns_are_reported_with_vip_and_backend() {
    use vipd::model::Outcome;
    let backends = BACKENDS4;
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    drop_syns_to(&ns, backends[2]);
    let cg = Cgroup::new("sock-health");
    let pins = Pins::new("sock-health");
    let mut plane = start(&cg.0, &pins.0);
    assert!(plane.event_fd().is_some(), "no event source");
    let vip = addr(VIP4, VIP_PORT);
    let reports = |plane: &mut SocketPlane| {
        let mut out = Vec::new();
        plane.take_reports(1000, &mut out);
        out
    };

    plane
        .apply(&Config::default(), &weights(VIP4, &backends, &[1, 0, 0]))
        .unwrap();
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, 3, "tcp");
    assert_eq!(tally(&seen, vip).get(backends[0]), Some(&3));
    let got = reports(&mut plane);
    let established: Vec<_> = got
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Established { .. }))
        .collect();
    assert_eq!(established.len(), 3, "{got:#?}");
    assert!(
        established
            .iter()
            .all(|r| r.vip == vip && r.backend == Some(addr(backends[0], TCP_PORT))),
        "{got:#?}"
    );

    // Only the backend that drops SYNs: the connect times out after 2 s, by when the
    // first retransmission (1 s) has been reported.
    plane
        .write_weights(&weights(VIP4, &backends, &[0, 0, 1]))
        .unwrap();
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, 1, "tcp");
    assert!(seen[0].backend.starts_with("error"), "{seen:?}");
    let got = reports(&mut plane);
    let retransmits: Vec<_> = got
        .iter()
        .filter(|r| r.outcome == Outcome::SynRetransmit(1))
        .collect();
    assert!(
        !retransmits.is_empty(),
        "no SYN retransmission reported: {got:#?}"
    );
    assert!(
        retransmits
            .iter()
            .all(|r| r.vip == vip && r.backend == Some(addr(backends[2], TCP_PORT))),
        "{got:#?}"
    );
    assert!(
        !got.iter()
            .any(|r| matches!(r.outcome, Outcome::Established { .. })),
        "{got:#?}"
    );

    // A backend with no listener answers the SYN with an RST: a refusal, reported by
    // the tracepoint with the client's end too.
    let closed = addr(backends[0], 7999);
    plane
        .apply(&Config::default(), &one_backend(Protocol::Tcp, vip, closed))
        .unwrap();
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, 2, "tcp");
    assert!(seen.iter().all(|s| s.backend == "error:111"), "{seen:?}");
    let got = reports(&mut plane);
    let refused: Vec<_> = got
        .iter()
        .filter(|r| r.outcome == Outcome::Refused)
        .collect();
    assert_eq!(refused.len(), 2, "{got:#?}");
    assert!(
        refused.iter().all(|r| r.vip == vip
            && r.backend == Some(closed)
            && r.client.is_some_and(|c| c.port() != 0)),
        "{got:#?}"
    );
    assert_eq!(plane.lost_events().unwrap().unwrap(), 0);
}

/// How the second backend fails in [`quarantine`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Its firewall drops SYNs: `sock_ops` reports the SYN retransmission.
    Blackhole,
    /// Nothing listens: the RST is reported by the reset tracepoint.
    Refusal,
}

/// `vipd run` with the socket plane: the second backend fails as `failure` says, the
/// report names the VIP and the real backend, the health machine quarantines it, and
/// new connections go to the first backend only.
fn quarantine(tag: &str, vip_ip: &str, backends: [&str; 3], failure: Failure) {
    use xdp_common::daemon::backend;
    let serving = match failure {
        Failure::Blackhole => &backends[..2],
        Failure::Refusal => &backends[..1],
    };
    let run = WebRun::start(
        tag,
        vip_ip,
        &backends,
        serving,
        "  retransmit_threshold = 1\n  refuse_threshold = 1\n  base_ejection = \"60s\"\n",
    );
    if failure == Failure::Blackhole {
        drop_syns_to(&run.ns, backends[1]);
    }
    let (ns, cg, daemon) = (&run.ns, &run.cg, &run.daemon);
    let (vip, good, bad) = (run.vip, run.good, run.bad);
    let v = daemon.status();
    assert_eq!(v.dataplane, "socket");
    assert_eq!(v.services[0].scheduler, "random");
    assert!(v.watcher.hooks.contains("sock_ops"), "{:?}", v.watcher);
    assert!(
        v.watcher.mode.contains("refusals (tcp_receive_reset)"),
        "{:?}",
        v.watcher
    );

    // Connections until one has met the failing backend (a blackholed one waits 2 s).
    let mut failed = 0;
    for _ in 0..20 {
        let seen = client(ns, &cg.0, vip_ip, VIP_PORT, 1, "tcp");
        if seen[0].backend.starts_with("error") {
            failed += 1;
            break;
        }
        assert_eq!(seen[0].peer, vip);
    }
    assert_eq!(failed, 1, "no connection went to the failing backend");
    let v = daemon.wait_status(
        "the failing backend quarantined",
        std::time::Duration::from_secs(5),
        |v| backend(v, &bad.to_string()).state == "quarantined",
    );
    let b = backend(&v, &bad.to_string());
    assert_eq!(b.weight, 0, "{b:?}");
    match failure {
        Failure::Blackhole => assert!(b.outcomes.syn_retransmits >= 1, "{b:?}"),
        Failure::Refusal => assert!(b.outcomes.refused >= 1, "{b:?}"),
    }
    // From now on, every new connection goes to the good backend.
    let t = tally(&client(ns, &cg.0, vip_ip, VIP_PORT, 30, "tcp"), vip);
    assert_eq!(t.get(backends[0]), Some(&30), "{t:?}\n{}", daemon.log());
    let v = daemon.wait_status(
        "established counted",
        std::time::Duration::from_secs(5),
        |v| backend(v, &good.to_string()).outcomes.established >= 30,
    );
    assert_eq!(backend(&v, &good.to_string()).state, "healthy");
}

#[test]
fn the_daemon_quarantines_a_blackholed_backend_v4() {
    quarantine("sock-blackhole", VIP4, BACKENDS4, Failure::Blackhole);
}

#[test]
fn the_daemon_quarantines_a_refusing_backend_v6() {
    quarantine("sock-refusal", VIP6, BACKENDS6, Failure::Refusal);
}

/// `vipd check` looks at what the socket plane needs on this host: a cgroup that is
/// not cgroup v2 is an error naming it; this host's cgroup v2 root passes.
#[test]
fn vipd_check_looks_at_the_socket_planes_kernel_features() {
    let scratch = xdp_common::daemon::Scratch::new("sock-check");
    let run = |cgroup: &str| {
        let cfg = scratch.0.join("vipd.toml");
        std::fs::write(
            &cfg,
            format!(
                "dataplane = \"socket\"\n[socket]\ncgroup = \"{cgroup}\"\n\n\
                 [[service]]\nname = \"web\"\nvip = \"{VIP4}:{VIP_PORT}\"\n\
                 backend = [{{ address = \"{}:{TCP_PORT}\" }}]\n",
                BACKENDS4[0]
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vipd"))
            .env_remove("VIPD_LOG")
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run("/proc");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("[socket] cgroup /proc is not a cgroup v2 directory"),
        "{err}"
    );
    assert!(err.contains("1 error on this host"), "{err}");
    let root = SocketSettings::default_cgroup();
    let (code, out, err) = run(&root.display().to_string());
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.ends_with("ok: 1 service, 1 backend\n"), "{out}");
}
