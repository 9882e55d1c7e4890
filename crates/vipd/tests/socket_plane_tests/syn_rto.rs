//! `syn_rto` on the socket plane: `sock_ops` gives the connections the connect hook
//! translated from a VIP with a timeout that initial SYN timeout, so a blackholed
//! backend's unanswered SYN is retransmitted, reported and the backend quarantined
//! well before the kernel's default second; with `"auto"` the timeout is learnt from
//! this plane's own handshakes (their SYNs are reported as they leave).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use vipd::plane::socket::SocketPlane;

use crate::{
    socket_common::{
        addr, backend_netns, drop_syns_to, procs::client, web::WebRun, Cgroup, Pins, Servers,
        BACKENDS4, VIP4, VIP_PORT,
    },
    start, tally, weights,
    xdp_common::daemon::backend,
};

/// `vipd run` with the socket plane and `syn_rto` (if any); clients connect one after
/// another while the second backend starts dropping SYNs. Returns the time from the
/// drop to its quarantine.
fn time_to_quarantine(tag: &str, syn_rto: Option<&str>) -> Duration {
    let rto = syn_rto.map_or(String::new(), |r| format!("  syn_rto = \"{r}\"\n"));
    let run = WebRun::start(
        tag,
        VIP4,
        &BACKENDS4,
        &BACKENDS4[..2],
        &format!("  retransmit_threshold = 1\n  base_ejection = \"60s\"\n{rto}"),
    );
    let (ns, cg, daemon) = (&run.ns, &run.cg, &run.daemon);
    let (good, bad) = (run.good, run.bad);
    assert_eq!(daemon.status().dataplane, "socket");
    if syn_rto.is_some() {
        assert!(
            daemon.log().contains("SYN timeout set (socket data plane)"),
            "{}",
            daemon.log()
        );
    }

    let stop = AtomicBool::new(false);
    let took = std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                client(ns, &cg.0, VIP4, VIP_PORT, 5, "tcp");
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        // An adaptive timeout learns from the handshakes first (upkeep runs each second,
        // and logs the timeout once it came down).
        if syn_rto == Some("auto") {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !daemon.log().contains("adaptive SYN timeout") {
                assert!(
                    Instant::now() < deadline,
                    "nothing learnt\n{}",
                    daemon.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        drop_syns_to(ns, BACKENDS4[1]);
        let dropped = Instant::now();
        daemon.wait_status(
            "the blackholed backend quarantined",
            Duration::from_secs(10),
            |v| backend(v, &bad.to_string()).state == "quarantined",
        );
        let took = dropped.elapsed();
        stop.store(true, Ordering::Relaxed);
        took
    });
    let v = daemon.status();
    let b = backend(&v, &bad.to_string());
    assert!(b.outcomes.syn_retransmits >= 1, "{b:?}");
    assert_eq!(backend(&v, &good.to_string()).state, "healthy");
    took
}

#[test]
fn syn_rto_quarantines_a_blackholed_backend_well_before_the_default_second() {
    let fast = time_to_quarantine("sock-synrto", Some("200ms"));
    let auto = time_to_quarantine("sock-synrto-auto", Some("auto"));
    let default = time_to_quarantine("sock-synrto-off", None);
    println!(
        "socket plane, blackhole to quarantine: {} ms with syn_rto = \"200ms\", {} ms with \"auto\", {} ms without",
        fast.as_millis(),
        auto.as_millis(),
        default.as_millis()
    );
    assert!(fast < Duration::from_millis(700), "{fast:?} with syn_rto");
    assert!(
        auto < Duration::from_millis(700),
        "{auto:?} with syn_rto = \"auto\""
    );
    // Without it the first retransmission comes after the kernel's 1 s.
    assert!(
        default > Duration::from_millis(900),
        "{default:?} without syn_rto"
    );
}

/// `"auto"`: the VIP's entry asks for SYN reports; its connections' establishments come
/// with handshake times, the SYN reports go no further, and after enough handshakes the
/// timeout comes down from its 1 s ceiling to k x their p99, within the floor (loopback
/// handshakes are far below it). A fixed timeout asks for no SYN reports.
#[test]
fn an_adaptive_syn_rto_learns_this_planes_handshakes() {
    use vipd::{
        config::{AutoRto, Config, SynRto},
        kernel::tick::kernel_hz,
        model::Outcome,
        plane::DataPlane,
    };
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &BACKENDS4);
    let cg = Cgroup::new("sock-synauto");
    let pins = Pins::new("sock-synauto");
    let mut plane = start(&cg.0, &pins.0);
    plane
        .apply(&Config::default(), &weights(VIP4, &BACKENDS4, &[1, 1, 0]))
        .unwrap();
    let vip = addr(VIP4, VIP_PORT);
    let auto = AutoRto::default();
    plane.set_syn_rto(&[(vip, SynRto::Auto(auto))]);
    let hz = u64::from(kernel_hz().unwrap());
    let ms = |plane: &SocketPlane| {
        let e = plane.syn_rtos();
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(plane.syn_rto_vips().unwrap(), 1);
        (e[0].1.jiffies as u64 * 1000 / hz, e[0].1.report_syn)
    };
    assert_eq!(ms(&plane), (auto.ceiling.as_millis() as u64, 1));

    let n = 60;
    let seen = client(&ns, &cg.0, VIP4, VIP_PORT, n, "tcp");
    assert_eq!(tally(&seen, vip).values().sum::<usize>(), n);
    let mut got = Vec::new();
    plane.take_reports(10_000, &mut got);
    assert!(
        !got.iter().any(|r| r.outcome == Outcome::SynRetransmit(0)),
        "a SYN report went on: {got:#?}"
    );
    let latencies: Vec<Duration> = got
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Established { latency } => latency,
            _ => None,
        })
        .collect();
    assert_eq!(latencies.len(), n, "{got:#?}");
    assert!(
        latencies.iter().all(|d| *d < Duration::from_millis(500)),
        "{latencies:?}"
    );
    plane.maintain(tokio::time::Instant::now());
    let (learnt, _) = ms(&plane);
    println!(
        "socket plane, adaptive SYN timeout after {n} loopback handshakes: {learnt} ms (max handshake {:?})",
        latencies.iter().max().unwrap()
    );
    assert!(
        learnt < auto.ceiling.as_millis() as u64 && learnt >= auto.floor.as_millis() as u64,
        "{learnt} ms"
    );

    plane.set_syn_rto(&[(vip, SynRto::Fixed(Duration::from_millis(200)))]);
    assert_eq!(ms(&plane), (200, 0));
    // A second VIP counts, and only once however often its timeout changes; with none
    // left the programs are told to look up none.
    let other = addr(VIP4, VIP_PORT + 1);
    let fixed = |ms| SynRto::Fixed(Duration::from_millis(ms));
    plane.set_syn_rto(&[(vip, fixed(200)), (other, fixed(300))]);
    plane.set_syn_rto(&[(vip, fixed(200)), (other, fixed(400))]);
    assert_eq!(plane.syn_rtos().len(), 2);
    assert_eq!(plane.syn_rto_vips().unwrap(), 2);
    plane.set_syn_rto(&[]);
    assert!(plane.syn_rtos().is_empty());
    assert_eq!(plane.syn_rto_vips().unwrap(), 0);
}
