//! Each check: the exact message and where it points. Config texts start on line 1 (the
//! helpers drop the leading newline of the raw strings).

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use super::*;

fn text(t: &str) -> &str {
    t.strip_prefix('\n').unwrap_or(t)
}

/// The diagnostics of an invalid config, rendered.
pub(super) fn errors(t: &str) -> Vec<String> {
    match parse("vipd.toml", text(t)) {
        Ok(cfg) => panic!("expected errors, got {cfg:#?}"),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

/// The only diagnostic of an invalid config.
fn error(t: &str) -> String {
    let mut all = errors(t);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

pub(super) fn ok(t: &str) -> Config {
    parse("vipd.toml", text(t)).unwrap_or_else(|d| panic!("unexpected errors:\n{d}"))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// A valid config and its model.

#[test]
fn a_full_config_becomes_typed_desired_state() {
    let cfg = ok(r#"
[daemon]
vip_interface = "lb0"
drain_timeout = "1m"
metrics_address = "[::1]:9100"

[[service]]
name = "web"
vip = "198.18.0.10:80"
scheduler = "wrr"
drain_timeout = "30s"
  [[service.backend]]
  address = "198.18.1.2:8080"
  weight = 100
  [[service.backend]]
  address = "198.18.1.3:8080"
  weight = 0
  upper_threshold = 200
  lower_threshold = 150
  [service.health]
  refuse_threshold = 3
  base_ejection = "10s"
  max_ejection = "5m"
  max_ejection_percent = 50
  panic_threshold = 30
  slow_start = "30s"
  probe = false
  probe_timeout = "500ms"
  check = { interval = "5s", timeout = "2s", fall = 3, rise = 2 }

[[service]]
name = "dns6"
vip = "[fd00:18::53]:53"
protocol = "udp"
scheduler = "sh"
flags = ["sh-port", "one-packet"]
udp_stale_flows = "keep"
persistence = { timeout = "600s", netmask = 64 }
backend = [{ address = "[fd00:18:1::53]:5353", weight = 5 }]

[[service]]
name = "mark"
fwmark = 7
family = "ipv4"
forwarding = "tunnel"
tunnel = { type = "gre", checksum = "csum" }
  [[service.backend]]
  address = "198.18.3.2"
  [[service.backend]]
  address = "[fd00:18:3::2]"
"#);
    let expected = Config {
        daemon: DaemonSettings {
            vip_interface: "lb0".into(),
            drain_timeout: Duration::from_secs(60),
            metrics_address: Some(sa("[::1]:9100")),
        },
        dataplane: Dataplane::Ipvs,
        services: vec![
            ServiceSpec {
                name: "web".into(),
                key: ServiceKey::Addr {
                    protocol: Protocol::Tcp,
                    addr: sa("198.18.0.10:80"),
                },
                scheduler: Scheduler::WeightedRoundRobin,
                forwarding: Forwarding::Masq,
                persistence: None,
                flags: BTreeSet::new(),
                drain_timeout: Duration::from_secs(30),
                udp_stale_flows: None,
                backends: vec![
                    BackendSpec {
                        addr: sa("198.18.1.2:8080"),
                        weight: 100,
                        upper_threshold: 0,
                        lower_threshold: 0,
                    },
                    BackendSpec {
                        addr: sa("198.18.1.3:8080"),
                        weight: 0,
                        upper_threshold: 200,
                        lower_threshold: 150,
                    },
                ],
                dns: vec![],
                health: Some(HealthPolicy {
                    refuse_threshold: Some(3),
                    retransmit_threshold: None,
                    base_ejection: Some(Duration::from_secs(10)),
                    max_ejection: Some(Duration::from_secs(300)),
                    max_ejection_percent: Some(50),
                    panic_threshold: Some(30),
                    slow_start: Some(Duration::from_secs(30)),
                    probe: Some(false),
                    probe_timeout: Some(Duration::from_millis(500)),
                    check: Some(ActiveCheck {
                        interval: Duration::from_secs(5),
                        timeout: Duration::from_secs(2),
                        fall: 3,
                        rise: 2,
                    }),
                    silence_window: None,
                    syn_rto: None,
                    udp_probe: None,
                }),
            },
            ServiceSpec {
                name: "dns6".into(),
                key: ServiceKey::Addr {
                    protocol: Protocol::Udp,
                    addr: sa("[fd00:18::53]:53"),
                },
                scheduler: Scheduler::SourceHashing,
                forwarding: Forwarding::Masq,
                persistence: Some(Persistence {
                    timeout: Duration::from_secs(600),
                    netmask: 64,
                }),
                flags: [ServiceFlag::ShPort, ServiceFlag::OnePacket].into(),
                drain_timeout: Duration::from_secs(60),
                udp_stale_flows: Some(UdpStaleFlows::Keep),
                backends: vec![BackendSpec {
                    addr: sa("[fd00:18:1::53]:5353"),
                    weight: 5,
                    upper_threshold: 0,
                    lower_threshold: 0,
                }],
                dns: vec![],
                health: None,
            },
            ServiceSpec {
                name: "mark".into(),
                key: ServiceKey::Fwmark {
                    family: Family::Ipv4,
                    mark: 7,
                },
                scheduler: Scheduler::WeightedLeastConnection,
                forwarding: Forwarding::Tunnel(Tunnel {
                    encap: TunnelEncap::Gre,
                    checksum: TunnelChecksum::Csum,
                }),
                persistence: None,
                flags: BTreeSet::new(),
                drain_timeout: Duration::from_secs(60),
                udp_stale_flows: Some(UdpStaleFlows::Expire),
                backends: vec![
                    BackendSpec {
                        addr: sa("198.18.3.2:0"),
                        weight: 1,
                        upper_threshold: 0,
                        lower_threshold: 0,
                    },
                    BackendSpec {
                        addr: sa("[fd00:18:3::2]:0"),
                        weight: 1,
                        upper_threshold: 0,
                        lower_threshold: 0,
                    },
                ],
                dns: vec![],
                health: None,
            },
        ],
        dns: DnsSettings::default(),
        origin: Origin::default(),
    };
    assert_eq!(cfg, expected);
    assert_eq!(cfg.backend_count(), 5);
}

#[test]
fn an_empty_file_is_a_valid_config_with_defaults() {
    let cfg = ok("");
    assert_eq!(cfg, Config::default());
    assert_eq!(cfg.daemon.vip_interface, "vipd0");
    assert_eq!(cfg.daemon.drain_timeout, Duration::from_secs(300));
    assert_eq!(cfg.daemon.metrics_address, Some(sa("127.0.0.1:9477")));
}

#[test]
fn service_defaults_are_ipvsadms() {
    let cfg = ok(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
"#);
    let s = &cfg.services[0];
    assert_eq!(
        s.key,
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: sa("198.18.0.10:80")
        }
    );
    assert_eq!(s.scheduler, Scheduler::WeightedLeastConnection);
    assert_eq!(s.forwarding, Forwarding::Masq);
    assert_eq!(s.persistence, None);
    assert_eq!(s.drain_timeout, DaemonSettings::DEFAULT_DRAIN_TIMEOUT);
    assert_eq!(s.udp_stale_flows, None);
    // Zero backends is a valid IPVS service.
    assert!(s.backends.is_empty());
    assert_eq!(s.health, None);
}

#[test]
fn the_daemon_drain_timeout_is_the_services_default() {
    let cfg = ok(r#"
[daemon]
drain_timeout = "45s"
[[service]]
name = "a"
vip = "198.18.0.10:80"
[[service]]
name = "b"
vip = "198.18.0.11:80"
drain_timeout = "0s"
"#);
    assert_eq!(cfg.services[0].drain_timeout, Duration::from_secs(45));
    assert_eq!(cfg.services[1].drain_timeout, Duration::ZERO);
}

#[test]
fn an_empty_health_section_is_kept() {
    let cfg = ok(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
[service.health]
"#);
    assert_eq!(cfg.services[0].health, Some(HealthPolicy::default()));
}

#[test]
fn persistence_defaults_to_300s_and_the_full_netmask() {
    let cfg = ok(r#"
[[service]]
name = "v4"
vip = "198.18.0.10:80"
persistence = {}
[[service]]
name = "v6"
vip = "[fd00:18::10]:80"
persistence = { timeout = "1h" }
"#);
    assert_eq!(
        cfg.services[0].persistence,
        Some(Persistence {
            timeout: Duration::from_secs(300),
            netmask: 32
        })
    );
    assert_eq!(
        cfg.services[1].persistence,
        Some(Persistence {
            timeout: Duration::from_secs(3600),
            netmask: 128
        })
    );
}

#[test]
fn udp_and_fwmark_services_expire_stale_flows_by_default() {
    let cfg = ok(r#"
[[service]]
name = "dns"
vip = "198.18.0.53:53"
protocol = "udp"
[[service]]
name = "mark"
fwmark = 1
family = "ipv6"
udp_stale_flows = "keep"
"#);
    assert_eq!(cfg.services[0].udp_stale_flows, Some(UdpStaleFlows::Expire));
    assert_eq!(cfg.services[1].udp_stale_flows, Some(UdpStaleFlows::Keep));
}

#[test]
fn the_same_address_may_serve_tcp_and_udp_and_a_mark_both_families() {
    let cfg = ok(r#"
[[service]]
name = "dns-tcp"
vip = "198.18.0.53:53"
[[service]]
name = "dns-udp"
vip = "198.18.0.53:53"
protocol = "udp"
[[service]]
name = "m4"
fwmark = 9
family = "ipv4"
[[service]]
name = "m6"
fwmark = 9
family = "ipv6"
"#);
    assert_eq!(cfg.services.len(), 4);
}

#[test]
fn tunnel_forwarding_defaults_to_ipip_without_checksum() {
    let cfg = ok(r#"
[[service]]
name = "t"
vip = "198.18.0.10:80"
forwarding = "tunnel"
backend = [{ address = "[fd00:18:1::2]:80" }]
"#);
    assert_eq!(
        cfg.services[0].forwarding,
        Forwarding::Tunnel(Tunnel {
            encap: TunnelEncap::Ipip,
            checksum: TunnelChecksum::None
        })
    );
}

#[test]
fn gue_tunnels_carry_their_port_and_any_checksum() {
    let cfg = ok(r#"
[[service]]
name = "t"
vip = "198.18.0.10:80"
forwarding = "tunnel"
tunnel = { type = "gue", port = 6080, checksum = "remcsum" }
"#);
    assert_eq!(
        cfg.services[0].forwarding,
        Forwarding::Tunnel(Tunnel {
            encap: TunnelEncap::Gue { port: 6080 },
            checksum: TunnelChecksum::RemCsum
        })
    );
}

#[test]
fn route_backends_may_repeat_the_vip_port() {
    let cfg = ok(r#"
[[service]]
name = "dr"
vip = "198.18.0.10:443"
forwarding = "route"
backend = [{ address = "198.18.1.2:443" }]
[[service]]
name = "dr-mark"
fwmark = 3
family = "ipv4"
forwarding = "route"
backend = [{ address = "198.18.1.2" }]
"#);
    assert_eq!(cfg.services[0].backends[0].addr, sa("198.18.1.2:443"));
    assert_eq!(cfg.services[1].backends[0].addr, sa("198.18.1.2:0"));
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/vipd.toml");
    let cfg = load(path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(cfg.services.len(), 6);
}

// ---------------------------------------------------------------------------------------
// Syntax, structure, types.

#[test]
fn a_toml_syntax_error_has_a_location() {
    assert_eq!(
        error("[[service]]\nname = \"web\nvip = 1\n"),
        "vipd.toml:2:12: invalid TOML: invalid basic string"
    );
    assert_eq!(
        error("[[service]]\nname = \"a\"\nname = \"b\"\n"),
        "vipd.toml:3:1: invalid TOML: duplicate key `name` in table `service`"
    );
}

#[test]
fn unknown_keys_are_reported_at_the_key_with_a_suggestion() {
    assert_eq!(
        errors(r#"
services = []
[daemon]
metrics_listen = "[::1]:9100"
[[service]]
name = "web"
vip = "198.18.0.10:80"
schedular = "wrr"
backend = [{ address = "198.18.1.2:80", wieght = 2 }]
[service.health]
ejection = "1s"
"#),
        [
            "vipd.toml:1:1: unknown key `services` at the top level (expected one of daemon, dataplane, xdp, socket, dns, defaults, service; did you mean `service`?)",
            "vipd.toml:3:1: unknown key `metrics_listen` in [daemon] (expected one of vip_interface, drain_timeout, metrics_address)",
            "vipd.toml:7:1: unknown key `schedular` in [[service]] (expected one of name, vip, fwmark, family, protocol, scheduler, forwarding, tunnel, persistence, flags, drain_timeout, udp_stale_flows, backend, health; did you mean `scheduler`?)",
            "vipd.toml:8:41: unknown key `wieght` in [[service.backend]] (expected one of address, dns, srv, port, weight, upper_threshold, lower_threshold; did you mean `weight`?)",
            "vipd.toml:10:1: unknown key `ejection` in [service.health] (expected one of refuse_threshold, retransmit_threshold, base_ejection, max_ejection, max_ejection_percent, panic_threshold, slow_start, probe, probe_timeout, check, silence_window, syn_rto, payload, payload_hex, expect, expect_hex)",
        ]
    );
}

#[test]
fn wrong_types_name_what_was_expected_and_found() {
    assert_eq!(
        errors(r#"
[daemon]
drain_timeout = 30
[[service]]
name = 5
vip = "198.18.0.10:80"
flags = "sh-port"
  [[service.backend]]
  address = "198.18.1.2:80"
  weight = "100"
  upper_threshold = 1.5
"#),
        [
            "vipd.toml:2:17: `drain_timeout` must be a duration string such as \"30s\", found integer 30",
            "vipd.toml:4:8: `name` must be a string, found integer 5",
            "vipd.toml:6:9: `flags` must be an array of strings, found string \"sh-port\"",
            "vipd.toml:9:12: `weight` must be an integer, found string \"100\"",
            "vipd.toml:10:21: `upper_threshold` must be an integer, found float 1.5",
        ]
    );
}

#[test]
fn services_and_backends_must_be_arrays_of_tables() {
    assert_eq!(
        error(r#"
[service]
name = "web"
"#),
        "vipd.toml:1:1: `service` must be an array of tables: write [[service]] (double brackets), found a single table"
    );
    assert_eq!(
        error(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = { address = "198.18.1.2:80" }
"#),
        "vipd.toml:4:11: `backend` must be an array of tables: write [[service.backend]] (double brackets), found a single table"
    );
    assert_eq!(
        error(
            r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = ["198.18.1.2:80"]
"#
        ),
        "vipd.toml:4:12: `backend` must be an array of tables, found string \"198.18.1.2:80\""
    );
    assert_eq!(
        error("service = 3\n"),
        "vipd.toml:1:11: `service` must be an array of tables ([[service]]), found integer 3"
    );
}

// ---------------------------------------------------------------------------------------
// [daemon]

#[test]
fn vip_interface_must_be_a_linux_interface_name() {
    let at = |name: &str| error(&format!("[daemon]\nvip_interface = {name:?}\n"));
    assert_eq!(
        at("vipd-interface-0"),
        "vipd.toml:2:17: invalid vip_interface \"vipd-interface-0\": longer than 15 bytes"
    );
    assert_eq!(at(""), "vipd.toml:2:17: invalid vip_interface \"\": empty");
    assert_eq!(
        at("vip/0"),
        "vipd.toml:2:17: invalid vip_interface \"vip/0\": contains '/'"
    );
    assert_eq!(
        at("vip 0"),
        "vipd.toml:2:17: invalid vip_interface \"vip 0\": contains whitespace"
    );
    assert_eq!(
        at("vip:0"),
        "vipd.toml:2:17: invalid vip_interface \"vip:0\": contains ':'"
    );
    assert_eq!(
        at(".."),
        "vipd.toml:2:17: invalid vip_interface \"..\": not a valid interface name"
    );
    // Exactly 15 bytes is fine.
    assert_eq!(
        ok("[daemon]\nvip_interface = \"vipd-interface0\"\n")
            .daemon
            .vip_interface,
        "vipd-interface0"
    );
}

#[test]
fn bad_durations_are_reported_with_the_key() {
    assert_eq!(
        error("[daemon]\ndrain_timeout = \"5min\"\n"),
        "vipd.toml:2:17: `drain_timeout`: invalid duration \"5min\": unknown unit \"min\" (expected ms, s, m or h)"
    );
    assert_eq!(
        error("[daemon]\ndrain_timeout = \"1.5s\"\n"),
        "vipd.toml:2:17: `drain_timeout`: invalid duration \"1.5s\": fractions are not supported, use a smaller unit (e.g. \"1500ms\")"
    );
}

// ---------------------------------------------------------------------------------------
// Service identity: name, vip / fwmark, protocol, family, duplicates.

#[test]
fn service_names_are_required_valid_and_unique() {
    assert_eq!(
        errors(r#"
[[service]]
vip = "198.18.0.10:80"
[[service]]
name = "web site"
vip = "198.18.0.11:80"
[[service]]
name = "web"
vip = "198.18.0.12:80"
[[service]]
name = "web"
vip = "198.18.0.13:80"
"#),
        [
            "vipd.toml:1:1: service has no `name`",
            "vipd.toml:4:8: invalid service name \"web site\": use 1 to 64 characters from A-Z a-z 0-9 _ . -",
            "vipd.toml:10:8: duplicate service name \"web\" (first declared at vipd.toml:7:8)",
        ]
    );
    let long = "a".repeat(65);
    assert_eq!(
        error(&format!(
            "[[service]]\nname = \"{long}\"\nvip = \"198.18.0.10:80\"\n"
        )),
        format!(
            "vipd.toml:2:8: invalid service name \"{long}\": use 1 to 64 characters from A-Z a-z 0-9 _ . -"
        )
    );
}

#[test]
fn vip_ports_out_of_range_are_named() {
    assert_eq!(
        errors(
            r#"
[[service]]
name = "a"
vip = "198.18.0.10:70000"
[[service]]
name = "b"
vip = "[fd00:18::10]:0"
"#
        ),
        [
            "vipd.toml:3:7: port 70000 out of range (1..=65535) in VIP \"198.18.0.10:70000\"",
            "vipd.toml:6:7: port 0 out of range (1..=65535) in VIP \"[fd00:18::10]:0\"",
        ]
    );
}

#[test]
fn malformed_vips_say_what_is_wrong() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
vip = "198.18.0.10"
[[service]]
name = "b"
vip = "fd00:18::10:80"
[[service]]
name = "c"
vip = "lb.example:80"
[[service]]
name = "d"
vip = "0.0.0.0:80"
[[service]]
name = "e"
vip = "[ff02::1]:80"
"#),
        [
            "vipd.toml:3:7: VIP \"198.18.0.10\" has no port (expected \"IPv4:port\" or \"[IPv6]:port\")",
            "vipd.toml:6:7: VIP \"fd00:18::10:80\" has no port (expected \"IPv4:port\" or \"[IPv6]:port\")",
            "vipd.toml:9:7: invalid VIP \"lb.example:80\": \"lb.example\" is not an IP address (names are not resolved)",
            "vipd.toml:12:7: VIP \"0.0.0.0:80\" is a unspecified address",
            "vipd.toml:15:7: VIP \"[ff02::1]:80\" is a multicast address",
        ]
    );
}

#[test]
fn a_service_has_exactly_one_of_vip_and_fwmark() {
    assert_eq!(
        errors(r#"
[[service]]
name = "both"
vip = "198.18.0.10:80"
fwmark = 5
[[service]]
name = "neither"
scheduler = "rr"
"#),
        [
            "vipd.toml:4:10: service \"both\" has both `vip` and `fwmark`; a service has exactly one",
            "vipd.toml:5:1: service \"neither\" has neither `vip` nor `fwmark`",
        ]
    );
}

#[test]
fn fwmark_services_need_a_family_and_no_protocol() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
fwmark = 5
protocol = "tcp"
[[service]]
name = "b"
fwmark = 0
family = "inet6"
[[service]]
name = "c"
fwmark = 4294967296
family = "ipv4"
[[service]]
name = "d"
vip = "198.18.0.10:80"
family = "ipv4"
"#),
        [
            "vipd.toml:3:10: a fwmark service needs `family = \"ipv4\"` or `family = \"ipv6\"`",
            "vipd.toml:4:12: `protocol` is not allowed with `fwmark` (a fwmark service matches every protocol)",
            "vipd.toml:7:10: fwmark 0 out of range (1..=4294967295)",
            "vipd.toml:8:10: unknown family \"inet6\" (expected one of ipv4, ipv6)",
            "vipd.toml:11:10: fwmark 4294967296 out of range (1..=4294967295)",
            "vipd.toml:16:10: `family` is only used with `fwmark` (a VIP service has its address's family)",
        ]
    );
}

#[test]
fn unknown_protocol() {
    assert_eq!(
        error(
            r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
protocol = "sctp"
"#
        ),
        "vipd.toml:4:12: unknown protocol \"sctp\" (expected one of tcp, udp)"
    );
}

#[test]
fn duplicate_vips_point_at_the_first() {
    assert_eq!(
        errors(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
[[service]]
name = "web2"
vip = "198.18.0.10:80"
protocol = "tcp"
[[service]]
name = "m"
fwmark = 5
family = "ipv6"
[[service]]
name = "m2"
fwmark = 5
family = "ipv6"
[[service]]
name = "v6"
vip = "[fd00:18::10]:53"
protocol = "udp"
[[service]]
name = "v6b"
vip = "[fd00:18:0::10]:53"
protocol = "udp"
"#),
        [
            "vipd.toml:6:7: duplicate VIP 198.18.0.10:80/tcp (first declared by service \"web\" at vipd.toml:3:7)",
            "vipd.toml:14:10: duplicate VIP fwmark 5/ipv6 (first declared by service \"m\" at vipd.toml:10:10)",
            "vipd.toml:22:7: duplicate VIP [fd00:18::10]:53/udp (first declared by service \"v6\" at vipd.toml:18:7)",
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Scheduler, forwarding, tunnel.

#[test]
fn unknown_scheduler_lists_the_valid_ones() {
    assert_eq!(
        error(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
scheduler = "wrrr"
"#),
        "vipd.toml:4:13: unknown scheduler \"wrrr\" (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos; did you mean \"wrr\"?)"
    );
    assert_eq!(
        error(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
scheduler = "maglev"
"#),
        "vipd.toml:4:13: scheduler \"maglev\" is the XDP data plane's (dataplane = \"xdp\"); IPVS's Maglev hashing is \"mh\""
    );
}

#[test]
fn other_spellings_of_forwarding_methods_get_the_right_one_suggested() {
    let with = |m: &str| {
        error(&format!(
            "[[service]]\nname = \"a\"\nvip = \"198.18.0.10:80\"\nforwarding = {m:?}\n"
        ))
    };
    assert_eq!(
        with("nat"),
        "vipd.toml:4:14: unknown forwarding method \"nat\" (expected one of masq, tunnel, route; did you mean \"masq\"?)"
    );
    assert_eq!(
        with("dr"),
        "vipd.toml:4:14: unknown forwarding method \"dr\" (expected one of masq, tunnel, route; did you mean \"route\"?)"
    );
    assert_eq!(
        with("direct"),
        "vipd.toml:4:14: unknown forwarding method \"direct\" (expected one of masq, tunnel, route; did you mean \"route\"?)"
    );
    assert_eq!(
        with("ipip"),
        "vipd.toml:4:14: unknown forwarding method \"ipip\" (expected one of masq, tunnel, route; did you mean \"tunnel\"?)"
    );
    assert_eq!(
        with("bypass"),
        "vipd.toml:4:14: unknown forwarding method \"bypass\" (expected one of masq, tunnel, route)"
    );
}

#[test]
fn a_tunnel_table_needs_tunnel_forwarding() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
tunnel = { type = "ipip" }
[[service]]
name = "b"
vip = "198.18.0.11:80"
forwarding = "route"
tunnel = { type = "ipip" }
"#),
        [
            "vipd.toml:4:10: `tunnel` is only allowed with forwarding = \"tunnel\" (this service uses \"masq\")",
            "vipd.toml:9:10: `tunnel` is only allowed with forwarding = \"tunnel\" (this service uses \"route\")",
        ]
    );
}

#[test]
fn tunnel_settings_are_checked_against_the_type() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
forwarding = "tunnel"
tunnel = { type = "gue" }
[[service]]
name = "b"
vip = "198.18.0.11:80"
forwarding = "tunnel"
tunnel = { type = "gue", port = 70000 }
[[service]]
name = "c"
vip = "198.18.0.12:80"
forwarding = "tunnel"
tunnel = { type = "ipip", port = 6080, checksum = "csum" }
[[service]]
name = "d"
vip = "198.18.0.13:80"
forwarding = "tunnel"
tunnel = { type = "gre", checksum = "remcsum", ttl = 3 }
[[service]]
name = "e"
vip = "198.18.0.14:80"
forwarding = "tunnel"
tunnel = { type = "vxlan", checksum = "crc" }
"#),
        [
            "vipd.toml:5:10: tunnel type \"gue\" needs a `port` (1..=65535): the UDP port GUE packets are sent to",
            "vipd.toml:10:33: tunnel port 70000 out of range (1..=65535)",
            "vipd.toml:15:34: tunnel port 6080 is only used with type \"gue\" (this tunnel is \"ipip\")",
            "vipd.toml:15:51: tunnel checksum \"csum\" is not supported with type \"ipip\" (IPIP has no checksum; use \"none\")",
            "vipd.toml:20:37: tunnel checksum \"remcsum\" is not supported with type \"gre\" (GRE supports \"none\" or \"csum\")",
            "vipd.toml:20:48: unknown key `ttl` in `tunnel` (expected one of type, port, checksum)",
            "vipd.toml:25:19: unknown tunnel type \"vxlan\" (expected one of ipip, gue, gre)",
            "vipd.toml:25:39: unknown tunnel checksum \"crc\" (expected one of none, csum, remcsum)",
        ]
    );
    // Port 0 with ipip (as in `ipvsadm` dumps) is accepted.
    ok(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
forwarding = "tunnel"
tunnel = { type = "ipip", port = 0, checksum = "none" }
"#);
}

// ---------------------------------------------------------------------------------------
// Persistence, flags, udp_stale_flows.

#[test]
fn persistence_timeout_is_whole_seconds_up_to_31_days() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
persistence = { timeout = "0s" }
[[service]]
name = "b"
vip = "198.18.0.11:80"
persistence = { timeout = "1500ms" }
[[service]]
name = "c"
vip = "198.18.0.12:80"
persistence = { timeout = "745h" }
"#),
        [
            "vipd.toml:4:27: persistence timeout 0s must be at least 1s",
            "vipd.toml:8:27: persistence timeout 1500ms is not a whole number of seconds (IPVS counts seconds)",
            "vipd.toml:12:27: persistence timeout 745h is above the maximum of 744h (31 days)",
        ]
    );
    ok(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
persistence = { timeout = "744h", netmask = 0 }
"#);
}

#[test]
fn persistence_netmask_fits_the_family() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
persistence = { netmask = 33 }
[[service]]
name = "b"
vip = "[fd00:18::10]:80"
persistence = { netmask = 0 }
[[service]]
name = "c"
fwmark = 1
family = "ipv6"
persistence = { netmask = 129, timeout = "5m", mask = 1 }
"#),
        [
            "vipd.toml:4:27: persistence netmask 33 out of range for an IPv4 service (0..=32)",
            "vipd.toml:8:27: persistence netmask 0 out of range for an IPv6 service (1..=128)",
            "vipd.toml:13:27: persistence netmask 129 out of range for an IPv6 service (1..=128)",
            "vipd.toml:13:48: unknown key `mask` in `persistence` (expected one of timeout, netmask; did you mean `netmask`?)",
        ]
    );
}

#[test]
fn flags_are_known_unique_and_fit_the_scheduler() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
protocol = "udp"
scheduler = "sh"
flags = ["sh-port", "sh-port", "sh-fallbak", "persistent", "mh-port", 3]
[[service]]
name = "b"
vip = "198.18.0.11:80"
flags = ["one-packet"]
"#),
        [
            "vipd.toml:6:21: duplicate flag \"sh-port\" (first given at vipd.toml:6:10)",
            "vipd.toml:6:32: unknown flag \"sh-fallbak\" (expected one of one-packet, sh-fallback, sh-port, mh-fallback, mh-port; did you mean \"sh-fallback\"?)",
            "vipd.toml:6:46: unknown flag \"persistent\" (persistence is set with `persistence = { timeout = \"300s\" }`)",
            "vipd.toml:6:60: flag \"mh-port\" needs scheduler \"mh\" (this service uses \"sh\")",
            "vipd.toml:6:71: `flags` must be an array of strings, found integer 3",
            "vipd.toml:10:10: flag \"one-packet\" only applies to UDP (this service is tcp)",
        ]
    );
    // Without an explicit scheduler the default (wlc) is named.
    assert_eq!(
        error(
            r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
flags = ["sh-fallback"]
"#
        ),
        "vipd.toml:4:10: flag \"sh-fallback\" needs scheduler \"sh\" (this service uses \"wlc\")"
    );
    let cfg = ok(r#"
[[service]]
name = "a"
fwmark = 1
family = "ipv4"
scheduler = "mh"
flags = ["mh-port", "mh-fallback", "one-packet"]
"#);
    assert_eq!(
        cfg.services[0].flags,
        [
            ServiceFlag::MhPort,
            ServiceFlag::MhFallback,
            ServiceFlag::OnePacket
        ]
        .into()
    );
}

#[test]
fn udp_stale_flows_is_for_udp_only() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
udp_stale_flows = "keep"
[[service]]
name = "b"
vip = "198.18.0.10:80"
protocol = "udp"
udp_stale_flows = "drop"
"#),
        [
            "vipd.toml:4:19: `udp_stale_flows` only applies to UDP services (this service is tcp)",
            "vipd.toml:9:19: unknown udp_stale_flows setting \"drop\" (expected one of expire, keep)",
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Backends.

#[test]
fn backend_addresses_are_required_valid_and_unique() {
    assert_eq!(
        errors(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
  [[service.backend]]
  weight = 3
  [[service.backend]]
  address = "198.18.1.2:0"
  [[service.backend]]
  address = "198.18.1.2:65536"
  [[service.backend]]
  address = "198.18.1.3"
  [[service.backend]]
  address = "198.18.1.4:80"
  [[service.backend]]
  address = "198.18.1.4:80"
  [[service.backend]]
  address = "224.0.0.5:80"
"#),
        [
            "vipd.toml:4:3: backend has no `address` (or `dns` with `port`, or `srv`)",
            "vipd.toml:7:13: port 0 out of range (1..=65535) in backend address \"198.18.1.2:0\"",
            "vipd.toml:9:13: port 65536 out of range (1..=65535) in backend address \"198.18.1.2:65536\"",
            "vipd.toml:11:13: backend address \"198.18.1.3\" has no port (expected \"IPv4:port\" or \"[IPv6]:port\")",
            "vipd.toml:15:13: duplicate backend 198.18.1.4:80 (first declared at vipd.toml:13:13)",
            "vipd.toml:17:13: backend address \"224.0.0.5:80\" is a multicast address",
        ]
    );
}

#[test]
fn backends_are_per_service() {
    // The same backend in two services is fine.
    let cfg = ok(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.1.2:80" }]
[[service]]
name = "b"
vip = "198.18.0.11:80"
backend = [{ address = "198.18.1.2:80" }]
"#);
    assert_eq!(cfg.backend_count(), 2);
}

#[test]
fn address_families_mix_only_with_tunnel() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
backend = [{ address = "[fd00:18:1::2]:80" }]
[[service]]
name = "b"
vip = "[fd00:18::10]:80"
forwarding = "route"
backend = [{ address = "198.18.1.2:80" }]
[[service]]
name = "c"
fwmark = 2
family = "ipv6"
backend = [{ address = "198.18.1.2" }]
"#),
        [
            "vipd.toml:4:24: address family mismatch: backend \"[fd00:18:1::2]:80\" is IPv6 but VIP 198.18.0.10:80/tcp is IPv4 (only forwarding = \"tunnel\" can mix families)",
            "vipd.toml:9:24: address family mismatch: backend \"198.18.1.2:80\" is IPv4 but VIP [fd00:18::10]:80/tcp is IPv6 (only forwarding = \"tunnel\" can mix families)",
            "vipd.toml:14:24: address family mismatch: backend \"198.18.1.2\" is IPv4 but the service (fwmark 2/ipv6) is IPv6 (only forwarding = \"tunnel\" can mix families)",
        ]
    );
}

#[test]
fn route_and_tunnel_cannot_change_ports() {
    assert_eq!(
        errors(r#"
[[service]]
name = "a"
vip = "198.18.0.10:80"
forwarding = "route"
backend = [{ address = "198.18.1.2:8080" }]
[[service]]
name = "b"
fwmark = 2
family = "ipv4"
forwarding = "tunnel"
backend = [{ address = "198.18.1.2:8080" }]
"#),
        [
            "vipd.toml:5:24: backend port 8080 differs from the VIP port 80, but forwarding \"route\" cannot change ports (use port 80, or forwarding = \"masq\")",
            "vipd.toml:11:24: backend port 8080 cannot be used with forwarding \"tunnel\", which does not change ports; leave the port out on a fwmark service",
        ]
    );
}

#[test]
fn fwmark_backends_may_leave_the_port_out_but_not_give_port_0() {
    let cfg = ok(r#"
[[service]]
name = "m"
fwmark = 2
family = "ipv4"
backend = [{ address = "198.18.1.2" }, { address = "198.18.1.2:443" }]
"#);
    assert_eq!(cfg.services[0].backends[0].addr, sa("198.18.1.2:0"));
    assert_eq!(cfg.services[0].backends[1].addr, sa("198.18.1.2:443"));
    assert_eq!(
        errors(r#"
[[service]]
name = "m"
fwmark = 2
family = "ipv4"
backend = [{ address = "198.18.1.2:0" }, { address = "198.18.1.3" }, { address = "198.18.1.3" }]
"#),
        [
            "vipd.toml:5:24: port 0 out of range (1..=65535) in backend address \"198.18.1.2:0\" (leave the port out to keep the packet's destination port)",
            "vipd.toml:5:82: duplicate backend 198.18.1.3 (first declared at vipd.toml:5:54)",
        ]
    );
}

#[test]
fn weights_and_thresholds_are_range_checked_and_ordered() {
    assert_eq!(
        errors(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
  [[service.backend]]
  address = "198.18.1.2:80"
  weight = 65536
  [[service.backend]]
  address = "198.18.1.3:80"
  weight = -1
  upper_threshold = 4294967296
  [[service.backend]]
  address = "198.18.1.4:80"
  upper_threshold = 100
  lower_threshold = 101
  [[service.backend]]
  address = "198.18.1.5:80"
  lower_threshold = 10
"#),
        [
            "vipd.toml:6:12: weight 65536 out of range (0..=65535)",
            "vipd.toml:9:12: weight -1 out of range (0..=65535)",
            "vipd.toml:10:21: upper_threshold 4294967296 out of range (0..=4294967295)",
            "vipd.toml:14:21: lower_threshold 101 is above upper_threshold 100",
            "vipd.toml:17:21: lower_threshold 10 is above upper_threshold 0 (no upper threshold); set upper_threshold to at least 10",
        ]
    );
    let cfg = ok(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.1.2:80", weight = 65535, upper_threshold = 10, lower_threshold = 10 }]
"#);
    assert_eq!(cfg.services[0].backends[0].weight, 65535);
}

// ---------------------------------------------------------------------------------------
// [service.health]

#[test]
fn health_fields_are_range_checked() {
    assert_eq!(
        errors(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
  [service.health]
  refuse_threshold = 0
  retransmit_threshold = -3
  base_ejection = "0s"
  max_ejection = "forever"
  max_ejection_percent = 101
  panic_threshold = -1
  slow_start = 10
"#),
        [
            "vipd.toml:5:22: refuse_threshold 0 out of range (1..=4294967295)",
            "vipd.toml:6:26: retransmit_threshold -3 out of range (1..=4294967295)",
            "vipd.toml:7:19: base_ejection must be longer than 0s",
            "vipd.toml:8:18: `max_ejection`: invalid duration \"forever\": expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\"",
            "vipd.toml:9:26: max_ejection_percent 101 out of range (0..=100)",
            "vipd.toml:10:21: panic_threshold -1 out of range (0..=100)",
            "vipd.toml:11:16: `slow_start` must be a duration string such as \"30s\", found integer 10",
        ]
    );
}

#[test]
fn base_ejection_is_at_most_max_ejection() {
    assert_eq!(
        error(
            r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
health = { base_ejection = "10m", max_ejection = "5m" }
"#
        ),
        "vipd.toml:4:28: base_ejection 10m is longer than max_ejection 5m"
    );
}

#[test]
fn health_must_be_a_table() {
    assert_eq!(
        error(
            r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
health = true
"#
        ),
        "vipd.toml:4:10: `health` must be a table, found boolean true"
    );
}

#[test]
fn probe_and_check_default_to_none_and_check_keys_default() {
    let cfg = ok(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
health = { check = {} }
[[service]]
name = "api"
vip = "198.18.0.11:80"
health = { check = { interval = "10s" }, probe = true, probe_timeout = "3s" }
"#);
    let web = cfg.services[0].health.clone().unwrap();
    assert_eq!(web.probe, None);
    assert_eq!(web.probe_timeout, None);
    assert_eq!(
        web.check,
        Some(ActiveCheck {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            fall: 2,
            rise: 1,
        })
    );
    assert_eq!(web.check, Some(ActiveCheck::default()));
    let api = cfg.services[1].health.clone().unwrap();
    assert_eq!(api.probe, Some(true));
    assert_eq!(api.probe_timeout, Some(Duration::from_secs(3)));
    assert_eq!(
        api.check.map(|c| (c.interval, c.timeout)),
        Some((Duration::from_secs(10), Duration::from_secs(1)))
    );
}

#[test]
fn probe_and_check_fields_are_checked() {
    assert_eq!(
        errors(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
  [service.health]
  probe = "yes"
  probe_timeout = "0s"
  check = { interval = "0s", timeout = "-1s", fall = 0, rise = 4294967296, every = "1s" }
"#),
        [
            "vipd.toml:5:11: `probe` must be a boolean (true or false), found string \"yes\"",
            "vipd.toml:6:19: probe_timeout must be longer than 0s",
            "vipd.toml:7:24: check interval must be longer than 0s",
            "vipd.toml:7:40: `timeout`: invalid duration \"-1s\": durations cannot be negative",
            "vipd.toml:7:54: check fall 0 out of range (1..=4294967295)",
            "vipd.toml:7:64: check rise 4294967296 out of range (1..=4294967295)",
            "vipd.toml:7:76: unknown key `every` in `check` (expected one of interval, timeout, fall, rise)",
        ]
    );
}

#[test]
fn check_must_be_a_table() {
    assert_eq!(
        error(
            r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
health = { check = "2s" }
"#
        ),
        "vipd.toml:4:20: `check` must be a table, found string \"2s\""
    );
}

#[test]
fn a_check_timeout_is_at_most_its_interval() {
    assert_eq!(
        error(
            r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
health = { check = { interval = "1s", timeout = "1500ms" } }
"#
        ),
        "vipd.toml:4:49: check timeout 1500ms is longer than its interval 1s (a check must end before the next one starts)"
    );
    // Against the default interval (2s) too.
    assert_eq!(
        error(
            r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
health = { check = { timeout = "3s" } }
"#
        ),
        "vipd.toml:4:32: check timeout 3s is longer than its interval 2s (a check must end before the next one starts)"
    );
    let cfg = ok(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
health = { check = { interval = "1s", timeout = "1s" } }
"#);
    assert_eq!(
        cfg.services[0]
            .health
            .clone()
            .unwrap()
            .check
            .unwrap()
            .timeout,
        Duration::from_secs(1)
    );
}

#[test]
fn udp_probes_and_checks_need_a_payload() {
    assert_eq!(
        errors(r#"
[[service]]
name = "dns"
vip = "198.18.0.53:53"
protocol = "udp"
  [service.health]
  probe = true
  check = { interval = "5s" }
  expect_hex = "12"
"#),
        [
            "vipd.toml:8:16: `expect` needs `payload` or `payload_hex`: the datagram whose reply it checks",
        ]
    );
    assert_eq!(
        errors(r#"
[[service]]
name = "dns"
vip = "198.18.0.53:53"
protocol = "udp"
  [service.health]
  probe = true
  check = { interval = "5s" }
"#),
        [
            "vipd.toml:6:11: probe = true on a udp service needs `payload` or `payload_hex`: the datagram the probe sends (its reply passes the probe)",
            "vipd.toml:7:11: `check` on a udp service needs `payload` or `payload_hex`: the datagram each check sends (its reply passes the check)",
        ]
    );
    let cfg = ok(r#"
[[service]]
name = "dns"
vip = "198.18.0.53:53"
protocol = "udp"
  [service.health]
  silence_window = "800ms"
  payload_hex = "ab cd 01 00 00 01"
  expect_hex = "abcd"
  check = { interval = "5s" }
"#);
    let h = cfg.services[0].health.clone().unwrap();
    assert_eq!(h.silence_window, Some(Duration::from_millis(800)));
    assert_eq!(
        h.udp_probe,
        Some(UdpProbe {
            payload: vec![0xab, 0xcd, 1, 0, 0, 1],
            expect: vec![0xab, 0xcd],
        })
    );
    assert!(h.check.is_some());
}

#[test]
fn udp_only_health_keys_are_refused_on_tcp_and_payloads_are_checked() {
    assert_eq!(
        errors(r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
  [service.health]
  silence_window = "1s"
  payload = "hello"
"#),
        [
            "vipd.toml:5:20: `silence_window` only applies to UDP services (this service is tcp; a TCP backend that does not answer is found by its SYN retransmissions)",
            "vipd.toml:6:13: `payload` only applies to UDP services (this service is tcp: its checks and probes are TCP connects)",
        ]
    );
    assert_eq!(
        errors(
            r#"
[[service]]
name = "dns"
vip = "198.18.0.53:53"
protocol = "udp"
  [service.health]
  payload = "x"
  payload_hex = "zz"
  silence_window = "0s"
"#
        ),
        [
            "vipd.toml:7:17: give either `payload` or `payload_hex`, not both",
            "vipd.toml:8:20: silence_window must be longer than 0s",
        ]
    );
}

#[test]
fn udp_services_may_say_probe_false() {
    let cfg = ok(r#"
[[service]]
name = "dns"
vip = "198.18.0.53:53"
protocol = "udp"
health = { probe = false, probe_timeout = "2s" }
"#);
    assert_eq!(cfg.services[0].health.clone().unwrap().probe, Some(false));
    // A fwmark service carries TCP too: the daemon decides per backend.
    ok(r#"
[[service]]
name = "mark"
fwmark = 3
family = "ipv4"
health = { probe = true, check = {} }
"#);
}

// ---------------------------------------------------------------------------------------
// [daemon] metrics_address

#[test]
fn metrics_address_is_ip_port_or_off() {
    let at = |v: &str| {
        ok(&format!("[daemon]\nmetrics_address = {v:?}\n"))
            .daemon
            .metrics_address
    };
    assert_eq!(at("0.0.0.0:9100"), Some(sa("0.0.0.0:9100")));
    assert_eq!(at("[::1]:9477"), Some(sa("[::1]:9477")));
    assert_eq!(at("off"), None);
    let bad = |v: &str| error(&format!("[daemon]\nmetrics_address = {v:?}\n"));
    assert_eq!(
        bad("localhost:9477"),
        "vipd.toml:2:19: invalid metrics_address \"localhost:9477\": expected \"ip:port\" such as \"127.0.0.1:9477\" or \"[::1]:9477\", or \"off\""
    );
    assert_eq!(
        bad("127.0.0.1"),
        "vipd.toml:2:19: invalid metrics_address \"127.0.0.1\": expected \"ip:port\" such as \"127.0.0.1:9477\" or \"[::1]:9477\", or \"off\""
    );
    assert_eq!(
        bad("127.0.0.1:0"),
        "vipd.toml:2:19: invalid metrics_address \"127.0.0.1:0\": port 0 (use 1..=65535, or \"off\" for no metrics endpoint)"
    );
    assert_eq!(
        error("[daemon]\nmetrics_address = 9477\n"),
        "vipd.toml:2:19: `metrics_address` must be a string, found integer 9477"
    );
}

// ---------------------------------------------------------------------------------------
// All at once.

#[test]
fn every_error_is_reported_at_once_in_file_order() {
    let all = errors(
        r#"
[daemon]
vip_interface = "vipd0/x"
drain_timeout = "5 minutes"

[[service]]
name = "web"
vip = "198.18.0.10:80"
scheduler = "wrrr"
flags = ["sh-port"]
udp_stale_flows = "keep"

  [[service.backend]]
  address = "198.18.1.2:70000"
  weight = 100

  [[service.backend]]
  address = "[fd00:18:1::2]:8080"
  lower_threshold = 5

[[service]]
name = "web"
vip = "198.18.0.10:80"
forwarding = "nat"
tunnel = { type = "gue" }
persistence = { timeout = "300s", netmask = 40 }
colour = "blue"

[[service]]
name = "dns"
fwmark = 0
protocol = "udp"
"#,
    );
    assert_eq!(
        all,
        [
            "vipd.toml:2:17: invalid vip_interface \"vipd0/x\": contains '/'",
            "vipd.toml:3:17: `drain_timeout`: invalid duration \"5 minutes\": expected an integer followed by a unit (ms, s, m, h), e.g. \"30s\"",
            "vipd.toml:8:13: unknown scheduler \"wrrr\" (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos; did you mean \"wrr\"?)",
            "vipd.toml:10:19: `udp_stale_flows` only applies to UDP services (this service is tcp)",
            "vipd.toml:13:13: port 70000 out of range (1..=65535) in backend address \"198.18.1.2:70000\"",
            "vipd.toml:17:13: address family mismatch: backend \"[fd00:18:1::2]:8080\" is IPv6 but VIP 198.18.0.10:80/tcp is IPv4 (only forwarding = \"tunnel\" can mix families)",
            "vipd.toml:18:21: lower_threshold 5 is above upper_threshold 0 (no upper threshold); set upper_threshold to at least 5",
            "vipd.toml:21:8: duplicate service name \"web\" (first declared at vipd.toml:6:8)",
            "vipd.toml:22:7: duplicate VIP 198.18.0.10:80/tcp (first declared by service \"web\" at vipd.toml:7:7)",
            "vipd.toml:23:14: unknown forwarding method \"nat\" (expected one of masq, tunnel, route; did you mean \"masq\"?)",
            "vipd.toml:24:10: tunnel type \"gue\" needs a `port` (1..=65535): the UDP port GUE packets are sent to",
            "vipd.toml:25:45: persistence netmask 40 out of range for an IPv4 service (0..=32)",
            "vipd.toml:26:1: unknown key `colour` in [[service]] (expected one of name, vip, fwmark, family, protocol, scheduler, forwarding, tunnel, persistence, flags, drain_timeout, udp_stale_flows, backend, health)",
            "vipd.toml:30:10: fwmark 0 out of range (1..=4294967295)",
            "vipd.toml:30:10: a fwmark service needs `family = \"ipv4\"` or `family = \"ipv6\"`",
            "vipd.toml:31:12: `protocol` is not allowed with `fwmark` (a fwmark service matches every protocol)",
        ]
    );
}

// ---------------------------------------------------------------------------------------
// The API around the checks.

#[test]
fn load_reports_an_unreadable_file_without_a_location() {
    let d = load("/nonexistent/vipd.toml").unwrap_err();
    assert_eq!(d.len(), 1);
    let first = d.iter().next().unwrap();
    assert_eq!(first.location, None);
    assert_eq!(first.file, "/nonexistent/vipd.toml");
    assert!(
        first
            .message
            .starts_with("cannot read the config: No such file or directory"),
        "{}",
        first.message
    );
}

#[test]
fn diagnostics_carry_file_line_and_column() {
    let d = parse(
        "conf/vipd.toml",
        "[[service]]\nname = \"web\"\nvip = \"198.18.0.10:80\"\nscheduler = \"x\"\n",
    )
    .unwrap_err();
    let first = d.iter().next().unwrap();
    assert_eq!(first.file, "conf/vipd.toml");
    assert_eq!(
        first.location,
        Some(Location {
            line: 4,
            column: 13
        })
    );
    assert!(first.message.starts_with("unknown scheduler \"x\""));
    assert_eq!(d.to_string().lines().count(), 1);
}
