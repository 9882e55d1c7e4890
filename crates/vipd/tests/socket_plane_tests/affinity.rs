//! Persistence (session affinity) on the socket plane: with `persistence`, this host's
//! connections and datagrams to a VIP all go to one backend while they keep coming
//! within the timeout; a backend that leaves the selection (weight 0, quarantine) loses
//! its sticky clients to a fresh choice, which sticks in turn; past the timeout the
//! choice is made afresh; a service without persistence still spreads.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use vipd::{
    config::{Config, Protocol},
    model::{BackendId, ServiceKey, Vip},
    plane::{socket::SocketPlane, DataPlane, Held, Weights},
};

use crate::{
    socket_common::{
        addr, backend_netns,
        procs::{client, HeldTcp},
        Cgroup, Pins, Servers, BACKENDS4, TCP_PORT, UDP_PORT, VIP4, VIP_PORT,
    },
    start, tally,
    xdp_common::Netns,
};

/// A second TCP port of the VIP, for a service without persistence.
const PLAIN_PORT: u16 = 81;

/// The services: TCP on [`VIP_PORT`] and UDP on [`UDP_PORT`] with persistence of
/// `timeout`, TCP on [`PLAIN_PORT`] without.
fn config(timeout: &str) -> Config {
    let backends = |port: u16| {
        BACKENDS4
            .iter()
            .map(|b| format!("{{ address = \"{b}:{port}\" }}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        r#"dataplane = "socket"

[[service]]
name = "sticky"
vip = "{VIP4}:{VIP_PORT}"
persistence = {{ timeout = "{timeout}", netmask = 24 }}
backend = [{tcp}]

[[service]]
name = "sticky-udp"
vip = "{VIP4}:{UDP_PORT}"
protocol = "udp"
persistence = {{ timeout = "{timeout}" }}
backend = [{udp}]

[[service]]
name = "plain"
vip = "{VIP4}:{PLAIN_PORT}"
backend = [{tcp}]
"#,
        tcp = backends(TCP_PORT),
        udp = backends(UDP_PORT),
    );
    vipd::config::parse("vipd.toml", &text).unwrap_or_else(|d| panic!("{d}"))
}

/// Weights of the three services, `w` for each of them.
fn weights(w: [u32; 3]) -> Weights {
    let mut out = Weights::default();
    let services = [
        (Protocol::Tcp, VIP_PORT, TCP_PORT),
        (Protocol::Udp, UDP_PORT, UDP_PORT),
        (Protocol::Tcp, PLAIN_PORT, TCP_PORT),
    ];
    for (protocol, vport, port) in services {
        let key = ServiceKey::Addr(Vip::new(protocol, addr(VIP4, vport)));
        for (b, w) in BACKENDS4.iter().zip(w) {
            let a = addr(b, port);
            out.insert(
                key,
                BackendId::new(a.ip(), a.port()),
                Held {
                    configured: 1,
                    weight: Some(w),
                },
            );
        }
    }
    out
}

/// The one backend all of `t` went to; panics if there are several.
fn one(t: &BTreeMap<String, usize>, what: &str) -> String {
    assert_eq!(t.len(), 1, "{what}: not one backend: {t:?}");
    t.keys().next().unwrap().clone()
}

/// The three services on the plane, at weight 1 each, with persistence of `timeout`,
/// and the backends' servers. Fields drop in order: the plane and its pins before the
/// cgroup they are attached to.
struct Lab {
    plane: SocketPlane,
    _pins: Pins,
    cg: Cgroup,
    _servers: Servers,
    ns: Netns,
}

impl Lab {
    fn new(tag: &str, timeout: &str) -> Lab {
        let ns = backend_netns();
        let servers = Servers::start(&ns, &BACKENDS4);
        let cg = Cgroup::new(tag);
        let pins = Pins::new(tag);
        let mut plane = start(&cg.0, &pins.0);
        plane.apply(&config(timeout), &weights([1, 1, 1])).unwrap();
        Lab {
            plane,
            _pins: pins,
            cg,
            _servers: servers,
            ns,
        }
    }
}

/// Makes a fresh choice all but certain to leave `sticky`: it keeps weight 1, the
/// others get 1,000 each (while an entry holds, weights do not move its client).
fn favour_others(plane: &mut SocketPlane, sticky: &str) {
    let mut w = [1000, 1000, 1000];
    w[index(sticky)] = 1;
    plane.write_weights(&weights(w)).unwrap();
}

fn index(b: &str) -> usize {
    BACKENDS4.iter().position(|x| *x == b).unwrap()
}

/// What `vipd status` would show of the services with persistence: per service (by its
/// VIP's port), the backends (by address) clients stick to and how many.
fn sticky(plane: &mut SocketPlane) -> BTreeMap<u16, BTreeMap<String, u32>> {
    let counts = plane
        .sticky_clients()
        .expect("the socket plane counts sticky clients");
    counts
        .into_iter()
        .map(|(key, backends)| {
            let ServiceKey::Addr(vip) = key else {
                panic!("not an address service: {key:?}");
            };
            let backends = backends
                .into_iter()
                .map(|(b, n)| (b.ip.to_string(), n))
                .collect();
            (vip.addr.port(), backends)
        })
        .collect()
}

#[test]
fn connections_with_persistence_stick_to_one_backend_and_move_once_it_leaves() {
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &BACKENDS4);
    let cg = Cgroup::new("sock-affinity");
    let pins = Pins::new("sock-affinity");
    let mut plane: SocketPlane = start(&cg.0, &pins.0);
    let cfg = config("300s");
    plane.apply(&cfg, &weights([1, 1, 1])).unwrap();
    let (vip, uvip): (SocketAddr, SocketAddr) = (addr(VIP4, VIP_PORT), addr(VIP4, UDP_PORT));

    let n = 2000;
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, n, "tcp");
    let t = tally(&seen, vip);
    assert_eq!(t.values().sum::<usize>(), n);
    let first = one(&t, "tcp");
    for mode in ["udp", "udp-unconnected"] {
        let t = tally(&client(&ns, &cg.0, VIP4, UDP_PORT, 100, mode), uvip);
        one(&t, mode);
    }
    // Without persistence, the same host's connections spread.
    let t = tally(
        &client(&ns, &cg.0, VIP4, PLAIN_PORT, 300, "tcp"),
        addr(VIP4, PLAIN_PORT),
    );
    assert_eq!(t.len(), 3, "the service without persistence: {t:?}");
    // One client (this host, unbound sockets) per service with persistence, and the
    // service without persistence is not listed.
    assert_eq!(plane.affinities().len(), 2, "{:?}", plane.affinities());
    let udp_first = {
        let t = tally(&client(&ns, &cg.0, VIP4, UDP_PORT, 1, "udp"), uvip);
        one(&t, "udp")
    };
    assert_eq!(
        sticky(&mut plane),
        BTreeMap::from([
            (VIP_PORT, BTreeMap::from([(first.clone(), 1)])),
            (UDP_PORT, BTreeMap::from([(udp_first, 1)])),
        ])
    );
    // A reload that changes the timeout rewrites the two services with persistence
    // only, and the client keeps its backend.
    let applied = plane.apply(&config("60s"), &weights([1, 1, 1])).unwrap();
    assert_eq!(applied.writes, 2, "{applied:?}");
    let t = tally(&client(&ns, &cg.0, VIP4, VIP_PORT, 100, "tcp"), vip);
    assert_eq!(one(&t, "tcp after the reload"), first);

    // The sticky backend is quarantined (weight 0): the client moves, and sticks.
    let mut w = [1, 1, 1];
    w[index(&first)] = 0;
    plane.write_weights(&weights(w)).unwrap();
    let t = tally(&client(&ns, &cg.0, VIP4, VIP_PORT, 1000, "tcp"), vip);
    let second = one(&t, "tcp after the quarantine");
    assert_ne!(second, first, "still on the backend at weight 0");
    assert_eq!(
        sticky(&mut plane)[&VIP_PORT],
        BTreeMap::from([(second.clone(), 1)])
    );
    let t = tally(&client(&ns, &cg.0, VIP4, UDP_PORT, 50, "udp"), uvip);
    assert_ne!(one(&t, "udp after the quarantine"), first);

    // The first backend comes back: the client stays where it is now.
    plane.write_weights(&weights([1, 1, 1])).unwrap();
    let t = tally(&client(&ns, &cg.0, VIP4, VIP_PORT, 500, "tcp"), vip);
    assert_eq!(one(&t, "tcp after the return"), second);

    // The sticky backend is removed from the service: the client moves again.
    let mut w = weights([1, 1, 1]);
    let gone = addr(&second, TCP_PORT);
    w.insert(
        ServiceKey::Addr(Vip::new(Protocol::Tcp, vip)),
        BackendId::new(gone.ip(), gone.port()),
        Held {
            configured: 1,
            weight: None,
        },
    );
    plane.write_weights(&w).unwrap();
    let t = tally(&client(&ns, &cg.0, VIP4, VIP_PORT, 300, "tcp"), vip);
    assert_ne!(one(&t, "tcp after the removal"), second);
}

/// A 1 s timeout: connections every 300 ms for 2.4 s keep the entry alive (it is
/// refreshed on use); after 1.6 s without any, the choice is made afresh. The weights
/// make a fresh choice all but certain to differ: the sticky backend keeps weight 1,
/// the others get 1,000 each (while the entry is good, weights do not move the client).
#[test]
fn affinity_is_refreshed_on_use_and_expires_after_its_timeout() {
    let mut lab = Lab::new("sock-affexp", "1s");
    let (ns, cg) = (&lab.ns, &lab.cg);
    let vip = addr(VIP4, VIP_PORT);
    let first = one(
        &tally(&client(ns, &cg.0, VIP4, VIP_PORT, 20, "tcp"), vip),
        "tcp",
    );
    favour_others(&mut lab.plane, &first);

    let began = Instant::now();
    while began.elapsed() < Duration::from_millis(2400) {
        let t = tally(&client(ns, &cg.0, VIP4, VIP_PORT, 1, "tcp"), vip);
        assert_eq!(
            one(&t, "within the timeout"),
            first,
            "moved {:?} into connecting every 300 ms",
            began.elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        sticky(&mut lab.plane)[&VIP_PORT],
        BTreeMap::from([(first.clone(), 1)])
    );
    std::thread::sleep(Duration::from_millis(1600));
    // Past its timeout the entry is still in the map, but no client sticks any more.
    assert_eq!(
        lab.plane.affinities().len(),
        1,
        "{:?}",
        lab.plane.affinities()
    );
    assert_eq!(sticky(&mut lab.plane)[&VIP_PORT], BTreeMap::new());
    let t = tally(&client(ns, &cg.0, VIP4, VIP_PORT, 20, "tcp"), vip);
    let after = one(&t, "after the timeout");
    assert_ne!(after, first, "the entry did not expire");
}

/// A TCP connection holds its client's entry while it is open, as a connection an IPVS
/// template controls keeps the template: past the timeout (1 s) the client's next
/// connections still go to its backend, and once the connection closes the timeout runs
/// again from then. The weights make a fresh choice all but certain to differ.
#[test]
fn an_open_connection_holds_its_clients_affinity_past_the_timeout() {
    let mut lab = Lab::new("sock-affhold", "1s");
    let (ns, cg) = (&lab.ns, &lab.cg);
    let vip = addr(VIP4, VIP_PORT);
    let (held, seen) = HeldTcp::start(ns, &cg.0, VIP4, VIP_PORT);
    assert_eq!(seen.peer, vip, "the held connection's peer");
    let first = seen.backend;
    favour_others(&mut lab.plane, &first);

    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        sticky(&mut lab.plane)[&VIP_PORT],
        BTreeMap::from([(first.clone(), 1)]),
        "the open connection holds its client"
    );
    let t = tally(&client(ns, &cg.0, VIP4, VIP_PORT, 20, "tcp"), vip);
    assert_eq!(one(&t, "past the timeout, a connection open"), first);

    held.close();
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        sticky(&mut lab.plane)[&VIP_PORT],
        BTreeMap::new(),
        "the timeout runs again from the close"
    );
    let t = tally(&client(ns, &cg.0, VIP4, VIP_PORT, 20, "tcp"), vip);
    assert_ne!(one(&t, "after the close and the timeout"), first);
}
