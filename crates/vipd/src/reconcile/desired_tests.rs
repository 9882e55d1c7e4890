use std::net::Ipv4Addr;

use super::*;

fn desired(text: &str) -> DesiredState {
    let cfg = config::parse("test.toml", text).unwrap_or_else(|d| panic!("{d}"));
    DesiredState::from_config(&cfg)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn ipv4_service_with_persistence_flags_and_thresholds() {
    let d = desired(
        r#"
        [[service]]
        name = "a"
        vip = "198.18.0.10:80"
        scheduler = "sh"
        flags = ["sh-port", "sh-fallback"]
        persistence = { timeout = "10m", netmask = 24 }
        drain_timeout = "7s"
          [[service.backend]]
          address = "198.18.1.2:8080"
          weight = 300
          upper_threshold = 50
          lower_threshold = 5
        "#,
    );
    let key = ServiceKey::tcp(ip("198.18.0.10"), 80);
    let s = &d.services[&key];
    assert_eq!(s.name, "a");
    assert_eq!(s.service.scheduler, "sh");
    assert_eq!(s.service.flags.bits(), 0x1 | 0x8 | 0x10);
    assert_eq!(s.service.timeout, 600);
    assert_eq!(
        s.service.netmask,
        Netmask::V4(Ipv4Addr::new(255, 255, 255, 0))
    );
    assert_eq!(
        s.removal,
        RemovalPolicy {
            rule: RemovalRule::DrainTcp,
            drain_timeout: Duration::from_secs(7)
        }
    );
    let b = &s.dests[&DestId::new(ip("198.18.1.2"), 8080)];
    assert_eq!(b.forward, ForwardMethod::Masquerade);
    assert_eq!(
        (b.weight, b.upper_threshold, b.lower_threshold),
        (300, 50, 5)
    );
    assert_eq!(d.vip_addresses(), BTreeSet::from([ip("198.18.0.10")]));
}

#[test]
fn defaults_match_what_the_kernel_reports_for_ipvsadm_defaults() {
    let d = desired(
        r#"
        [[service]]
        name = "v6"
        vip = "[fd00:18::1]:53"
        protocol = "udp"
          [[service.backend]]
          address = "[fd00:18:1::2]:53"
        "#,
    );
    let s = &d.services[&ServiceKey::udp(ip("fd00:18::1"), 53)];
    assert_eq!(s.service.scheduler, "wlc");
    assert_eq!(s.service.flags, ServiceFlags::EMPTY);
    assert_eq!(
        (s.service.timeout, s.service.netmask),
        (0, Netmask::V6Prefix(128))
    );
    assert_eq!(s.removal.rule, RemovalRule::Expire);
    assert_eq!(s.removal.drain_timeout, Duration::from_secs(300));
    assert_eq!(s.dests.values().next().unwrap().weight, 1);
}

#[test]
fn netmask_conversion() {
    let v4 = |p| netmask(AddressFamily::Inet, p);
    assert_eq!(v4(0), Netmask::V4(Ipv4Addr::UNSPECIFIED));
    assert_eq!(v4(1), Netmask::V4(Ipv4Addr::new(128, 0, 0, 0)));
    assert_eq!(v4(20), Netmask::V4(Ipv4Addr::new(255, 255, 240, 0)));
    assert_eq!(v4(32), Netmask::V4(Ipv4Addr::BROADCAST));
    assert_eq!(netmask(AddressFamily::Inet6, 64), Netmask::V6Prefix(64));
}

#[test]
fn tunnels_fwmark_and_udp_keep() {
    let d = desired(
        r#"
        [[service]]
        name = "m"
        fwmark = 7
        family = "ipv6"
        forwarding = "tunnel"
        tunnel = { type = "gue", port = 6080, checksum = "remcsum" }
        flags = ["one-packet"]
        udp_stale_flows = "keep"
          [[service.backend]]
          address = "fd00:18:3::2"
          [[service.backend]]
          address = "198.18.3.2"

        [[service]]
        name = "g"
        vip = "198.18.0.11:80"
        forwarding = "tunnel"
        tunnel = { type = "gre", checksum = "csum" }
          [[service.backend]]
          address = "198.18.3.3:80"

        [[service]]
        name = "r"
        vip = "198.18.0.12:80"
        protocol = "udp"
        forwarding = "route"
          [[service.backend]]
          address = "198.18.3.4:80"
        "#,
    );
    let m = &d.services[&ServiceKey::fwmark(AddressFamily::Inet6, 7)];
    assert_eq!(m.service.flags, ServiceFlags::ONE_PACKET);
    assert_eq!(m.removal.rule, RemovalRule::DrainFlows);
    let gue = ForwardMethod::Tunnel {
        kind: TunnelKind::Gue,
        port: 6080,
        flags: TunnelFlags::REMCSUM,
    };
    assert_eq!(m.dests[&DestId::new(ip("198.18.3.2"), 0)].forward, gue);
    assert_eq!(m.dests[&DestId::new(ip("fd00:18:3::2"), 0)].forward, gue);
    let g = &d.services[&ServiceKey::tcp(ip("198.18.0.11"), 80)];
    assert_eq!(
        g.dests[&DestId::new(ip("198.18.3.3"), 80)].forward,
        ForwardMethod::Tunnel {
            kind: TunnelKind::Gre,
            port: 0,
            flags: TunnelFlags::CSUM
        }
    );
    let r = &d.services[&ServiceKey::udp(ip("198.18.0.12"), 80)];
    assert_eq!(r.removal.rule, RemovalRule::Expire);
    assert_eq!(
        r.dests[&DestId::new(ip("198.18.3.4"), 80)].forward,
        ForwardMethod::DirectRoute
    );
    // fwmark services hold no VIP address.
    assert_eq!(d.vip_addresses().len(), 2);
}

#[test]
fn overrides_replace_weights_of_declared_backends_only() {
    let d = desired(
        r#"
        [[service]]
        name = "a"
        vip = "198.18.0.10:80"
          [[service.backend]]
          address = "198.18.1.2:80"
          weight = 5
        "#,
    );
    let key = ServiceKey::tcp(ip("198.18.0.10"), 80);
    let mut o = WeightOverrides::default();
    o.set(key, DestId::new(ip("198.18.1.2"), 80), 0);
    o.set(key, DestId::new(ip("198.18.1.99"), 80), 3);
    let d = d.with_overrides(&o);
    let s = &d.services[&key];
    assert_eq!(s.dests.len(), 1);
    assert_eq!(s.dests[&DestId::new(ip("198.18.1.2"), 80)].weight, 0);
}

#[test]
fn an_absent_override_takes_the_backend_out_of_the_desired_state() {
    let d = desired(
        r#"
        [[service]]
        name = "dns"
        vip = "198.18.0.10:53"
        protocol = "udp"
          [[service.backend]]
          address = "198.18.1.2:53"
          [[service.backend]]
          address = "198.18.2.2:53"
        "#,
    );
    let key = ServiceKey::Addr {
        addr: ip("198.18.0.10"),
        protocol: vipd_ipvs::Protocol::Udp,
        port: 53,
    };
    let mut o = WeightOverrides::default();
    o.set_absent(key, DestId::new(ip("198.18.1.2"), 53));
    let d = d.with_overrides(&o);
    let s = &d.services[&key];
    assert_eq!(
        s.dests.keys().copied().collect::<Vec<_>>(),
        vec![DestId::new(ip("198.18.2.2"), 53)]
    );
    assert_eq!(s.removal.rule, RemovalRule::Expire);
}
