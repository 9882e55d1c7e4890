//! Platform smoke tests, on every kernel of the matrix: IPVS forwards a local client's
//! TCP connection to a backend in a network namespace; the kprobe on `ip_vs_conn_new`
//! names that connection's real backend; the state tracepoint sees the connection to the
//! VIP. The IPVS rules here are made with ipvsadm, independent of vipd's own control plane.

use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use vipd::watcher::{Event, Hooks, Probes, TcpState};
use vipd_common::IPPROTO_TCP;
use vipd_vmtests::{
    lab::{Family, Lab},
    require_vm, sh,
};

const VPORT: u16 = 80;
const RPORT: u16 = 8080;

/// A lab with one backend serving a greeting behind an ipvsadm-made service.
fn lab_with_service(family: Family) -> (Lab, SocketAddr, SocketAddr) {
    require_vm();
    let lab = Lab::new(family, 1);
    let backend = lab.serve_greeting(0, RPORT);
    let vip = SocketAddr::new(lab.vip, VPORT);
    let svc = family.ipvs(vip.ip(), VPORT);
    let _ = sh(&format!("ipvsadm -D -t {svc} 2>/dev/null; true"));
    sh(&format!("ipvsadm -A -t {svc} -s rr"));
    sh(&format!(
        "ipvsadm -a -t {svc} -r {} -m",
        family.ipvs(backend.ip(), RPORT)
    ));
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
