//! `syn_rto` on the socket plane: `sock_ops` gives the connections the connect hook
//! translated from a VIP with a timeout that initial SYN timeout, so a blackholed
//! backend's unanswered SYN is retransmitted, reported and the backend quarantined
//! well before the kernel's default second.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use crate::{
    socket_common::{drop_syns_to, procs::client, web::WebRun, BACKENDS4, VIP4, VIP_PORT},
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
    let default = time_to_quarantine("sock-synrto-off", None);
    println!(
        "socket plane, blackhole to quarantine: {} ms with syn_rto = \"200ms\", {} ms without",
        fast.as_millis(),
        default.as_millis()
    );
    assert!(fast < Duration::from_millis(700), "{fast:?} with syn_rto");
    // Without it the first retransmission comes after the kernel's 1 s.
    assert!(
        default > Duration::from_millis(900),
        "{default:?} without syn_rto"
    );
}
