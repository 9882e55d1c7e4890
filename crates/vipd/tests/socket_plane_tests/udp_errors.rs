//! ICMP errors on UDP sockets: a connected socket the connect hook sent to a backend
//! with nothing on its port gets a port unreachable, and `inet_sk_error_report` reports
//! it with the VIP, the real backend and the ICMP error the kernel's errno came from.
//! The same error on a socket connected straight to that backend is not the plane's,
//! and is not reported.

use std::net::SocketAddr;

use vipd::{
    config::{Config, Protocol},
    model::{IcmpCode, Outcome, Report},
    plane::{socket::SocketPlane, DataPlane},
};

use crate::{
    one_backend,
    socket_common::{
        addr, backend_netns, procs::client, Cgroup, Pins, Servers, BACKENDS4, BACKENDS6, UDP_PORT,
        VIP4, VIP6,
    },
    start,
};

/// A port nothing listens on, on the backends.
const CLOSED: u16 = 7998;

fn reports(plane: &mut SocketPlane) -> Vec<Report> {
    let mut out = Vec::new();
    plane.take_reports(1000, &mut out);
    out
}

fn port_unreachable(tag: &str, vip_ip: &str, backends: [&str; 3], icmp: (u8, u8)) {
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    let cg = Cgroup::new(tag);
    let pins = Pins::new(tag);
    let mut plane = start(&cg.0, &pins.0);
    assert!(
        plane
            .mode()
            .contains("ICMP errors on connected UDP sockets"),
        "{}",
        plane.mode()
    );
    let vip = addr(vip_ip, UDP_PORT);
    let closed: SocketAddr = addr(backends[1], CLOSED);
    plane
        .apply(&Config::default(), &one_backend(Protocol::Udp, vip, closed))
        .unwrap();

    let seen = client(&ns, &cg.0, vip_ip, UDP_PORT, 3, "udp");
    assert!(seen.iter().all(|s| s.backend == "error:111"), "{seen:?}");
    let got = reports(&mut plane);
    let unreachable: Vec<_> = got
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Unreachable(_)))
        .collect();
    assert_eq!(unreachable.len(), 3, "{got:#?}");
    let want = Outcome::Unreachable(IcmpCode {
        v6: vip.is_ipv6(),
        icmp_type: icmp.0,
        code: icmp.1,
    });
    assert!(
        unreachable.iter().all(|r| r.vip == vip
            && r.backend == Some(closed)
            && r.protocol == 17
            && r.outcome == want
            && r.client.is_some_and(|c| c.port() != 0)),
        "{got:#?}"
    );

    // Straight to the backend: the same error, but no translation of the plane's.
    let seen = client(&ns, &cg.0, backends[1], CLOSED, 2, "udp");
    assert!(seen.iter().all(|s| s.backend == "error:111"), "{seen:?}");
    let got = reports(&mut plane);
    assert!(got.is_empty(), "{got:#?}");
    assert_eq!(plane.lost_events().unwrap().unwrap(), 0);
}

#[test]
fn a_port_unreachable_on_a_connected_udp_socket_is_reported_v4() {
    port_unreachable("sock-udp-err4", VIP4, BACKENDS4, (3, 3));
}

#[test]
fn a_port_unreachable_on_a_connected_udp_socket_is_reported_v6() {
    port_unreachable("sock-udp-err6", VIP6, BACKENDS6, (1, 4));
}
