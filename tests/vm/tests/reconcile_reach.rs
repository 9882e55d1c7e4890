//! Reachability on a network shaped like a real one (the lab: backends behind a router,
//! routing only to the client subnet, and a client host with a stateful firewall):
//! `vipd apply` routes each VIP through its dummy interface with the host's own address
//! as the source, so a backend that knows nothing about VIPs answers, over IPv4 and
//! IPv6, TCP and UDP, with and without the firewall, masquerading and tunnelling. The
//! earlier layout (VIPs as local addresses) is converted; a planted ownership record
//! makes vipd touch nothing that is not provably its own; VIPs that conflict with the
//! host are refused before anything changes; sysctls are set as the config needs them.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use vipd_vmtests::{
    lab::{Family, Firewall, Lab},
    require_vm,
    servers::{whoami_tcp, whoami_udp},
    sh,
    vipd_cli::{sysctl, VipdRun},
};

const WAIT: Duration = Duration::from_secs(5);

fn vip(family: Family) -> IpAddr {
    match family {
        Family::V4 => "198.18.0.80".parse().unwrap(),
        Family::V6 => "fd00:18::80".parse().unwrap(),
    }
}

/// A TCP service on `vip:80` and a UDP service on `vip:53`, each with `backends` (a port
/// each: TCP, UDP), forwarded by `forwarding`.
fn config(vip: IpAddr, backends: &[(IpAddr, u16, u16)], forwarding: &str) -> String {
    let mut t = String::new();
    for (proto, vport, pick) in [("tcp", 80, 0), ("udp", 53, 1)] {
        t.push_str(&format!(
            "[[service]]\nname = \"{proto}\"\nvip = \"{}\"\nprotocol = \"{proto}\"\nforwarding = \"{forwarding}\"\n",
            SocketAddr::new(vip, vport)
        ));
        for (ip, tcp, udp) in backends {
            let port = if forwarding == "masq" {
                [*tcp, *udp][pick]
            } else {
                vport
            };
            t.push_str(&format!(
                "  [[service.backend]]\n  address = \"{}\"\n",
                SocketAddr::new(*ip, port)
            ));
        }
    }
    t
}

fn no_vipd0() {
    let _ = sh("ip link del vipd0 2>/dev/null; true");
}

/// Through the VIP, TCP and UDP, the backend answers and saw the client host's own
/// address.
fn assert_backend_sees_the_client(lab: &Lab, vip: IpAddr) {
    let tcp = whoami_tcp(SocketAddr::new(vip, 80), WAIT)
        .unwrap_or_else(|e| panic!("TCP through VIP {vip}: {e}"));
    assert_eq!(tcp.seen.ip(), lab.client_addr(), "{tcp:?}");
    assert_eq!(tcp.seen, tcp.local, "{tcp:?}");
    let udp = whoami_udp(SocketAddr::new(vip, 53), WAIT)
        .unwrap_or_else(|e| panic!("UDP through VIP {vip}: {e}"));
    assert_eq!(udp.seen.ip(), lab.client_addr(), "{udp:?}");
}

fn remote_backends_answer(family: Family, firewall: Firewall) {
    require_vm();
    no_vipd0();
    let lab = Lab::new_with(family, 1, firewall);
    let tcp = lab.serve_peer(0, 8080);
    let udp = lab.serve_udp_peer(0, 5353);
    let vip = vip(family);
    let run = VipdRun::new(&format!("reach-{family:?}-{firewall:?}"));
    let text = config(vip, &[(tcp.ip(), tcp.port(), udp.port())], "masq");

    let s = run.apply(&text);
    assert_eq!(s.rtnetlink_writes, 2, "{:?}", s.reach);
    let link = sh("ip -d -o link show vipd0");
    assert!(link.contains("dummy") && link.contains(",UP"), "{link}");
    // A route, not a local address: the VIP is nowhere an address of this host.
    let addrs = sh("ip -o addr show");
    assert!(!addrs.contains(&vip.to_string()), "{addrs}");
    let routes = sh(&format!("ip -o {} route show proto 118", flag(family)));
    assert!(
        routes.contains(&format!("{vip} dev vipd0"))
            && routes.contains(&format!("src {}", lab.client_addr())),
        "{routes}"
    );
    assert_eq!(sysctl("net.ipv4.vs.conntrack"), "1");
    assert_backend_sees_the_client(&lab, vip);
    assert!(
        run.status().contains("net.ipv4.vs.conntrack=1"),
        "{}",
        run.status()
    );

    // Idempotent: nothing to do.
    assert_eq!(run.apply(&text).netlink_writes, 0);
    // Set down by someone (which drops its routes): set up and routed again.
    sh("ip link set vipd0 down");
    let s = run.apply(&text);
    assert!(
        s.reach.iter().any(|r| r == "set interface vipd0 up"),
        "{:?}",
        s.reach
    );
    assert_backend_sees_the_client(&lab, vip);

    // Emptied: the route and the interface go.
    let s = run.apply("");
    assert!(
        s.reach.iter().any(|r| r == "delete interface vipd0"),
        "{:?}",
        s.reach
    );
    assert!(!sh("ip -o link show").contains("vipd0"));
    assert_eq!(
        sh(&format!("ip {} route show proto 118", flag(family))).trim(),
        ""
    );
}

fn flag(family: Family) -> &'static str {
    match family {
        Family::V4 => "-4",
        Family::V6 => "-6",
    }
}

#[test]
fn a_remote_backend_answers_the_client_host_through_a_firewall_v4() {
    remote_backends_answer(Family::V4, Firewall::On);
}

#[test]
fn a_remote_backend_answers_the_client_host_through_a_firewall_v6() {
    remote_backends_answer(Family::V6, Firewall::On);
}

#[test]
fn a_remote_backend_answers_the_client_host_without_a_firewall_v4() {
    remote_backends_answer(Family::V4, Firewall::Off);
}

#[test]
fn a_remote_backend_answers_the_client_host_without_a_firewall_v6() {
    remote_backends_answer(Family::V6, Firewall::Off);
}

/// Tunnel forwarding: the backend holds the VIP on its loopback (what tunnel mode
/// needs of a real server), decapsulates, and answers the client host directly from the
/// VIP; the client's firewall takes that reply as established.
fn tunnel(family: Family) {
    require_vm();
    no_vipd0();
    let lab = Lab::new(family, 1);
    let vip = vip(family);
    let b = &lab.backends[0];
    let (tun, plen) = match family {
        Family::V4 => ("ipip", 32),
        Family::V6 => ("ip6_tunnel", 128),
    };
    let dev = match family {
        Family::V4 => "tunl0",
        Family::V6 => "ip6tnl0",
    };
    sh(&format!(
        "modprobe {tun} && ip -n {ns} link set {dev} up && \
         ip -n {ns} addr add {vip}/{plen} dev lo{nodad}",
        ns = b.ns,
        nodad = if family == Family::V6 { " nodad" } else { "" },
    ));
    if family == Family::V4 {
        // Decapsulated packets come in on tunl0 from the client's address, which the
        // backend routes through eth0: loose reverse-path checks, as on a real server.
        sh(&format!(
            "ip netns exec {} sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{dev}.rp_filter=0",
            b.ns
        ));
    }
    // Servers on the VIP itself (all addresses), as a tunnel-mode real server listens.
    let tcp = lab.serve_peer_any(0, 80);
    let udp = lab.serve_udp_peer_any(0, 53);
    assert_eq!((tcp.port(), udp.port()), (80, 53));
    let run = VipdRun::new(&format!("reach-tunnel-{family:?}"));
    run.apply(&config(vip, &[(b.addr, 80, 53)], "tunnel"));
    assert_backend_sees_the_client(&lab, vip);
    run.apply("");
}

#[test]
fn tunnel_forwarding_reaches_a_remote_backend_v4() {
    tunnel(Family::V4);
}

#[test]
fn tunnel_forwarding_reaches_a_remote_backend_v6() {
    tunnel(Family::V6);
}

/// What an earlier vipd left: VIPs as local addresses on vipd0, recorded.
#[test]
fn vip_addresses_of_the_earlier_layout_become_routes() {
    require_vm();
    no_vipd0();
    let lab = Lab::new(Family::V4, 1);
    let tcp = lab.serve_peer(0, 8080);
    let udp = lab.serve_udp_peer(0, 5353);
    let vip = vip(Family::V4);
    sh(&format!(
        "ip link add vipd0 type dummy && ip link set vipd0 up && \
         ip addr add {vip}/32 dev vipd0 scope host && ip addr add 198.18.0.81/32 dev vipd0 scope host"
    ));
    let run = VipdRun::new("reach-convert");
    std::fs::write(
        &run.state,
        format!(
            r#"{{"version": 1, "interfaces": ["vipd0"], "addresses": [
                {{"interface": "vipd0", "address": "{vip}"}},
                {{"interface": "vipd0", "address": "198.18.0.81"}}]}}"#
        ),
    )
    .unwrap();
    let s = run.apply(&config(vip, &[(tcp.ip(), tcp.port(), udp.port())], "masq"));
    assert!(
        s.reach
            .iter()
            .any(|r| r == &format!("remove address {vip}/32 from vipd0 (now a route)")),
        "{:?}",
        s.reach
    );
    assert!(
        s.reach
            .iter()
            .any(|r| r == "remove address 198.18.0.81/32 from vipd0"),
        "{:?}",
        s.reach
    );
    assert_eq!(sh("ip -o addr show dev vipd0 scope host").trim(), "");
    assert_backend_sees_the_client(&lab, vip);
    let record = run.state_text();
    assert!(!record.contains("addresses"), "{record}");
    assert!(record.contains(&format!(r#""vip": "{vip}""#)), "{record}");
    run.apply("");
    assert!(!sh("ip -o link show").contains("vipd0"));
}

/// Every address, route and interface of the namespace, for before/after comparisons.
fn network() -> String {
    sh("ip -o link show | sed 's/^[0-9]*: //' | cut -d' ' -f1-3; ip -o addr show; ip route show table all")
}

/// A hand-edited ownership record that claims the host's uplink, its addresses, its
/// default route and loopback: vipd removes none of them, and drops the claims.
#[test]
fn a_planted_ownership_record_touches_nothing_that_is_not_vipds() {
    require_vm();
    no_vipd0();
    let lab = Lab::new(Family::V4, 1);
    let client = lab.client_addr();
    // vipd0 exists and carries a route of the operator's: not vipd's to delete.
    sh("ip link add vipd0 type dummy && ip link set vipd0 up && ip route add 198.18.0.99/32 dev vipd0");
    let run = VipdRun::new("reach-planted");
    std::fs::write(
        &run.state,
        format!(
            r#"{{"version": 1, "interfaces": ["vup0", "lo", "vipd0"],
            "routes": [{{"interface": "vup0", "vip": "0.0.0.0"}},
                       {{"interface": "vipd0", "vip": "198.18.0.99"}},
                       {{"interface": "vup0", "vip": "{client}"}}],
            "addresses": [{{"interface": "vup0", "address": "{client}"}},
                          {{"interface": "vup0", "address": "fd00:18:fa::2"}},
                          {{"interface": "lo", "address": "127.0.0.1"}}]}}"#
        ),
    )
    .unwrap();
    let before = network();
    let s = run.apply("");
    assert_eq!(s.rtnetlink_writes, 0, "{:?}", s.reach);
    assert_eq!(network(), before);
    assert!(
        s.notes
            .iter()
            .any(|n| n.contains("vup0") && n.contains("ignored")),
        "{:?}",
        s.notes
    );
    let record = run.state_text();
    assert!(
        !record.contains("vup0") && !record.contains("\"lo\""),
        "{record}"
    );
    // And with a service: the VIP is served, the host's own state is as it was.
    let tcp = lab.serve_peer(0, 8080);
    let udp = lab.serve_udp_peer(0, 5353);
    let vip = vip(Family::V4);
    run.apply(&config(vip, &[(tcp.ip(), tcp.port(), udp.port())], "masq"));
    assert_backend_sees_the_client(&lab, vip);
    run.apply("");
    assert!(sh("ip -o route show dev vipd0").contains("198.18.0.99"));
    sh("ip link del vipd0");
}

#[test]
fn vips_that_conflict_with_the_host_are_refused_with_their_place_and_nothing_changes() {
    require_vm();
    no_vipd0();
    let lab = Lab::new(Family::V4, 1);
    let run = VipdRun::new("reach-conflict");
    let before = (sh("ipvsadm -Sn"), network());
    let out = run.apply_output(&format!(
        "[[service]]\nname = \"a\"\nvip = \"198.18.0.82:80\"\n\n\
         [[service]]\nname = \"b\"\nvip = \"{}:80\"\n\n\
         [[service]]\nname = \"c\"\nvip = \"198.18.250.77:80\"\n",
        lab.client_addr()
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "vipd.toml:7:7: VIP {} is an address of interface vup0",
            lab.client_addr()
        )) && err.contains("vipd.toml:11:7: VIP 198.18.250.77 is inside 198.18.250.2/24")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!((sh("ipvsadm -Sn"), network()), before);
}

#[test]
fn an_interface_of_another_kind_is_refused_and_nothing_changes() {
    require_vm();
    let _ = sh("ip link del vipdbad 2>/dev/null; true");
    sh("ip link add vipdbad type veth peer name vipdbad-peer");
    let run = VipdRun::new("not-dummy");
    let before = sh("ipvsadm -Sn");
    let out = run.apply_output(
        "[daemon]\nvip_interface = \"vipdbad\"\n[[service]]\nname = \"a\"\nvip = \"198.18.0.81:80\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"vipdbad\"") && err.contains("not a dummy"),
        "{err}"
    );
    assert_eq!(sh("ipvsadm -Sn"), before);
    assert!(!sh("ip route show table all").contains("198.18.0.81"));
    sh("ip link del vipdbad");
}

#[test]
fn sysctls_are_set_as_the_config_needs_them() {
    require_vm();
    sh("modprobe ip_vs && sysctl -qw net.ipv4.vs.expire_nodest_conn=0 net.ipv4.vs.expire_quiescent_template=0 net.ipv4.vs.conntrack=0");
    no_vipd0();
    let run = VipdRun::new("sysctl");
    let vip: SocketAddr = "198.18.0.82:80".parse().unwrap();
    let backend: SocketAddr = "198.18.1.2:8080".parse().unwrap();
    let persistent = |p: bool| {
        format!(
            "[[service]]\nname = \"web\"\nvip = \"{vip}\"\n{}  [[service.backend]]\n  address = \"{backend}\"\n",
            if p { "persistence = { timeout = \"60s\" }\n" } else { "" }
        )
    };
    // Nothing owned: nothing set.
    assert_eq!(run.apply("").sysctl_writes, 0);
    assert_eq!(sysctl("net.ipv4.vs.expire_nodest_conn"), "0");
    let s = run.apply(&persistent(false));
    assert_eq!(s.sysctl_writes, 2);
    assert_eq!(sysctl("net.ipv4.vs.expire_nodest_conn"), "1");
    assert_eq!(sysctl("net.ipv4.vs.conntrack"), "1");
    assert_eq!(sysctl("net.ipv4.vs.expire_quiescent_template"), "0");
    let s = run.apply(&persistent(true));
    assert_eq!((s.sysctl_writes, s.ipvs_writes), (1, 1));
    assert_eq!(sysctl("net.ipv4.vs.expire_quiescent_template"), "1");
    assert_eq!(run.apply(&persistent(true)).sysctl_writes, 0);
    run.apply("");
}
