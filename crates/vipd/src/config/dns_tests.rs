//! DNS backends and `[dns]`: what is accepted, and each mistake's message.

use std::time::Duration;

use super::tests::{errors, ok};
use super::*;

#[test]
fn dns_and_srv_backends_mix_with_literal_ones() {
    let cfg = ok(r#"
[dns]
server = "198.18.0.53:5353"
min_refresh = "1s"
max_refresh = "1m"
timeout = "500ms"
on_empty = "remove"

[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [
  { address = "198.18.1.2:8080" },
  { dns = "Web.Example.Internal.", port = 8080 },
  { srv = "_http._tcp.web.example.internal", weight = 5 },
]
"#);
    assert_eq!(
        cfg.dns,
        DnsSettings {
            server: Some("198.18.0.53:5353".parse().unwrap()),
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(60),
            timeout: Duration::from_millis(500),
            on_empty: OnEmpty::Remove,
        }
    );
    let s = &cfg.services[0];
    assert_eq!(s.backends.len(), 1);
    assert_eq!(
        s.dns,
        [
            DnsBackend {
                name: "web.example.internal".into(),
                query: DnsQuery::Host { port: 8080 },
                weight: None,
            },
            DnsBackend {
                name: "_http._tcp.web.example.internal".into(),
                query: DnsQuery::Srv,
                weight: Some(5),
            },
        ]
    );
}

#[test]
fn dns_defaults_and_a_server_without_port() {
    let cfg = ok("[dns]\nserver = \"fd00:18::53\"\n");
    assert_eq!(cfg.dns.server, Some("[fd00:18::53]:53".parse().unwrap()));
    assert_eq!(cfg.dns.min_refresh, DnsSettings::DEFAULT_MIN_REFRESH);
    assert_eq!(cfg.dns.on_empty, OnEmpty::Keep);
    assert_eq!(ok("").dns, DnsSettings::default());
}

#[test]
fn bad_dns_backends_are_named() {
    assert_eq!(
        errors(
            r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [
  { dns = "web..internal", port = 80 },
  { dns = "-web.internal", port = 80 },
  { dns = "198.18.1.2", port = 80 },
  { dns = "web.internal" },
  { srv = "web.internal" },
  { srv = "_http._tcp.web.internal", port = 80 },
  { dns = "a.internal", srv = "_h._tcp.internal" },
  { dns = "b.internal", port = 80, address = "198.18.1.2:80" },
  { dns = "c.internal", port = 80 },
  { dns = "C.internal.", port = 8080 },
  { dns = "_http._tcp.internal", port = 80 },
]
"#
        ),
        [
            "vipd.toml:5:11: invalid dns name \"web..internal\": has an empty label (two dots in a row, or a leading dot)",
            "vipd.toml:6:11: invalid dns name \"-web.internal\": label \"-web\" is not a hostname label (letters, digits and inner hyphens)",
            "vipd.toml:7:11: invalid dns name \"198.18.1.2\": an IP address, not a name (write it as `address`)",
            "vipd.toml:8:11: DNS backend \"web.internal\" has no `port` (1..=65535)",
            "vipd.toml:9:11: invalid srv name \"web.internal\": an SRV name starts with `_service._proto.` such as \"_http._tcp.web.example.internal\"",
            "vipd.toml:10:45: `port` cannot be used with `srv`: each SRV record gives its own port",
            "vipd.toml:11:31: a backend has `dns` or `srv`, not both (one name per backend)",
            "vipd.toml:12:46: `address` cannot be used with `dns` (a DNS backend's addresses come from its records)",
            "vipd.toml:14:11: duplicate DNS backend \"C.internal.\" (first declared at vipd.toml:13:11)",
            "vipd.toml:15:11: invalid dns name \"_http._tcp.internal\": names starting with `_` are SRV names: write them as `srv`",
        ]
    );
}

#[test]
fn dns_backends_need_a_vip_and_srv_needs_masq() {
    assert_eq!(
        errors(
            r#"
[[service]]
name = "marked"
fwmark = 5
family = "ipv4"
backend = [{ dns = "web.internal", port = 80 }]

[[service]]
name = "routed"
vip = "198.18.0.10:80"
forwarding = "route"
backend = [{ srv = "_http._tcp.web.internal" }, { dns = "web.internal", port = 8080 }]
"#
        ),
        [
            "vipd.toml:5:20: DNS backends need a VIP service: a fwmark service has no port to give them",
            "vipd.toml:11:20: SRV backends need forwarding = \"masq\": their records' ports may differ from the VIP's, and forwarding \"route\" cannot change ports",
            "vipd.toml:11:80: backend port 8080 differs from the VIP port 80, but forwarding \"route\" cannot change ports (use port 80, or forwarding = \"masq\")",
        ]
    );
}

#[test]
fn bad_dns_settings_are_named() {
    assert_eq!(
        errors(
            r#"
[dns]
server = "resolver.internal"
min_refresh = "10m"
max_refresh = "1m"
timeout = "0s"
on_empty = "drop"
"#
        ),
        [
            "vipd.toml:2:10: invalid DNS server \"resolver.internal\": expected an address, with a port or not, such as \"127.0.0.53\", \"198.18.0.53:5353\" or \"[fd00:18::53]:53\"",
            "vipd.toml:3:15: min_refresh 10m is longer than max_refresh 1m",
            "vipd.toml:5:11: timeout must be longer than 0s",
            "vipd.toml:6:12: unknown on_empty rule \"drop\" (expected one of keep, remove)",
        ]
    );
}
