use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::reach::route::RTN_UNICAST;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A routing table: destination -> (kind, source).
fn kernel(table: &[(&str, u8, Option<&str>)]) -> BTreeMap<IpAddr, Lookup> {
    table
        .iter()
        .map(|(d, kind, src)| {
            (
                ip(d),
                Lookup {
                    kind: *kind,
                    oif: 2,
                    src: src.map(ip),
                },
            )
        })
        .collect()
}

fn vips(v: &[(&str, &[&str])]) -> BTreeMap<IpAddr, Vec<IpAddr>> {
    v.iter()
        .map(|(vip, bs)| (ip(vip), bs.iter().map(|b| ip(b)).collect()))
        .collect()
}

fn run(
    v: &BTreeMap<IpAddr, Vec<IpAddr>>,
    k: &BTreeMap<IpAddr, Lookup>,
    asked: &mut Vec<IpAddr>,
) -> Result<Sources, ReachError> {
    choose(v, &BTreeSet::new(), |d| {
        asked.push(d);
        Ok(k.get(&d).copied())
    })
}

#[test]
fn a_vip_gets_the_source_its_backends_are_reached_from() {
    let k = kernel(&[
        ("198.18.1.2", RTN_UNICAST, Some("198.18.250.2")),
        ("198.18.2.2", RTN_UNICAST, Some("198.18.250.2")),
        ("fd00:18:1::2", RTN_UNICAST, Some("fd00:18:fa::2")),
    ]);
    let v = vips(&[
        ("198.18.0.10", &["198.18.1.2", "198.18.2.2"]),
        ("198.18.0.11", &["198.18.2.2"]),
        ("fd00:18::10", &["fd00:18:1::2"]),
    ]);
    let mut asked = Vec::new();
    let s = run(&v, &k, &mut asked).unwrap();
    assert_eq!(s.by_vip[&ip("198.18.0.10")], Some(ip("198.18.250.2")));
    assert_eq!(s.by_vip[&ip("198.18.0.11")], Some(ip("198.18.250.2")));
    assert_eq!(s.by_vip[&ip("fd00:18::10")], Some(ip("fd00:18:fa::2")));
    assert!(s.notes.is_empty(), "{:?}", s.notes);
    // Each VIP once (is it local?), each backend once although two VIPs share one.
    assert_eq!(asked.len(), 3 + 3, "{asked:?}");
}

#[test]
fn several_uplinks_the_majority_source_wins_and_a_note_names_the_others() {
    let k = kernel(&[
        ("198.18.1.2", RTN_UNICAST, Some("10.0.1.5")),
        ("198.18.2.2", RTN_UNICAST, Some("10.0.2.5")),
        ("198.18.3.2", RTN_UNICAST, Some("10.0.2.5")),
    ]);
    let v = vips(&[("198.18.0.10", &["198.18.1.2", "198.18.2.2", "198.18.3.2"])]);
    let s = run(&v, &k, &mut Vec::new()).unwrap();
    assert_eq!(s.by_vip[&ip("198.18.0.10")], Some(ip("10.0.2.5")));
    assert_eq!(s.notes.len(), 1);
    let n = &s.notes[0];
    assert!(
        n.contains("10.0.1.5 for 198.18.1.2")
            && n.contains("10.0.2.5 for 198.18.2.2, 198.18.3.2")
            && n.contains("leave with 10.0.2.5"),
        "{n}"
    );

    // A tie goes to the first backend's source.
    let v = vips(&[("198.18.0.10", &["198.18.1.2", "198.18.2.2"])]);
    let s = run(&v, &k, &mut Vec::new()).unwrap();
    assert_eq!(s.by_vip[&ip("198.18.0.10")], Some(ip("10.0.1.5")));
}

#[test]
fn no_backend_or_no_route_means_no_preferred_source() {
    let k = kernel(&[]);
    let v = vips(&[("198.18.0.10", &[]), ("198.18.0.11", &["198.18.9.9"])]);
    let s = run(&v, &k, &mut Vec::new()).unwrap();
    assert_eq!(s.by_vip[&ip("198.18.0.10")], None);
    assert_eq!(s.by_vip[&ip("198.18.0.11")], None);
    assert_eq!(s.notes, ["VIP 198.18.0.11: no route to backend 198.18.9.9"]);
}

#[test]
fn a_vip_the_kernel_delivers_locally_is_a_conflict() {
    // An AnyIP range (`ip route add local 198.18.0.0/24 dev lo`) covers the VIP.
    let k = kernel(&[
        ("198.18.0.10", RTN_LOCAL, Some("198.18.0.10")),
        ("198.18.1.2", RTN_UNICAST, Some("198.18.250.2")),
    ]);
    let v = vips(&[("198.18.0.10", &["198.18.1.2"])]);
    match run(&v, &k, &mut Vec::new()) {
        Err(ReachError::Conflicts(c)) => {
            assert_eq!(c.len(), 1);
            assert!(c[0]
                .to_string()
                .starts_with("VIP 198.18.0.10 is a local destination"));
        }
        other => panic!("{other:?}"),
    }
    // An interface address is the plan's to judge: not looked up here.
    let addresses = BTreeSet::from([ip("198.18.0.10")]);
    let mut asked = Vec::new();
    let s = choose(&v, &addresses, |d| {
        asked.push(d);
        Ok(k.get(&d).copied())
    })
    .unwrap();
    assert_eq!(asked, [ip("198.18.1.2")]);
    assert_eq!(s.by_vip[&ip("198.18.0.10")], Some(ip("198.18.250.2")));
}
