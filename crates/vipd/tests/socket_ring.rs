//! Host tier: the socket plane's health ring keeps its last quarter for failures. With
//! the daemon not reading, successes (established connections) fill three quarters of
//! the ring and are then shed and counted; a refusal still gets in. Needs root.

mod socket_common;
mod xdp_common;

use socket_common::{
    addr, backend_netns, procs::client, Cgroup, Pins, Servers, BACKENDS4, TCP_PORT, VIP4, VIP_PORT,
};
use vipd::{
    config::{Config, Protocol, SocketSettings},
    model::{BackendId, Outcome, ServiceKey, Vip},
    plane::{socket::SocketPlane, DataPlane, Held, Weights},
};

/// The TCP service of the VIP with one backend, `backend`, at weight 1.
fn one_backend(backend: std::net::SocketAddr) -> Weights {
    let mut w = Weights::default();
    w.insert(
        ServiceKey::Addr(Vip::new(Protocol::Tcp, addr(VIP4, VIP_PORT))),
        BackendId::new(backend.ip(), backend.port()),
        Held {
            configured: 1,
            weight: Some(1),
        },
    );
    w
}

#[test]
fn a_ring_three_quarters_full_sheds_successes_and_keeps_room_for_failures() {
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &BACKENDS4[..1]);
    let cg = Cgroup::new("sock-ring");
    let pins = Pins::new("sock-ring");
    let settings = SocketSettings {
        cgroup: cg.0.clone(),
    };
    let mut plane = SocketPlane::start_with(&settings, &pins.0)
        .unwrap_or_else(|e| panic!("starting: {}", e.chain()));
    let serving = addr(BACKENDS4[0], TCP_PORT);
    plane
        .apply(&Config::default(), &one_backend(serving))
        .unwrap();
    // The ring is 1 MiB and a record takes 88 bytes (80 and a header): about 8,940 fill
    // three quarters of it. Nothing reads it meanwhile.
    let n = 10_000;
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, n, "tcp");
    let failed: Vec<_> = seen
        .iter()
        .filter(|s| s.backend.starts_with("error"))
        .collect();
    assert!(
        failed.is_empty(),
        "{} connects failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let shed = plane.counters().shed;
    assert!((500..=1_500).contains(&shed), "{shed} of {n} records shed");
    // A refusal: nothing listens on the backend's other port.
    let closed = addr(BACKENDS4[0], 7999);
    plane
        .apply(&Config::default(), &one_backend(closed))
        .unwrap();
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, 1, "tcp");
    assert_eq!(seen[0].backend, "error:111", "{seen:?}");
    let mut reports = Vec::new();
    while plane.take_reports(100_000, &mut reports) > 0 {}
    let established = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Established { .. }))
        .count();
    assert_eq!(
        established as u64 + shed,
        n as u64,
        "every success was either queued or shed"
    );
    assert!(
        reports
            .iter()
            .any(|r| r.outcome == Outcome::Refused && r.backend == Some(closed)),
        "the refusal did not get in: {} reports",
        reports.len()
    );
    assert_eq!(
        plane.lost_events().unwrap().unwrap(),
        0,
        "records lost, not shed"
    );
}
