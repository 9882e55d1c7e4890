//! Host tier: `syn_rto` on the XDP plane, in the namespace lab. The clients are on
//! another host, so their SYN timeout stays 1 s; the program reports each SYN as it
//! leaves for its backend and vipd gives it the VIP's timeout to be answered in:
//! * fixed (`"200ms"`): a backend that starts dropping SYNs is quarantined well before
//!   the client's own retransmission a second after its SYN (without the deadline it
//!   could not be: that retransmission is the first sign);
//! * `"auto"`: the timeout comes down from its ceiling to k x the handshakes' p99 as
//!   clients connect, no fast backend is taken for a failing one, and a backend that
//!   starts dropping SYNs is quarantined well before the client's retransmission. (A
//!   slow backend's rule is the IPVS plane's, shared code: its unit tests and the VM
//!   test with a 100 ms slower backend cover it; this host has no netem.)
//!
//! Needs root.

mod xdp_common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use xdp_common::{
    daemon::{backend, curl, http_servers, web_config, Daemon, Scratch},
    lab::{Lab, VIP},
};

const B1: &str = "198.18.2.11:8080";

fn config(syn_rto: &str) -> String {
    web_config(&format!(
        "  base_ejection = \"60s\"\n  syn_rto = \"{syn_rto}\""
    ))
}

/// b1 drops every SYN (its stack never sees them).
fn drop_syns(lab: &Lab) {
    lab.b1.run(
        "nft -f - <<EOF\n\
         table inet vipd_test_drop {\n\
           chain input {\n\
             type filter hook input priority -150; policy accept;\n\
             tcp flags & (syn | ack) == syn drop\n\
           }\n\
         }\n\
         EOF",
    );
}

/// Clients connecting one after another until `stop`.
fn clients(lab: &Lab, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let name = lab.cl.name.clone();
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "exec", &name, "curl", "-s", "--max-time", "3"])
                .arg(format!("http://{VIP}/id"))
                .output();
            n += 1;
        }
        n
    })
}

/// Starts the daemon on `cfg` and waits for the VIP to answer.
fn start(lab: &Lab, scratch: &Scratch, syn_rto: &str) -> Daemon {
    let dir = &scratch.0;
    let cfg = dir.join("vipd.toml");
    std::fs::write(&cfg, config(syn_rto)).unwrap();
    let daemon = Daemon::start(lab, &cfg, &dir.join("run"), &dir.join("vipd.log"), &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(lab).is_none() {
        assert!(
            Instant::now() < deadline,
            "the VIP never answered\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon
}

/// From the drop to b1's quarantine, with clients connecting throughout.
fn time_to_quarantine(lab: &Lab, daemon: &Daemon) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let load = clients(lab, stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    drop_syns(lab);
    let dropped = Instant::now();
    daemon.wait_status("b1 quarantined", Duration::from_secs(10), |v| {
        backend(v, B1).state == "quarantined"
    });
    let took = dropped.elapsed();
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    took
}

#[test]
fn a_fixed_deadline_quarantines_a_blackholed_backend_before_the_clients_retransmission() {
    let lab = Lab::new();
    let scratch = Scratch::new("synrto-fixed");
    let _servers = http_servers(&lab, &scratch.0, &[0, 1]);
    let _peer = lab.pass_on_peer();
    let daemon = start(&lab, &scratch, "200ms");
    assert!(
        daemon
            .log()
            .contains("handshake deadlines (syn_rto) on the XDP plane"),
        "{}",
        daemon.log()
    );
    let took = time_to_quarantine(&lab, &daemon);
    println!("blackhole to quarantine with a 200 ms deadline: {took:?}");
    // The client retransmits after 1 s: anything under that is the deadline's doing.
    assert!(
        took < Duration::from_millis(800),
        "quarantined {took:?} after the drop\n{}",
        daemon.log()
    );
    let v = daemon.status();
    let b1 = backend(&v, B1);
    assert!(b1.outcomes.syn_retransmits >= 1, "{b1:?}");
    assert_eq!(backend(&v, "198.18.2.12:8080").state, "healthy");
}

#[test]
fn an_adaptive_deadline_learns_the_handshakes_and_quarantines_a_blackholed_backend() {
    let lab = Lab::new();
    let scratch = Scratch::new("synrto-auto");
    let _servers = http_servers(&lab, &scratch.0, &[0, 1]);
    let _peer = lab.pass_on_peer();
    let daemon = start(&lab, &scratch, "auto");
    // Handshakes to learn from (at least 20 in the window): the timeout comes down
    // from its ceiling (1 s) to k x their p99, here the floor.
    let stop = Arc::new(AtomicBool::new(false));
    let load = clients(&lab, stop.clone());
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::Relaxed);
    let n = load.join().unwrap();
    let v = daemon.status();
    for b in &v.services[0].backends {
        assert_eq!(
            (b.state.as_str(), b.outcomes.syn_retransmits),
            ("healthy", 0),
            "a fast backend was taken for a failing one ({n} clients): {b:?}\n{}",
            daemon.log()
        );
    }
    let took = time_to_quarantine(&lab, &daemon);
    println!("{n} clients to learn from; blackhole to quarantine: {took:?}");
    // At the ceiling (nothing learnt) it would be 1 s and more.
    assert!(
        took < Duration::from_millis(800),
        "quarantined {took:?} after the drop\n{}",
        daemon.log()
    );
}
