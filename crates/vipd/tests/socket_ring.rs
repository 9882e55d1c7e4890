//! Host tier: the socket plane's health ring keeps its last quarter for failures. With
//! the daemon not reading, successes (established connections) fill three quarters of
//! the ring and are then shed and counted; a refusal still gets in. Successes wake a
//! waiting reader only once an eighth of the ring is unread. Needs root.

mod socket_common;
mod xdp_common;

use std::os::fd::{AsRawFd, OwnedFd};

use socket_common::{
    addr, backend_netns, procs::client, start_plane, Cgroup, Pins, Servers, BACKENDS4, TCP_PORT,
    VIP4, VIP_PORT,
};
use vipd::{
    config::{Config, Protocol},
    model::{BackendId, Outcome, ServiceKey, Vip},
    plane::{socket::SocketPlane, DataPlane, Held, Weights},
};
use xdp_common::Netns;

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

/// The plane on a test's own namespace (backend 0 serving), cgroup and pins, with the
/// VIP's TCP service on backend 0. Fields drop in order: the plane first.
struct Run {
    plane: SocketPlane,
    _pins: Pins,
    cg: Cgroup,
    _servers: Servers,
    ns: Netns,
}

impl Run {
    fn start(tag: &str) -> Run {
        let ns = backend_netns();
        let servers = Servers::start(&ns, &BACKENDS4[..1]);
        let cg = Cgroup::new(tag);
        let pins = Pins::new(tag);
        let mut plane = start_plane(&cg, &pins);
        plane
            .apply(
                &Config::default(),
                &one_backend(addr(BACKENDS4[0], TCP_PORT)),
            )
            .unwrap();
        Run {
            plane,
            _pins: pins,
            cg,
            _servers: servers,
            ns,
        }
    }
}

#[test]
fn a_ring_three_quarters_full_sheds_successes_and_keeps_room_for_failures() {
    // Bound whole: every part lives to the test's end.
    let mut run = Run::start("sock-ring");
    let (plane, cg, ns) = (&mut run.plane, &run.cg, &run.ns);
    // The ring is 1 MiB and a record takes 88 bytes (80 and a header): about 8,940 fill
    // three quarters of it. Nothing reads it meanwhile.
    let n = 10_000;
    let seen = client(ns, &cg.0, VIP4, VIP_PORT, n, "tcp");
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
    let seen = client(ns, &cg.0, VIP4, VIP_PORT, 1, "tcp");
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

/// An edge-triggered epoll instance on the ring, as the daemon's reader waits on it: an
/// event comes only when a record wakes the reader, not while records merely wait.
struct Edge(OwnedFd);

impl Edge {
    fn on(fd: &OwnedFd) -> Self {
        // SAFETY: plain syscalls; the new descriptor is owned at once.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(
            ep >= 0,
            "epoll_create1: {}",
            std::io::Error::last_os_error()
        );
        let ep = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: valid descriptors and event.
        let rc = unsafe {
            libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev)
        };
        assert_eq!(rc, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        Edge(ep)
    }

    /// Whether the reader was woken since the last call.
    fn woken(&self) -> bool {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: room for one event; no wait.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), &mut ev, 1, 0) };
        assert!(n >= 0, "epoll_wait: {}", std::io::Error::last_os_error());
        n == 1
    }
}

#[test]
fn successes_wake_the_reader_only_once_an_eighth_of_the_ring_is_unread() {
    // Bound whole: every part lives to the test's end.
    let mut run = Run::start("sock-ring-wake");
    let (plane, cg, ns) = (&mut run.plane, &run.cg, &run.ns);
    let fd = plane.event_fd().expect("an event source").unwrap();
    let edge = Edge::on(&fd);
    let connect = |n: usize| {
        let seen = client(ns, &cg.0, VIP4, VIP_PORT, n, "tcp");
        assert!(
            seen.iter().all(|s| !s.backend.starts_with("error")),
            "{seen:?}"
        );
    };
    // A few successes (well under an eighth of the 1 MiB ring: 88 bytes each) wait for
    // the reader's drain without waking it.
    connect(50);
    assert!(!edge.woken(), "50 successes woke the reader");
    // Past an eighth of the ring unread (about 1,490 records), nothing reading: they
    // wake it.
    connect(1_600);
    assert!(
        edge.woken(),
        "1,650 unread successes did not wake the reader"
    );
    let mut reports = Vec::new();
    while plane.take_reports(100_000, &mut reports) > 0 {}
    assert_eq!(reports.len(), 1_650, "every success queued");
}
