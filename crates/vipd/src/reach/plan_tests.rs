use super::*;
use crate::reach::route::{RTN_UNICAST, RTPROT_VIPD};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn link(index: u32, name: &str, kind: Option<&str>, up: bool) -> Link {
    Link {
        index,
        name: name.into(),
        kind: kind.map(Into::into),
        up,
    }
}

/// A host-length address as vipd once added VIPs (IPv4 with host scope).
fn vip_addr(index: u32, a: &str) -> Addr {
    let addr = ip(a);
    Addr {
        index,
        addr,
        prefix_len: if addr.is_ipv4() { 32 } else { 128 },
        scope: if addr.is_ipv4() { 254 } else { 0 },
    }
}

fn net_addr(index: u32, a: &str, prefix_len: u8) -> Addr {
    Addr {
        index,
        addr: ip(a),
        prefix_len,
        scope: 0,
    }
}

fn route(oif: u32, dst: &str, protocol: u8, src: Option<&str>) -> Route {
    let dst = ip(dst);
    Route {
        dst,
        prefix_len: if dst.is_ipv4() { 32 } else { 128 },
        oif,
        protocol,
        kind: RTN_UNICAST,
        src: src.map(ip),
    }
}

/// lo, and eth0 holding the host's address 198.18.250.2/24 and fd00:18:fa::2/64.
fn host() -> NetState {
    NetState {
        links: vec![
            link(1, "lo", None, true),
            link(2, "eth0", Some("veth"), true),
        ],
        addrs: vec![
            net_addr(1, "127.0.0.1", 8),
            net_addr(2, "198.18.250.2", 24),
            net_addr(2, "fd00:18:fa::2", 64),
            net_addr(2, "fe80::1", 64),
        ],
        routes: Vec::new(),
    }
}

fn with_vipd0(up: bool) -> NetState {
    let mut n = host();
    n.links.push(link(3, "vipd0", Some("dummy"), up));
    n
}

fn wanted(v: &[(&str, Option<&str>)]) -> BTreeMap<IpAddr, Option<IpAddr>> {
    v.iter().map(|(a, s)| (ip(a), s.map(ip))).collect()
}

fn record(interfaces: &[&str], routes: &[(&str, &str)], addrs: &[(&str, &str)]) -> ReachRecord {
    ReachRecord {
        created_interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
        routes: routes.iter().map(|(i, a)| (i.to_string(), ip(a))).collect(),
        addresses: addrs.iter().map(|(i, a)| (i.to_string(), ip(a))).collect(),
    }
}

fn none() -> BTreeSet<IpAddr> {
    BTreeSet::new()
}

const SRC4: Option<&str> = Some("198.18.250.2");
const SRC6: Option<&str> = Some("fd00:18:fa::2");

#[test]
fn first_run_creates_the_dummy_and_a_route_per_vip_with_its_source() {
    let w = wanted(&[("198.18.0.10", SRC4), ("fd00:18::10", SRC6)]);
    let p = plan(&host(), "vipd0", &w, &none(), &ReachRecord::default()).unwrap();
    assert_eq!(p.link, LinkAction::Create);
    assert_eq!(
        p.add,
        vec![
            (ip("198.18.0.10"), Some(ip("198.18.250.2"))),
            (ip("fd00:18::10"), Some(ip("fd00:18:fa::2")))
        ]
    );
    assert_eq!(p.writes(), 3);
    assert_eq!(
        p.intent(&ReachRecord::default()),
        record(
            &["vipd0"],
            &[("vipd0", "198.18.0.10"), ("vipd0", "fd00:18::10")],
            &[]
        )
    );
}

#[test]
fn in_place_is_zero_writes_and_a_new_source_replaces_the_route() {
    let mut net = with_vipd0(true);
    net.routes.push(route(3, "198.18.0.10", RTPROT_VIPD, SRC4));
    let rec = record(&["vipd0"], &[("vipd0", "198.18.0.10")], &[]);
    let w = wanted(&[("198.18.0.10", SRC4)]);
    let p = plan(&net, "vipd0", &w, &none(), &rec).unwrap();
    assert_eq!(p.writes(), 0);
    assert_eq!(p.done(&rec), rec);

    // The host was renumbered: the route follows.
    let w = wanted(&[("198.18.0.10", Some("198.18.250.7"))]);
    let p = plan(&net, "vipd0", &w, &none(), &rec).unwrap();
    assert_eq!(p.add, vec![]);
    assert_eq!(
        p.replace,
        vec![(ip("198.18.0.10"), Some(ip("198.18.250.7")))]
    );
    assert_eq!(p.writes(), 1);
}

#[test]
fn a_down_vip_interface_is_set_up() {
    let mut net = with_vipd0(false);
    net.routes.push(route(3, "198.18.0.10", RTPROT_VIPD, SRC4));
    let w = wanted(&[("198.18.0.10", SRC4)]);
    let p = plan(&net, "vipd0", &w, &none(), &ReachRecord::default()).unwrap();
    assert!(matches!(p.link, LinkAction::SetUp(ref l) if l.index == 3));
    assert_eq!(p.writes(), 1);
}

#[test]
fn an_interface_of_another_kind_is_refused_by_name() {
    let mut net = host();
    net.links.push(link(3, "vipd0", Some("bridge"), true));
    let e = plan(
        &net,
        "vipd0",
        &wanted(&[("198.18.0.10", SRC4)]),
        &none(),
        &ReachRecord::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("\"vipd0\"") && e.contains("bridge"), "{e}");
}

#[test]
fn vips_that_are_local_inside_a_subnet_or_routed_by_someone_else_are_refused() {
    let mut net = with_vipd0(true);
    net.routes.push(route(2, "198.18.0.12", 4, None));
    let w = wanted(&[
        ("198.18.250.2", SRC4),  // the host's own address
        ("198.18.250.77", SRC4), // inside eth0's subnet
        ("198.18.0.12", SRC4),   // a static route of the operator's
        ("fd00:18:fa::9", SRC6), // inside eth0's IPv6 subnet
        ("198.18.0.10", SRC4),   // fine
    ]);
    let Err(ReachError::Conflicts(c)) = plan(&net, "vipd0", &w, &none(), &ReachRecord::default())
    else {
        panic!("not refused");
    };
    let text: Vec<String> = c.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 4, "{text:#?}");
    assert!(text
        .iter()
        .any(|t| t.starts_with("VIP 198.18.250.2 is an address of interface eth0")));
    assert!(text.iter().any(|t| t
        .starts_with("VIP 198.18.250.77 is inside 198.18.250.2/24, the subnet of interface eth0")));
    assert!(text.iter().any(|t| t.starts_with(
        "VIP 198.18.0.12 already has a route that vipd did not make (198.18.0.12/32 dev eth0 proto 4)"
    )));
    assert!(text
        .iter()
        .any(|t| t.starts_with("VIP fd00:18:fa::9 is inside")));
    // Not even the good VIP is planned: nothing is half-applied.
}

#[test]
fn the_address_layout_is_converted_to_routes() {
    // An earlier vipd put its VIPs on vipd0 as addresses (and IPv6 addresses come with a
    // kernel route); one VIP is gone from the config.
    let mut net = with_vipd0(true);
    net.addrs.push(vip_addr(3, "198.18.0.10"));
    net.addrs.push(vip_addr(3, "fd00:18::10"));
    net.addrs.push(vip_addr(3, "198.18.0.11"));
    net.routes.push(route(3, "fd00:18::10", 2, None));
    let rec = record(
        &["vipd0"],
        &[],
        &[
            ("vipd0", "198.18.0.10"),
            ("vipd0", "fd00:18::10"),
            ("vipd0", "198.18.0.11"),
        ],
    );
    let w = wanted(&[("198.18.0.10", SRC4), ("fd00:18::10", SRC6)]);
    let p = plan(&net, "vipd0", &w, &none(), &rec).unwrap();
    assert_eq!(p.add.len(), 2);
    let converted: Vec<IpAddr> = p.convert.iter().map(|(_, a)| a.addr).collect();
    assert_eq!(converted, [ip("198.18.0.10"), ip("fd00:18::10")]);
    let removed: Vec<IpAddr> = p.remove_addresses.iter().map(|(_, a)| a.addr).collect();
    assert_eq!(removed, [ip("198.18.0.11")]);
    assert_eq!(p.delete, None);
    assert_eq!(
        p.done(&rec),
        record(
            &["vipd0"],
            &[("vipd0", "198.18.0.10"), ("vipd0", "fd00:18::10")],
            &[]
        )
    );

    // The same address without the record saying vipd added it is someone else's.
    let p = plan(&net, "vipd0", &w, &none(), &ReachRecord::default());
    assert!(
        matches!(p, Err(ReachError::Conflicts(ref c)) if c.len() == 2),
        "{p:?}"
    );
}

#[test]
fn removes_only_its_own_unused_routes_and_its_own_empty_interface() {
    let mut net = with_vipd0(true);
    net.routes.push(route(3, "198.18.0.10", RTPROT_VIPD, SRC4)); // vipd's, unused
    net.routes.push(route(3, "198.18.0.11", RTPROT_VIPD, SRC4)); // vipd's, used by a foreign service
    net.routes.push(route(3, "198.18.0.12", 4, None)); // someone else's, on vipd0
    let rec = record(
        &["vipd0"],
        &[
            ("vipd0", "198.18.0.10"),
            ("vipd0", "198.18.0.11"),
            ("vipd0", "198.18.0.12"),
            ("vipd0", "198.18.0.99"),
        ],
        &[],
    );
    let in_use = BTreeSet::from([ip("198.18.0.11")]);
    let p = plan(&net, "vipd0", &BTreeMap::new(), &in_use, &rec).unwrap();
    let removed: Vec<IpAddr> = p.remove.iter().map(|(_, r)| r.dst).collect();
    assert_eq!(removed, [ip("198.18.0.10")]);
    assert_eq!(p.delete, None, "still carries routes");
    assert_eq!(
        p.forget_routes,
        [
            ("vipd0".to_string(), ip("198.18.0.12")),
            ("vipd0".to_string(), ip("198.18.0.99"))
        ]
    );
    assert_eq!(
        p.done(&rec),
        record(&["vipd0"], &[("vipd0", "198.18.0.11")], &[])
    );

    // With nothing else on it (the IPv6 link-local address and the kernel's routes
    // aside), vipd's interface goes too.
    net.routes
        .retain(|r| r.dst != ip("198.18.0.11") && r.dst != ip("198.18.0.12"));
    net.addrs.push(net_addr(3, "fe80::aa", 64));
    net.routes.push(Route {
        prefix_len: 64,
        ..route(3, "fe80::", 2, None)
    });
    let rec = record(&["vipd0"], &[("vipd0", "198.18.0.10")], &[]);
    let p = plan(&net, "vipd0", &BTreeMap::new(), &none(), &rec).unwrap();
    assert_eq!(p.delete.as_ref().map(|l| l.index), Some(3));
    assert_eq!(p.writes(), 2);
    assert_eq!(p.done(&rec), ReachRecord::default());

    // An interface vipd did not create is never deleted.
    let p = plan(
        &net,
        "vipd0",
        &BTreeMap::new(),
        &none(),
        &record(&[], &[], &[]),
    )
    .unwrap();
    assert_eq!(p.writes(), 0);
}

/// A hand-edited or corrupt record that names the host's real interface, its main
/// address and a route vipd did not make: nothing of it is ever removed.
#[test]
fn a_planted_record_touches_nothing_that_is_not_provably_vipds() {
    let mut net = with_vipd0(true);
    net.links.push(link(4, "dummy7", Some("dummy"), true));
    net.addrs.push(net_addr(3, "198.18.0.50", 32)); // on vipd0, but global scope
    net.routes.push(route(2, "198.18.0.20", 4, None)); // the operator's, on eth0
    net.routes.push(route(3, "198.18.0.21", 4, None)); // the operator's, on vipd0
    net.routes.push(route(2, "198.18.0.22", RTPROT_VIPD, None)); // vipd's protocol, wrong device
    let planted = record(
        &["eth0", "lo", "dummy7", "vipd0"],
        &[
            ("eth0", "198.18.0.20"),
            ("vipd0", "198.18.0.21"),
            ("vipd0", "198.18.0.22"),
            ("eth0", "198.18.250.2"),
        ],
        &[
            ("eth0", "198.18.250.2"),
            ("eth0", "fd00:18:fa::2"),
            ("lo", "127.0.0.1"),
            ("vipd0", "198.18.0.50"),
        ],
    );
    let p = plan(&net, "vipd0", &BTreeMap::new(), &none(), &planted).unwrap();
    assert_eq!(p.writes(), 0, "{p:#?}");
    assert!(p.remove.is_empty() && p.remove_addresses.is_empty() && p.delete.is_none());
    // Every entry naming another interface is dropped from the record, with a note.
    let done = p.done(&planted);
    assert_eq!(
        done.created_interfaces,
        BTreeSet::from(["vipd0".to_string()])
    );
    assert!(done.routes.is_empty(), "{done:?}");
    assert!(done.addresses.is_empty(), "{done:?}");
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("interface eth0") && n.contains("ignored")));
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("address 198.18.250.2 on eth0")));
    assert!(p
        .notes
        .iter()
        .any(|n| n.contains("198.18.0.50/32 on vipd0")));

    // The configured name on an interface that is not a dummy: never touched either.
    let mut net = host();
    net.links.push(link(3, "vipd0", Some("veth"), true));
    net.addrs.push(vip_addr(3, "198.18.0.30"));
    let planted = record(&["vipd0"], &[], &[("vipd0", "198.18.0.30")]);
    let p = plan(&net, "vipd0", &BTreeMap::new(), &none(), &planted).unwrap();
    assert_eq!(p.writes(), 0, "{p:#?}");
}
