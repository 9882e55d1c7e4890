//! Host tier: the socket data plane (`dataplane = "socket"`) on this kernel. Each test
//! makes a network namespace with backends on its loopback, a child cgroup of the host's
//! cgroup v2 root, and its own pin directory; the plane's programs attach to that cgroup
//! only, and clients run in it. TCP connects to a VIP reach backends in proportion to
//! their weights, a backend at weight 0 gets none, `getpeername` shows the VIP, UDP
//! (connected and not) works, v4 and v6, and a restarted plane takes over its pinned
//! programs and maps with no write. Needs root.

mod socket_common;
mod xdp_common;

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use socket_common::{
    addr, backend_netns, client, procs::Seen, Cgroup, Pins, Servers, BACKENDS4, BACKENDS6,
    TCP_PORT, UDP_PORT, VIP4, VIP6, VIP_PORT,
};
use vipd::{
    config::{Config, Protocol, SocketSettings},
    model::{BackendId, ServiceKey, Vip},
    plane::{socket::SocketPlane, DataPlane, Held, Weights},
    sockplane::loader::Attached,
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
        assert_ne!(s.backend, "error", "an exchange failed: {seen:?}");
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
    for mode in ["udp", "udp-unconnected"] {
        let seen = client(&ns, &cg.0, vip, UDP_PORT, 60, mode);
        assert_eq!(seen.len(), 60, "{mode}");
        let t = tally(&seen, addr(vip, UDP_PORT));
        assert_eq!(t.get(backends[2]), None, "{mode}: weight 0 answered: {t:?}");
        assert!(
            t.contains_key(backends[0]) && t.contains_key(backends[1]),
            "{mode}: not spread: {t:?}"
        );
    }
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
    assert!(status.hooks.contains("8 taken over"), "{}", status.hooks);
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
    assert_eq!(removed.removed.len(), 8 + 3, "{removed:?}");
    assert!(removed.kept.is_empty(), "{removed:?}");
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, 1, "tcp");
    assert_eq!(
        seen[0].backend, "error",
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
    let _ = Attached::New;
}
