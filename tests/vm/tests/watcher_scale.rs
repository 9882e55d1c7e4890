//! Many connections through one VIP, each of a small set of client ports used over and
//! over: the kernel's join map holds at most one entry per port (entries are reused,
//! never duplicated), no event is lost, and every connection is attributed to its real
//! backend. Throughput at scale is the watcher benchmark's (`cargo xtask vm-bench
//! watcher_bench`).

use std::{
    io::Read,
    time::{Duration, Instant},
};

use vipd::watcher::{Correlator, Hooks, Outcome, Probes};
use vipd_common::IPPROTO_TCP;
use vipd_vmtests::{
    lab::{Family, Lab},
    require_vm,
    tcp_client::connect_from,
};

/// Client ports, each used `CONNECTIONS / PORTS` times.
const PORTS: u16 = 500;
const FIRST_PORT: u16 = 41_000;
const CONNECTIONS: u64 = 10_000;

#[test]
fn ten_thousand_connections_over_500_ports_all_attributed_none_lost() {
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
    for i in 0..CONNECTIONS {
        let port = FIRST_PORT + (i % u64::from(PORTS)) as u16;
        let mut s = connect_from(port, vip)
            .unwrap_or_else(|e| panic!("connection {i} via the VIP from port {port}: {e}"));
        buf.clear();
        s.read_to_end(&mut buf).unwrap();
        drop(s);
        if i % 64 == 0 {
            tally(&mut probes, &mut correlator);
            if i % 512 == 0 {
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
    let (tracked, ports) = (probes.tracked_connections(), usize::from(PORTS));
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
