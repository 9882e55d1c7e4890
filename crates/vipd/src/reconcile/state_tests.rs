use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sample() -> Ownership {
    let tcp = ServiceKey::tcp(ip("198.18.0.10"), 80);
    let mark = ServiceKey::fwmark(AddressFamily::Inet6, 9);
    let mut o = Ownership::default();
    o.services.insert(
        tcp,
        OwnedService {
            name: "web".into(),
            removal: RemovalPolicy {
                rule: RemovalRule::DrainTcp,
                drain_timeout: Duration::from_millis(30_500),
            },
        },
    );
    o.services.insert(
        mark,
        OwnedService {
            name: "mark".into(),
            removal: RemovalPolicy {
                rule: RemovalRule::Expire,
                drain_timeout: Duration::from_secs(1),
            },
        },
    );
    o.drains.insert(
        (tcp, DestId::new(ip("198.18.1.2"), 8080)),
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
    );
    o.reach.created_interfaces.insert("vipd0".into());
    o.reach
        .addresses
        .insert(("vipd0".into(), ip("198.18.0.10")));
    o.reach
        .addresses
        .insert(("vipd0".into(), ip("fd00:18::10")));
    o.reach.routes.insert(("vipd0".into(), ip("198.18.0.11")));
    o.reach.routes.insert(("vipd0".into(), ip("fd00:18::11")));
    o
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vipd-state-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn json_round_trip_is_exact() {
    let o = sample();
    let text = to_json(&o);
    assert!(text.contains(r#""tcp": "198.18.0.10:80""#), "{text}");
    assert!(text.contains(r#""since_unix_ms": 1700000000123"#), "{text}");
    assert!(text.contains(r#""vip": "fd00:18::11""#), "{text}");
    assert_eq!(from_json(Path::new("x"), &text).unwrap(), o);
}

#[test]
fn a_record_of_the_address_layout_reads_and_new_records_have_no_address_list() {
    let old = r#"{"version": 1, "interfaces": ["vipd0"],
        "addresses": [{"interface": "vipd0", "address": "198.18.0.10"}]}"#;
    let o = from_json(Path::new("x"), old).unwrap();
    assert!(o
        .reach
        .addresses
        .contains(&("vipd0".into(), ip("198.18.0.10"))));
    assert!(o.reach.routes.is_empty());
    let mut converted = o.clone();
    converted.reach.addresses.clear();
    converted
        .reach
        .routes
        .insert(("vipd0".into(), ip("198.18.0.10")));
    assert!(!to_json(&converted).contains("addresses"));
}

/// A record written when backends were (address, port) pairs reads into the same
/// drains, and is written back with the same text.
#[test]
fn a_record_of_draining_backends_reads_and_writes_the_same() {
    // Drains are of services the record owns (others are dropped as planted).
    let old = r#"{"version": 1, "services": [
        {"key": {"tcp": "198.18.0.10:80"}, "name": "web", "removal": "drain_tcp", "drain_timeout_ms": 1},
        {"key": {"udp": "[fd00:18::10]:53"}, "name": "dns", "removal": "expire", "drain_timeout_ms": 1}],
      "drains": [
        {"service": {"tcp": "198.18.0.10:80"}, "backend": "198.18.1.2:8080", "since_unix_ms": 5},
        {"service": {"udp": "[fd00:18::10]:53"}, "backend": "[fd00:18::2]:53", "since_unix_ms": 7}]}"#;
    let o = from_json(Path::new("x"), old).unwrap();
    let tcp = ServiceKey::tcp(ip("198.18.0.10"), 80);
    let udp = ServiceKey::udp(ip("fd00:18::10"), 53);
    let at = |ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
    assert_eq!(
        o.drains.get(&(tcp, DestId::new(ip("198.18.1.2"), 8080))),
        Some(&at(5))
    );
    assert_eq!(
        o.drains.get(&(udp, DestId::new(ip("fd00:18::2"), 53))),
        Some(&at(7))
    );
    let text = to_json(&o);
    assert!(text.contains(r#""backend": "198.18.1.2:8080""#), "{text}");
    assert!(text.contains(r#""backend": "[fd00:18::2]:53""#), "{text}");
}

#[test]
fn bad_records_name_the_file_and_the_problem() {
    let p = Path::new("/var/lib/vipd/state.json");
    let e = from_json(p, "{ not json").unwrap_err().to_string();
    assert!(
        e.starts_with("state file /var/lib/vipd/state.json is not"),
        "{e}"
    );
    let e = from_json(p, r#"{"version": 2}"#).unwrap_err().to_string();
    assert!(e.contains("has version 2"), "{e}");
    let twice = r#"{"version": 1, "services": [
        {"key": {"udp": "198.18.0.1:53"}, "name": "a", "removal": "expire", "drain_timeout_ms": 1},
        {"key": {"udp": "198.18.0.1:53"}, "name": "b", "removal": "expire", "drain_timeout_ms": 1}]}"#;
    let e = from_json(p, twice).unwrap_err().to_string();
    assert!(e.contains("udp 198.18.0.1:53 is listed twice"), "{e}");
    let unknown_rule = r#"{"version": 1, "services": [
        {"key": {"udp": "198.18.0.1:53"}, "name": "a", "removal": "forget", "drain_timeout_ms": 1}]}"#;
    assert!(from_json(p, unknown_rule).is_err());
}

#[test]
fn store_then_load_with_lock() {
    let dir = temp_dir("store");
    let path = dir.join("sub/state.json");
    let f = StateFile::lock(&path).unwrap();
    assert_eq!(
        f.load().unwrap(),
        Ownership::default(),
        "missing file = empty"
    );
    f.store(&sample()).unwrap();
    assert_eq!(f.load().unwrap(), sample());
    assert_eq!(read(&path).unwrap(), sample());
    let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A second holder is refused while the first lives, accepted after.
    match StateFile::lock(&path) {
        Err(StateError::Locked { .. }) => {}
        other => panic!("second lock: {other:?}"),
    }
    drop(f);
    StateFile::lock(&path).unwrap();
    let _ = fs::remove_dir_all(&dir);
}

/// A planted or corrupt record: services no config can declare and drains of services
/// the record does not own are dropped as it is read, so vipd never changes or removes
/// them; what vipd could have written stays.
#[test]
fn entries_vipd_could_not_have_written_are_dropped_and_never_owned() {
    let p = Path::new("/var/lib/vipd/state.json");
    let planted = r#"{"version": 1, "services": [
        {"key": {"tcp": "198.18.0.10:80"}, "name": "web", "removal": "drain_tcp", "drain_timeout_ms": 1},
        {"key": {"sctp": "198.18.0.11:80"}, "name": "a", "removal": "drain_tcp", "drain_timeout_ms": 1},
        {"key": {"protocol": {"number": 47, "addr": "198.18.0.12:80"}}, "name": "b", "removal": "drain_tcp", "drain_timeout_ms": 1},
        {"key": {"tcp": "198.18.0.13:0"}, "name": "c", "removal": "drain_tcp", "drain_timeout_ms": 1},
        {"key": {"udp": "0.0.0.0:53"}, "name": "d", "removal": "expire", "drain_timeout_ms": 1},
        {"key": {"udp": "[ff02::1]:53"}, "name": "e", "removal": "expire", "drain_timeout_ms": 1},
        {"key": {"fwmark": {"family": "ipv4", "mark": 0}}, "name": "f", "removal": "drain_tcp", "drain_timeout_ms": 1},
        {"key": {"tcp": "198.18.0.14:80"}, "name": "not a name", "removal": "drain_tcp", "drain_timeout_ms": 1},
        {"key": {"fwmark": {"family": "ipv6", "mark": 7}}, "name": "marked", "removal": "drain_tcp", "drain_timeout_ms": 1}],
      "drains": [
        {"service": {"tcp": "198.18.0.10:80"}, "backend": "198.18.1.2:8080", "since_unix_ms": 1},
        {"service": {"tcp": "198.18.0.10:80"}, "backend": "224.0.0.1:8080", "since_unix_ms": 1},
        {"service": {"tcp": "198.18.0.99:80"}, "backend": "198.18.1.3:8080", "since_unix_ms": 1}]}"#;
    let o = from_json(p, planted).unwrap();
    let kept: Vec<String> = o.services.keys().map(|k| k.to_string()).collect();
    assert_eq!(o.services.len(), 2, "{kept:?}");
    assert!(o.owns(&ServiceKey::tcp(ip("198.18.0.10"), 80)), "{kept:?}");
    assert!(o.services.values().any(|s| s.name == "marked"), "{kept:?}");
    let drains: Vec<String> = o.drains.keys().map(|(_, b)| b.to_string()).collect();
    assert_eq!(drains, ["198.18.1.2:8080"]);
    // Each is named with why, and vetting what was kept drops nothing more.
    let mut again = o.clone();
    assert!(super::super::state_vet::vet(&mut again, p).is_empty());
    let mut planted = Ownership::default();
    planted.services.insert(
        ServiceKey::tcp(ip("198.18.0.13"), 0),
        OwnedService {
            name: "c".to_owned(),
            removal: sample().services.values().next().unwrap().removal,
        },
    );
    let lines = super::super::state_vet::vet(&mut planted, p);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains("198.18.0.13") && lines[0].contains("port"),
        "{lines:?}"
    );
    assert!(planted.services.is_empty());
}
