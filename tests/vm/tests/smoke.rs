//! Platform smoke tests, on every kernel of the matrix: the IPVS modules load on demand
//! and unload, as on a host; IPVS forwards a local client's TCP connection to a backend
//! in a network namespace behind a router, and the backend sees the client host's own
//! address; the client host's stateful firewall lets the replies in only with IPVS's
//! conntrack on; the kprobe on `ip_vs_conn_new` names that connection's real backend;
//! the state tracepoint sees the connection to the VIP. The IPVS rules here are made with
//! ipvsadm, independent of vipd's own control plane.

use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use vipd::watcher::{Event, Hooks, Probes, TcpState};
use vipd_common::IPPROTO_TCP;
use vipd_vmtests::{
    lab::{module_loaded, unload_ipvs, Family, Firewall, Lab},
    require_vm,
    servers::{whoami_tcp, whoami_udp},
    sh,
};

const VPORT: u16 = 80;
const RPORT: u16 = 8080;

/// A lab with one backend serving a greeting behind an ipvsadm-made service.
fn lab_with_service(family: Family) -> (Lab, SocketAddr, SocketAddr) {
    require_vm();
    let lab = Lab::new(family, 1);
    let backend = lab.serve_greeting(0, RPORT);
    let vip = lab.ipvsadm_service(VPORT, 0, RPORT);
    (lab, vip, backend)
}

fn remove_service(family: Family, vip: SocketAddr) {
    sh(&format!(
        "ipvsadm -D -t {}",
        family.ipvs(vip.ip(), vip.port())
    ));
}

fn greeting_through(vip: SocketAddr) -> (String, SocketAddr) {
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to VIP {vip}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = s.local_addr().unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    (text, local)
}

fn ipvs_forwards(family: Family) {
    let (lab, vip, _) = lab_with_service(family);
    let (text, _) = greeting_through(vip);
    assert_eq!(text, format!("hello from {}", lab.backends[0].ns));
    remove_service(family, vip);
}

#[test]
fn ipvs_forwards_local_tcp_to_netns_backend_v4() {
    ipvs_forwards(Family::V4);
}

#[test]
fn ipvs_forwards_local_tcp_to_netns_backend_v6() {
    ipvs_forwards(Family::V6);
}

fn modules() -> String {
    std::fs::read_to_string("/proc/modules").unwrap()
}

/// Nothing loads IPVS at boot: the first IPVS request does, through the kernel's module
/// loader (`/sbin/modprobe`), and a service loads its scheduler. `modprobe -r` unloads
/// them again.
#[test]
fn ipvs_modules_load_on_demand_and_unload() {
    require_vm();
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/modprobe")
            .unwrap()
            .trim(),
        "/sbin/modprobe"
    );
    unload_ipvs();
    assert!(!module_loaded("ip_vs_rr"), "{}", modules());
    // ipvsadm: its netlink family request autoloads ip_vs, the service its scheduler.
    sh("ipvsadm -A -t 1.2.3.4:80 -s rr");
    assert!(
        module_loaded("ip_vs") && module_loaded("ip_vs_rr"),
        "{}",
        modules()
    );
    sh("ipvsadm -E -t 1.2.3.4:80 -s sh");
    assert!(module_loaded("ip_vs_sh"), "{}", modules());
    sh("ipvsadm -D -t 1.2.3.4:80");
    sh("modprobe -r ip_vs_rr ip_vs_sh");
    assert!(!module_loaded("ip_vs_rr") && !module_loaded("ip_vs_sh"));
    unload_ipvs();
    // The kernel alone (no modprobe run by the client): vipd-ipvs's family lookup.
    vipd_ipvs::Client::connect().expect("IPVS netlink family, autoloaded");
    assert!(module_loaded("ip_vs"), "{}", modules());
    unload_ipvs();
}

/// What a backend sees of a connection (and a datagram) through the VIP: the client
/// host's own address, and the client socket's port; not the VIP.
fn backend_sees_client_address(family: Family) {
    require_vm();
    let lab = Lab::new(family, 1);
    lab.serve_peer(0, RPORT);
    lab.serve_udp_peer(0, RPORT);
    let vip = lab.ipvsadm_service(VPORT, 0, RPORT);
    sh(&format!(
        "ipvsadm -A -u {svc} -s rr && ipvsadm -a -u {svc} -r {} -m",
        family.ipvs(lab.backends[0].addr, RPORT),
        svc = family.ipvs(vip.ip(), VPORT)
    ));
    let tcp = whoami_tcp(vip, Duration::from_secs(5)).expect("asking through the VIP (TCP)");
    let udp = whoami_udp(vip, Duration::from_secs(5)).expect("asking through the VIP (UDP)");
    for v in [&tcp, &udp] {
        assert_eq!(v.backend, "vb1", "{v:?}");
        assert_eq!(v.seen.ip(), lab.client_addr(), "{v:?}");
        assert_eq!(v.seen, v.local, "{v:?}");
    }
    sh("ipvsadm -C");
}

#[test]
fn backend_sees_the_client_host_address_v4() {
    backend_sees_client_address(Family::V4);
}

#[test]
fn backend_sees_the_client_host_address_v6() {
    backend_sees_client_address(Family::V6);
}

/// The client host's firewall drops the replies of masqueraded connections as invalid
/// unless IPVS keeps conntrack up to date (`net.ipv4.vs.conntrack`); without the
/// firewall they pass either way. The firewall needs `nft_ct`, which loads on demand.
fn firewall_needs_ipvs_conntrack(family: Family) {
    require_vm();
    let tries = |lab: &Lab, vip: SocketAddr, conntrack: u8| {
        sh(&format!("sysctl -qw net.ipv4.vs.conntrack={conntrack}"));
        let drops = lab.firewall_drops();
        let ok = TcpStream::connect_timeout(&vip, Duration::from_secs(2)).is_ok();
        (ok, lab.firewall_drops() - drops)
    };
    {
        let lab = Lab::new(family, 1);
        assert!(module_loaded("nft_ct"), "{}", modules());
        lab.serve_greeting(0, RPORT);
        let vip = lab.ipvsadm_service(VPORT, 0, RPORT);
        let (ok, dropped) = tries(&lab, vip, 0);
        assert!(
            !ok && dropped > 0,
            "connected: {ok}, firewall drops: {dropped}"
        );
        assert_eq!(tries(&lab, vip, 1), (true, 0));
    }
    let lab = Lab::new_with(family, 1, Firewall::Off);
    lab.serve_greeting(0, RPORT);
    let vip = lab.ipvsadm_service(VPORT, 0, RPORT);
    assert_eq!(tries(&lab, vip, 0), (true, 0));
    sh("ipvsadm -C");
}

#[test]
fn firewall_drops_masqueraded_replies_without_ipvs_conntrack_v4() {
    firewall_needs_ipvs_conntrack(Family::V4);
}

#[test]
fn firewall_drops_masqueraded_replies_without_ipvs_conntrack_v6() {
    firewall_needs_ipvs_conntrack(Family::V6);
}

/// What the root namespace holds that a lab could touch: links, namespaces, routes,
/// nftables, IPVS's conntrack setting.
fn host_state() -> String {
    sh(
        "ip -o link show | cut -d' ' -f2; ip netns list; ip -4 route show table all; \
        ip -6 route show table all | grep -v '^local\\|^multicast\\|fe80::/64'; nft list ruleset; \
        cat /proc/sys/net/ipv4/vs/conntrack 2>/dev/null; true",
    )
}

/// Dropping a lab removes everything it made: router, backends, links, routes, the VIP
/// route device, the firewall and marking tables, and sets IPVS's conntrack back.
#[test]
fn a_dropped_lab_leaves_nothing_behind() {
    require_vm();
    // IPVS as a lab leaves it: loaded, empty, its settings at their defaults (a lab
    // starts by unloading it, which also resets what an earlier test's vipd set).
    unload_ipvs();
    sh("modprobe ip_vs");
    // Without an earlier test's vipd0: vipd leaves its VIP routes when it stops, and a
    // route whose source address was a lab's changes when a new lab brings the address
    // back and takes it away again.
    sh("ip link del vipd0 2>/dev/null; true");
    let before = host_state();
    for family in [Family::V4, Family::V6] {
        let lab = Lab::new(family, 2);
        lab.serve_greeting(0, RPORT);
        lab.serve_udp_peer(1, RPORT);
        lab.ipvsadm_service(VPORT, 0, RPORT);
        lab.ipvsadm_fwmark_service(7, VPORT, 1, RPORT);
        lab.blackhole(1);
        assert_ne!(host_state(), before);
        drop(lab);
        sh("ipvsadm -C");
        assert_eq!(host_state(), before, "after a {family:?} lab");
    }
}

/// Every hook attached; one connection through the VIP. The kprobe on ip_vs_conn_new
/// reports exactly this client, this VIP and the backend's real address; tcp_connect
/// reports the client's bound source port; the tracepoint's SYN_SENT -> ESTABLISHED
/// toward the VIP already names the real backend (joined in the kernel); after the close
/// the join entry is gone.
fn probes_attribute(family: Family) {
    let (_lab, vip, backend) = lab_with_service(family);
    let mut probes = Probes::load(Hooks::ALL).expect("loading probes");
    probes.watch(vip, IPPROTO_TCP as u8, 1).unwrap();
    let (_, client) = greeting_through(vip);

    let mut ipvs = None;
    let mut connect = None;
    let mut established = None;
    let mut closed = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !(ipvs.is_some() && connect.is_some() && established.is_some() && closed)
    {
        match probes.next_event() {
            Some(Ok(Event::IpvsConn {
                client: c,
                vip: v,
                backend: b,
                protocol,
                ..
            })) => {
                assert_eq!(
                    (c, protocol),
                    (client, 6),
                    "IPVS connection of another client"
                );
                ipvs = Some((v, b));
            }
            Some(Ok(Event::Connect { src, dst, .. })) => connect = Some((src, dst)),
            Some(Ok(Event::StateChange {
                src,
                dst,
                old,
                new,
                backend: b,
                ..
            })) => {
                assert_eq!(dst, vip, "the client socket is connected to the VIP");
                if (old, new) == (TcpState::SynSent, TcpState::Established) {
                    assert_eq!(src, client);
                    established = Some(b);
                }
                closed |= new == TcpState::Close && src == client;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("undecodable event: {e}"),
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    assert_eq!(
        ipvs,
        Some((vip, backend)),
        "ip_vs_conn_new event for client {client}"
    );
    assert_eq!(connect, Some((client, vip)), "tcp_connect event");
    assert_eq!(
        established,
        Some(Some(backend)),
        "ESTABLISHED joined to the real backend"
    );
    assert_eq!(probes.lost_events().unwrap(), 0);
    // The join entry outlives the socket, as IPVS's connection entry does: exactly one.
    assert!(closed, "no CLOSE for client {client}");
    assert_eq!(
        probes.tracked_connections(),
        1,
        "one join entry for one connection"
    );
    remove_service(family, vip);
}

#[test]
fn kprobe_and_tracepoint_name_the_real_backend_v4() {
    probes_attribute(Family::V4);
}

#[test]
fn kprobe_and_tracepoint_name_the_real_backend_v6() {
    probes_attribute(Family::V6);
}
