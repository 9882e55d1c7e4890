use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn set(v: &[&str]) -> BTreeSet<IpAddr> {
    v.iter().map(|s| ip(s)).collect()
}

fn link(index: u32, name: &str, kind: Option<&str>, up: bool) -> Link {
    Link {
        index,
        name: name.into(),
        kind: kind.map(Into::into),
        up,
    }
}

fn addr(index: u32, a: &str) -> Addr {
    let addr = ip(a);
    Addr {
        index,
        addr,
        prefix_len: if addr.is_ipv4() { 32 } else { 128 },
    }
}

fn lo_and_eth() -> NetState {
    NetState {
        links: vec![
            link(1, "lo", None, true),
            link(2, "eth0", Some("veth"), true),
        ],
        addrs: vec![addr(1, "127.0.0.1"), addr(2, "198.18.9.1")],
    }
}

fn record(interfaces: &[&str], addrs: &[(&str, &str)]) -> ReachRecord {
    ReachRecord {
        created_interfaces: interfaces.iter().map(|s| s.to_string()).collect(),
        addresses: addrs.iter().map(|(i, a)| (i.to_string(), ip(a))).collect(),
    }
}

#[test]
fn first_run_creates_the_dummy_and_adds_missing_vips_only() {
    let net = lo_and_eth();
    // 198.18.9.1 is already local (on eth0): left alone, not vipd's.
    let wanted = set(&["198.18.0.10", "fd00:18::10", "198.18.9.1"]);
    let p = plan(
        &net,
        "vipd0",
        &wanted,
        &BTreeSet::new(),
        &ReachRecord::default(),
    )
    .unwrap();
    assert_eq!(p.link, LinkAction::Create);
    assert_eq!(p.add, vec![ip("198.18.0.10"), ip("fd00:18::10")]);
    assert_eq!(p.writes(), 3);
    let intent = p.intent(&ReachRecord::default());
    assert_eq!(
        intent,
        record(
            &["vipd0"],
            &[("vipd0", "198.18.0.10"), ("vipd0", "fd00:18::10")]
        )
    );
}

#[test]
fn in_place_is_zero_writes() {
    let mut net = lo_and_eth();
    net.links.push(link(3, "vipd0", Some("dummy"), true));
    net.addrs.push(addr(3, "198.18.0.10"));
    net.addrs.push(addr(3, "fe80::1"));
    let rec = record(&["vipd0"], &[("vipd0", "198.18.0.10")]);
    let p = plan(
        &net,
        "vipd0",
        &set(&["198.18.0.10"]),
        &BTreeSet::new(),
        &rec,
    )
    .unwrap();
    assert_eq!(p.writes(), 0);
    assert_eq!(p.done(&rec), rec);
}

#[test]
fn a_down_vip_interface_is_set_up() {
    let mut net = lo_and_eth();
    net.links.push(link(3, "vipd0", Some("dummy"), false));
    net.addrs.push(addr(3, "198.18.0.10"));
    let p = plan(
        &net,
        "vipd0",
        &set(&["198.18.0.10"]),
        &BTreeSet::new(),
        &ReachRecord::default(),
    )
    .unwrap();
    assert!(matches!(p.link, LinkAction::SetUp(ref l) if l.index == 3));
    assert_eq!(p.writes(), 1);
}

#[test]
fn an_interface_of_another_kind_is_refused_by_name() {
    let mut net = lo_and_eth();
    net.links.push(link(3, "vipd0", Some("bridge"), true));
    let e = plan(
        &net,
        "vipd0",
        &set(&["198.18.0.10"]),
        &BTreeSet::new(),
        &ReachRecord::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("\"vipd0\"") && e.contains("bridge"), "{e}");
}

#[test]
fn removes_only_its_own_unused_addresses_and_its_own_empty_interface() {
    let mut net = lo_and_eth();
    net.links.push(link(3, "vipd0", Some("dummy"), true));
    net.addrs.push(addr(3, "198.18.0.10")); // vipd's, unused
    net.addrs.push(addr(3, "198.18.0.11")); // vipd's, used by a foreign service
    net.addrs.push(addr(3, "198.18.0.12")); // someone else's
    net.addrs.push(addr(3, "fe80::1"));
    let rec = record(
        &["vipd0"],
        &[
            ("vipd0", "198.18.0.10"),
            ("vipd0", "198.18.0.11"),
            ("vipd0", "198.18.0.99"),
        ],
    );
    let p = plan(
        &net,
        "vipd0",
        &BTreeSet::new(),
        &set(&["198.18.0.11"]),
        &rec,
    )
    .unwrap();
    assert_eq!(p.add, Vec::<IpAddr>::new());
    assert_eq!(p.link, LinkAction::None);
    let removed: Vec<IpAddr> = p.remove.iter().map(|(_, a)| a.addr).collect();
    assert_eq!(removed, vec![ip("198.18.0.10")]);
    assert_eq!(p.delete, Vec::<Link>::new(), "still holds addresses");
    assert_eq!(
        p.forget_addresses,
        vec![("vipd0".to_string(), ip("198.18.0.99"))]
    );
    assert_eq!(
        p.done(&rec),
        record(&["vipd0"], &[("vipd0", "198.18.0.11")])
    );

    // With nothing else on it (link-local aside), vipd's interface goes too.
    net.addrs
        .retain(|a| a.addr != ip("198.18.0.11") && a.addr != ip("198.18.0.12"));
    let rec = record(&["vipd0"], &[("vipd0", "198.18.0.10")]);
    let p = plan(&net, "vipd0", &BTreeSet::new(), &BTreeSet::new(), &rec).unwrap();
    assert_eq!(p.delete.len(), 1);
    assert_eq!(p.writes(), 2);
    assert_eq!(p.done(&rec), ReachRecord::default());

    // An interface vipd did not create is never deleted.
    let p = plan(
        &net,
        "vipd0",
        &BTreeSet::new(),
        &BTreeSet::new(),
        &record(&[], &[]),
    )
    .unwrap();
    assert_eq!(p.writes(), 0);
}
