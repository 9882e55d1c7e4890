//! 100,000 connections through one VIP: the kernel's join map stays bounded, no event is
//! lost, and every connection is attributed to its real backend.

use std::{
    io::Read,
    net::TcpStream,
    time::{Duration, Instant},
};

use vipd::watcher::{Correlator, Hooks, Outcome, Probes};
use vipd_common::IPPROTO_TCP;
use vipd_vmtests::{
    lab::{Family, Lab},
    require_vm,
};

const CONNECTIONS: u64 = 100_000;

#[test]
fn hundred_thousand_connections_all_attributed_none_lost() {
    require_vm();
    let lab = Lab::new(Family::V4, 1);
    let backend = lab.serve_greeting(0, 8080);
    let vip = lab.ipvsadm_service(80, 0, 8080);
    let mut probes = Probes::load(Hooks::ALL).expect("loading probes");
    probes.watch(vip, IPPROTO_TCP as u8, 1).unwrap();
    let mut correlator = Correlator::new(65536);
    let (mut established, mut closed, mut max_tracked) = (0u64, 0u64, 0usize);
    let drain = |probes: &mut Probes, correlator: &mut Correlator| {
        let (mut e_n, mut c_n) = (0, 0);
        while let Some(e) = probes.next_event() {
            let e = e.expect("decodable event");
            if let Some(r) = correlator.feed(&e) {
                assert_eq!(r.backend, Some(backend), "{r:?}");
                match r.outcome {
                    Outcome::Established { .. } => e_n += 1,
                    Outcome::Closed { .. } => c_n += 1,
                    other => panic!("unexpected outcome {other:?}"),
                }
            }
        }
        (e_n, c_n)
    };
    let mut tally = |probes: &mut Probes, correlator: &mut Correlator| {
        let (e, c) = drain(probes, correlator);
        established += e;
        closed += c;
        closed
    };
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut client_ports = std::collections::HashSet::new();
    for i in 0..CONNECTIONS {
        let mut s =
            TcpStream::connect_timeout(&vip, Duration::from_secs(5)).expect("connect via VIP");
        client_ports.insert(s.local_addr().unwrap().port());
        buf.clear();
        s.read_to_end(&mut buf).unwrap();
        drop(s);
        if i % 64 == 0 {
            tally(&mut probes, &mut correlator);
            if i % 4096 == 0 {
                max_tracked = max_tracked.max(probes.tracked_connections());
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while tally(&mut probes, &mut correlator) < CONNECTIONS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    println!(
        "{CONNECTIONS} connections in {:.1} s ({:.0}/s); join map peak {max_tracked}, now {}",
        took.as_secs_f64(),
        CONNECTIONS as f64 / took.as_secs_f64(),
        probes.tracked_connections()
    );
    assert_eq!(probes.lost_events().unwrap(), 0, "events lost");
    assert_eq!(correlator.counters().unattributed, 0);
    assert_eq!(correlator.counters().evicted, 0);
    assert_eq!((established, closed), (CONNECTIONS, CONNECTIONS));
    // One join entry per distinct (client, VIP) tuple at most: entries are reused, never
    // duplicated, and the map cannot grow with the number of connections.
    let (tracked, ports) = (probes.tracked_connections(), client_ports.len());
    assert!(
        tracked <= ports,
        "{tracked} join entries for {ports} client ports"
    );
    assert!(
        max_tracked <= ports,
        "join map peaked at {max_tracked} for {ports} client ports"
    );
    assert_eq!(correlator.open(), 0);
}
