//! The UDP hooks against real IPVS: datagrams sent and replies received are counted per
//! real backend, an ICMP port-unreachable names the backend whose server stopped, a
//! backend that drops datagrams shows as a wait for a reply that does not end, and
//! traffic straight to a backend counts nothing. IPv4 and IPv6, on every kernel.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use vipd::watcher::{dest_addrs, Event, Hooks, Probes};
use vipd_common::IPPROTO_UDP;
use vipd_vmtests::{
    in_netns,
    lab::{expose_vip, Family, Lab},
    monotonic_ns, require_vm, sh,
};

const RPORT: u16 = 5353;
const VPORT: u16 = 53;

/// A UDP server in a backend's namespace that answers every datagram with its name.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(lab: &Lab, i: usize) -> Echo {
        let addr = SocketAddr::new(lab.backends[i].addr, RPORT);
        let sock = in_netns(&lab.backends[i].ns, move || UdpSocket::bind(addr))
            .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let name = format!("vb{}", i + 1);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(name.as_bytes(), from);
                }
            }
        });
        Echo {
            stop,
            thread: Some(thread),
        }
    }

    /// Closes the socket: the backend's kernel answers ICMP port unreachable.
    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn udp_service(lab: &Lab, backends: &[usize]) -> SocketAddr {
    let svc = lab.family.ipvs(lab.vip, VPORT);
    sh("ipvsadm -C");
    sh(&format!("ipvsadm -A -u {svc} -s rr"));
    for &i in backends {
        sh(&format!(
            "ipvsadm -a -u {svc} -r {} -m",
            lab.family.ipvs(lab.backends[i].addr, RPORT)
        ));
    }
    expose_vip(lab.vip);
    SocketAddr::new(lab.vip, VPORT)
}

/// A client socket with a fixed source port, connected to `to` (so ICMP errors come
/// back as ECONNREFUSED).
fn client(family: Family, port: u16, to: SocketAddr) -> UdpSocket {
    let local: SocketAddr = match family {
        Family::V4 => (std::net::Ipv4Addr::UNSPECIFIED, port).into(),
        Family::V6 => (std::net::Ipv6Addr::UNSPECIFIED, port).into(),
    };
    let s = UdpSocket::bind(local).unwrap();
    s.connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

fn ask(s: &UdpSocket) -> std::io::Result<String> {
    s.send(b"which")?;
    let mut buf = [0u8; 64];
    let n = s.recv(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn backend_addr(lab: &Lab, name: &str) -> SocketAddr {
    let i: usize = name.trim_start_matches("vb").parse().unwrap();
    SocketAddr::new(lab.backends[i - 1].addr, RPORT)
}

/// The traffic counters of `backend` behind `vip`, if any.
fn traffic(probes: &Probes, vip: SocketAddr, backend: SocketAddr) -> Option<(u64, u64, u64)> {
    probes
        .udp_traffic()
        .into_iter()
        .find(|(k, _)| dest_addrs(k) == Some((vip, backend)))
        .map(|(_, t)| (t.sent, t.replied, t.pending_since_ns))
}

fn counts_and_icmp_errors_name_the_backend(family: Family) {
    require_vm();
    let lab = Lab::new(family, 2);
    let e1 = Echo::start(&lab, 0);
    let _e2 = Echo::start(&lab, 1);
    let vip = udp_service(&lab, &[0, 1]);
    let mut probes = Probes::load(Hooks::ALL).expect("loading probes with the UDP hooks");
    probes.watch(vip, IPPROTO_UDP as u8, 1).unwrap();

    // Straight to a backend: answered, but nothing is counted.
    let direct = client(family, 40_100, backend_addr(&lab, "vb1"));
    assert_eq!(ask(&direct).expect("direct exchange"), "vb1");
    assert!(
        probes.udp_traffic().is_empty(),
        "direct traffic was counted: {:?}",
        probes.udp_traffic()
    );

    // Through the VIP from one fixed source port: every answer from one backend.
    let c = client(family, 40_200, vip);
    let first = ask(&c).expect("exchange through the VIP");
    for _ in 0..4 {
        assert_eq!(ask(&c).unwrap(), first, "a fixed-port flow changed backend");
    }
    let chosen = backend_addr(&lab, &first);
    let (sent, replied, pending) = traffic(&probes, vip, chosen).expect("no counters");
    assert_eq!((sent, replied, pending), (5, 5, 0), "counters of {chosen}");
    let other = if first == "vb1" { "vb2" } else { "vb1" };
    assert_eq!(traffic(&probes, vip, backend_addr(&lab, other)), None);

    // Stop the chosen backend's server: its kernel answers port unreachable.
    if first == "vb1" {
        e1.stop();
    } else {
        drop(_e2);
    }
    let sent_at = Instant::now();
    let err = ask(&c).expect_err("a stopped server answered");
    // IPv4: the error reaches the socket. IPv6: IPVS on 6.1 and 6.12 drops ICMPv6 errors
    // of masqueraded flows (it checks their checksum without the pseudo-header), so
    // the client just times out; the watcher still sees the error where IPVS drops it.
    let refused = err.kind() == std::io::ErrorKind::ConnectionRefused;
    match family {
        Family::V4 => assert!(
            refused,
            "expected ECONNREFUSED from the ICMP error, got {err}"
        ),
        Family::V6 => assert!(
            refused || err.kind() == std::io::ErrorKind::WouldBlock,
            "expected ECONNREFUSED or a timeout, got {err}"
        ),
    }
    let mut seen = None;
    while seen.is_none() && sent_at.elapsed() < Duration::from_secs(2) {
        match probes.next_event() {
            Some(Ok(Event::IcmpError {
                client,
                vip: v,
                icmp,
                backend,
                ..
            })) => seen = Some((client, v, icmp, backend)),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("undecodable event: {e}"),
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    let (cl, v, icmp, backend) = seen.expect("no ICMP error event within 2 s");
    // One error, one event (IPv6 has two hooks that could both see it).
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        match probes.next_event() {
            Some(Ok(e @ Event::IcmpError { .. })) => panic!("a second ICMP error event: {e:?}"),
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert_eq!(
        backend,
        Some(chosen),
        "the ICMP error named the wrong backend"
    );
    assert_eq!(v, vip);
    assert_eq!(cl.port(), 40_200);
    assert_eq!(icmp.describe(), "port unreachable");
}

fn a_silent_backend_keeps_owing_a_reply(family: Family) {
    require_vm();
    let lab = Lab::new(family, 1);
    let _e = Echo::start(&lab, 0);
    let vip = udp_service(&lab, &[0]);
    let mut probes = Probes::load(Hooks::ALL).expect("loading probes with the UDP hooks");
    probes.watch(vip, IPPROTO_UDP as u8, 1).unwrap();
    let backend = backend_addr(&lab, "vb1");
    let c = client(family, 40_300, vip);
    assert_eq!(ask(&c).unwrap(), "vb1");
    assert_eq!(traffic(&probes, vip, backend).map(|t| t.2), Some(0));
    sh(&format!(
        "ip netns exec vb1 nft add table inet vipdlab_udp && \
         ip netns exec vb1 nft add chain inet vipdlab_udp in '{{ type filter hook input priority 0; }}' && \
         ip netns exec vb1 nft add rule inet vipdlab_udp in udp dport {RPORT} drop"
    ));
    let before = monotonic_ns();
    ask(&c).expect_err("a dropping backend answered");
    ask(&c).expect_err("a dropping backend answered");
    let (sent, replied, pending) = traffic(&probes, vip, backend).unwrap();
    assert_eq!((sent, replied), (3, 1));
    assert!(
        pending >= before && pending <= monotonic_ns(),
        "the wait should start at the first unanswered datagram: {pending} vs {before}"
    );
    // Clearing the wait (what the daemon does once it has acted) sticks until the next
    // datagram.
    probes
        .clear_pending(&vipd::watcher::dest_key(vip, backend))
        .unwrap();
    assert_eq!(traffic(&probes, vip, backend).map(|t| t.2), Some(0));
    sh("ip netns exec vb1 nft delete table inet vipdlab_udp");
    assert_eq!(ask(&c).unwrap(), "vb1");
    assert_eq!(
        traffic(&probes, vip, backend).map(|t| (t.1, t.2)),
        Some((2, 0))
    );
}

#[test]
fn udp_counts_and_icmp_errors_name_the_backend_ipv4() {
    counts_and_icmp_errors_name_the_backend(Family::V4);
}

#[test]
fn udp_counts_and_icmp_errors_name_the_backend_ipv6() {
    counts_and_icmp_errors_name_the_backend(Family::V6);
}

#[test]
fn udp_silent_backend_keeps_owing_a_reply_ipv4() {
    a_silent_backend_keeps_owing_a_reply(Family::V4);
}

#[test]
fn udp_silent_backend_keeps_owing_a_reply_ipv6() {
    a_silent_backend_keeps_owing_a_reply(Family::V6);
}
