use std::{collections::BTreeMap, fs};

use super::*;

fn config(text: &str) -> Config {
    crate::config::parse("vipd.toml", text).unwrap_or_else(|d| panic!("{d}"))
}

const TEXT: &str = r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ dns = "web.lab", port = 8080 }]

[[service]]
name = "api"
vip = "198.18.0.10:81"
backend = [{ srv = "_api._tcp.lab", weight = 3 }]

[[service]]
name = "db"
vip = "198.18.0.10:82"
backend = [{ srv = "_db._tcp.lab" }]
"#;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vipd-dns-record-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn resolved(addr: &str, weight: u16) -> Resolved {
    Resolved {
        addr: addr.parse().unwrap(),
        weight,
    }
}

fn keys(c: &Config) -> (NameKey, NameKey) {
    let key = |i: usize| NameKey {
        service: c.services[i].name.clone(),
        backend: c.services[i].dns[0].clone(),
    };
    (key(0), key(1))
}

#[test]
fn sets_written_are_read_back_for_the_same_config() {
    let d = dir("roundtrip");
    let p = path(&d);
    let c = config(TEXT);
    assert!(load(&p, &c).unwrap().sets.is_empty(), "no file: nothing");
    let (web, api) = keys(&c);
    let sets = BTreeMap::from([
        (
            web.clone(),
            vec![
                resolved("198.18.1.2:8080", 1),
                resolved("198.18.2.2:8080", 1),
            ],
        ),
        (api.clone(), vec![resolved("198.18.4.2:9000", 3)]),
        // An SRV record's weight, anywhere in its range.
        (
            NameKey {
                service: "db".into(),
                backend: c.services[2].dns[0].clone(),
            },
            vec![resolved("198.18.5.2:5432", 65_535)],
        ),
    ]);
    store(&p, &sets).unwrap();
    let r = load(&p, &c).unwrap();
    assert_eq!(r.sets, sets);
    assert!(r.ignored.is_empty(), "{:?}", r.ignored);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn entries_the_config_could_not_have_made_are_ignored_and_named() {
    let d = dir("vet");
    let p = path(&d);
    let c = config(TEXT);
    let text = r#"{"version": 1, "names": [
      {"service": "web", "kind": "dns", "name": "web.lab", "port": 8080,
       "backends": [{"addr": "198.18.1.2:8080", "weight": 1}]},
      {"service": "web", "kind": "dns", "name": "other.lab", "port": 8080,
       "backends": [{"addr": "198.18.1.2:8080", "weight": 1}]},
      {"service": "gone", "kind": "dns", "name": "web.lab", "port": 8080,
       "backends": [{"addr": "198.18.1.2:8080", "weight": 1}]},
      {"service": "api", "kind": "srv", "name": "_api._tcp.lab", "weight": 3,
       "backends": [{"addr": "[fd00::2]:9000", "weight": 3}]},
      {"service": "web", "kind": "dns", "name": "web.lab", "port": 9999,
       "backends": [{"addr": "198.18.1.2:9999", "weight": 1}]},
      {"service": "api", "kind": "srv", "name": "_api._tcp.lab", "weight": 3,
       "backends": [{"addr": "198.18.4.2:9000", "weight": 7}]},
      {"service": "api", "kind": "srv", "name": "_api._tcp.lab", "weight": 3,
       "backends": [{"addr": "224.0.0.1:9000", "weight": 3}]},
      {"service": "db", "kind": "srv", "name": "_db._tcp.lab",
       "backends": [{"addr": "198.18.5.2:5432", "weight": 0}]},
      {"service": "api", "kind": "mx", "name": "_api._tcp.lab",
       "backends": [{"addr": "198.18.4.2:9000", "weight": 3}]}
    ]}"#;
    fs::write(&p, text).unwrap();
    let r = load(&p, &c).unwrap();
    let (web, _) = keys(&c);
    assert_eq!(
        r.sets,
        BTreeMap::from([(web, vec![resolved("198.18.1.2:8080", 1)])])
    );
    let ignored = r.ignored.join("\n");
    for expected in [
        "dns other.lab of service \"web\": no longer in the config",
        "dns web.lab of service \"gone\": no longer in the config",
        "backend [fd00::2]:9000 (weight 3) is not one its query could give",
        "dns web.lab of service \"web\": no longer in the config as recorded",
        "backend 198.18.4.2:9000 (weight 7)",
        "backend 224.0.0.1:9000",
        "backend 198.18.5.2:5432 (weight 0)",
        "mx _api._tcp.lab of service \"api\": not a DNS backend vipd records",
    ] {
        assert!(
            ignored.contains(expected),
            "{expected:?} not in:\n{ignored}"
        );
    }
    assert_eq!(r.ignored.len(), 8, "{ignored}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_record_that_is_not_one_is_a_named_error() {
    let d = dir("bad");
    let p = path(&d);
    let c = config(TEXT);
    fs::write(&p, "{not json").unwrap();
    let e = load(&p, &c).unwrap_err().to_string();
    assert!(e.contains("dns.json: not a vipd DNS record"), "{e}");
    fs::write(&p, r#"{"version": 9, "names": []}"#).unwrap();
    let e = load(&p, &c).unwrap_err().to_string();
    assert!(e.contains("DNS record version 9"), "{e}");
    fs::remove_dir_all(&d).unwrap();
}
