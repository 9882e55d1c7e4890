//! The failover harness itself, with no health checker in the way: client load through a
//! plain ipvsadm service sees refusals after `kill_server` and timeouts after
//! `drop_syns`; the SYN sniffer timestamps what a backend receives; the weight watcher
//! sees what ipvsadm changes; a held connection survives a killed listener; keepalived
//! runs in the VM and its TCP_CHECK quarantines and re-admits a backend.

use std::{
    net::SocketAddr,
    thread::sleep,
    time::{Duration, Instant},
};

use vipd_ipvs::ServiceKey;
use vipd_vmtests::{
    keepalived::{Keepalived, KeepalivedConfig},
    lab::{Family, Lab},
    load::{hold_connection, Load, Outcome},
    require_vm, sh,
    syn::{Answer, Syn},
    weights::{quarantined, WeightWatcher},
};

const VPORT: u16 = 80;
const RPORT: u16 = 8080;

/// A lab with `n` greeting backends behind an ipvsadm rr service (no health checks).
fn lab_with_service(family: Family, n: u8) -> (Lab, SocketAddr) {
    require_vm();
    let lab = Lab::new(family, n);
    let all: Vec<usize> = (0..usize::from(n)).collect();
    for &i in &all {
        lab.serve_greeting(i, RPORT);
    }
    let vip = lab.ipvsadm_service_to(VPORT, &all, RPORT);
    (lab, vip)
}

fn remove_service(vip: SocketAddr, family: Family) {
    sh(&format!(
        "ipvsadm -D -t {}",
        family.ipvs(vip.ip(), vip.port())
    ));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn load_sees_faults(family: Family) {
    let (lab, vip) = lab_with_service(family, 3);
    // No health checker here: every SYN a backend gets from the client host is the load's.
    let client = lab.client_addr();
    let from_client = |s: &Syn| s.src.ip() == client;
    let sniffer0 = lab.sniff_syns(0, RPORT);
    let sniffer = lab.sniff_syns(1, RPORT);
    let load = Load::start(vip, 50.0, Duration::from_secs(1));
    sleep(Duration::from_secs(2));
    let steady = load.report();
    assert!(steady.len() >= 80, "{}", steady.summary());
    assert!(steady.failures().is_empty(), "{}", steady.summary());
    assert_eq!(steady.per_backend().len(), 3, "{}", steady.summary());
    assert!(
        steady.max_start_lag() < Duration::from_millis(200),
        "{}",
        steady.summary()
    );

    // Refused: one backend in three answers SYNs with RST.
    // Each fault's time is taken once it is in place.
    assert_eq!(lab.kill_server(0), 1);
    let killed = Instant::now();
    sleep(Duration::from_millis(1500));
    let restarting = Instant::now();
    assert_eq!(lab.restart_server(0), 1);
    let restarted = Instant::now();
    sleep(Duration::from_millis(1000));

    // SYNs dropped at backend 1: its connects time out (1 s client timeout).
    let dropping = Instant::now();
    lab.drop_syns(1);
    let dropped = Instant::now();
    sleep(Duration::from_millis(2500));
    // The fault lasts until its undo starts (the undo is in place when it returns).
    let accepted = Instant::now();
    let drops = lab.accept_syns(1);
    let healthy_again = Instant::now();
    sleep(Duration::from_millis(1500));
    let r = load.stop();
    let syns = sniffer.syns();
    println!("{}", r.summary());

    let during_kill = r.started_in(killed, restarting);
    let refused = during_kill
        .iter()
        .filter(|a| a.outcome == Outcome::Refused)
        .count();
    assert!(
        (15..=35).contains(&refused),
        "{refused} of {} refused while vb1 was down",
        during_kill.len()
    );
    assert!(
        during_kill
            .iter()
            .all(|a| a.outcome == Outcome::Refused || a.outcome.backend() != Some("vb1")),
        "vb1 served while killed"
    );
    let first = r.first_refused_after(killed).unwrap();
    assert!(first.ended - killed < Duration::from_millis(200));
    // The backend's side of it: the SYN of that very attempt (same client port) was
    // answered with RST before the client saw the refusal; before the kill, SYNs got
    // SYN-ACKs. The search starts at the attempt's own start, not at `killed`: the
    // listener is closed before `kill_server` returns (it then waits for its accept
    // thread), so a SYN in between is refused yet arrives before `killed`. (10 ms
    // before the start, for the sniffer's mapping of kernel stamps onto `Instant`, which
    // reads two clocks one after the other.)
    let port = first.port.expect("a refused attempt has a socket");
    let rel = |t: Instant| {
        if t >= killed {
            ms(t - killed)
        } else {
            -ms(killed - t)
        }
    };
    let rst = sniffer0
        .first_answered_after(
            first.started - Duration::from_millis(10),
            |s| from_client(s) && s.src.port() == port,
            Answer::Rst,
        )
        .unwrap_or_else(|| {
            let seen: Vec<_> = sniffer0
                .syns()
                .into_iter()
                .filter(|s| s.src.port() == port)
                .map(|s| {
                    format!(
                        "{} at {:.2} ms: {:?}",
                        s.src,
                        rel(s.at),
                        sniffer0.answer(&s)
                    )
                })
                .collect();
            panic!(
                "the first refused attempt (port {port}, {:.2} to {:.2} ms after the kill) \
                 drew no RST; SYNs from its port: {seen:?}",
                rel(first.started),
                rel(first.ended)
            )
        });
    assert!(
        rst.at <= first.ended && first.ended - rst.at < Duration::from_millis(500),
        "RST at {:.1} ms after the kill, refusal seen at {:.1} ms",
        rel(rst.at),
        ms(first.ended - killed)
    );
    let before = sniffer0.syns().into_iter().find(|s| s.at < killed).unwrap();
    assert_eq!(sniffer0.answer(&before), Some(Answer::SynAck));
    // After the restart (and a margin for attempts in flight) everything works again.
    let healthy = r.started_in(restarted + Duration::from_millis(50), dropping);
    assert!(healthy.iter().all(|a| a.outcome.is_ok()));
    assert!(healthy.iter().any(|a| a.outcome.backend() == Some("vb1")));

    let during_drop = r.started_in(dropped, accepted);
    let timed_out: Vec<_> = during_drop
        .iter()
        .filter(|a| a.outcome == Outcome::TimedOut)
        .collect();
    assert!(
        (25..=55).contains(&timed_out.len()),
        "{} of {} timed out while vb2 dropped SYNs",
        timed_out.len(),
        during_drop.len()
    );
    // vb2 serves none of them, but for a retransmitted SYN that arrived after the undo.
    assert!(during_drop.iter().all(|a| a.outcome == Outcome::TimedOut
        || a.outcome.backend() != Some("vb2")
        || a.ended >= accepted));
    for a in &timed_out {
        let waited = a.ended - a.started;
        assert!(
            waited >= Duration::from_millis(990) && waited < Duration::from_millis(1500),
            "timed out after {waited:?}"
        );
    }
    assert!(
        drops as usize >= timed_out.len(),
        "nft dropped {drops} SYNs"
    );
    let healthy = r.started_in(healthy_again + Duration::from_millis(50), Instant::now());
    assert!(healthy.iter().all(|a| a.outcome.is_ok()));

    // The sniffer saw each timed-out attempt's SYN, from the client host (as the backend
    // sees connections through the VIP: from the client's own address), and at the time the
    // client sent it: the first timed-out attempt's own SYN (same client port) came within
    // 100 ms of its start. (The first SYN after the fault may be an attempt's that started
    // while the drop rule went in, before `dropped`.) It saw the retransmits too (+1 s)
    // but these came after the timeouts.
    let first_to = timed_out.iter().min_by_key(|a| a.started).unwrap();
    let port = first_to.port.expect("a timed-out attempt has a socket");
    let first_syn = syns
        .iter()
        .find(|s| s.at >= dropped && s.src.port() == port)
        .expect("the first timed-out attempt's SYN was not seen");
    assert_eq!(sniffer.answer(first_syn), Some(Answer::None));
    assert_eq!(
        sniffer.first_answered_after(dropping, |_| true, Answer::None),
        sniffer.first_answered_after(dropping, from_client, Answer::None)
    );
    let unanswered = sniffer
        .first_answered_after(dropping, |_| true, Answer::None)
        .unwrap();
    assert!(unanswered.at <= first_syn.at);
    assert_eq!(first_syn.src.ip(), client);
    assert_eq!(first_syn.dst.port(), RPORT);
    let off = first_syn.at.checked_duration_since(first_to.started);
    assert!(
        matches!(off, Some(d) if d < Duration::from_millis(100)),
        "first SYN at {:.1} ms from the first timed-out attempt's start",
        if first_syn.at >= first_to.started {
            ms(first_syn.at - first_to.started)
        } else {
            -ms(first_to.started - first_syn.at)
        }
    );
    let syns_during = syns
        .iter()
        .filter(|s| s.at >= dropped && s.at < accepted)
        .count();
    assert!(
        syns_during >= timed_out.len(),
        "{syns_during} SYNs for {} timeouts",
        timed_out.len()
    );
    // Successful connections to vb2 were seen too, before the fault.
    let before = syns.iter().filter(|s| s.at < dropped).count();
    let served = r.timeline("vb2").len();
    assert!(before >= served.min(10), "{before} SYNs, {served} served");
    remove_service(vip, family);
}

#[test]
fn load_sees_refused_after_kill_and_timeouts_after_syn_drop_v4() {
    load_sees_faults(Family::V4);
}

#[test]
fn load_sees_refused_after_kill_and_timeouts_after_syn_drop_v6() {
    load_sees_faults(Family::V6);
}

#[test]
fn weight_watcher_sees_ipvsadm_changes() {
    let (lab, vip) = lab_with_service(Family::V4, 2);
    let svc = Family::V4.ipvs(vip.ip(), VPORT);
    let dest = SocketAddr::new(lab.backends[1].addr, RPORT);
    let other = SocketAddr::new(lab.backends[0].addr, RPORT);
    let w = WeightWatcher::start(ServiceKey::tcp(vip.ip(), VPORT), Duration::from_millis(2));
    assert_eq!(w.current(dest), Some(1));
    sleep(Duration::from_millis(100));

    let set = Instant::now();
    sh(&format!("ipvsadm -e -t {svc} -r {dest} -m -w 0"));
    let took = set.elapsed();
    let seen = w
        .wait_for(dest, set, Duration::from_secs(2), |w| w == Some(0))
        .expect("weight 0 not seen");
    // ipvsadm is a process of its own: the change lands somewhere inside its run.
    assert!(
        seen - set <= took + Duration::from_millis(50),
        "seen {:.1} ms after ipvsadm started, which took {:.1} ms",
        ms(seen - set),
        ms(took)
    );

    sh(&format!("ipvsadm -e -t {svc} -r {dest} -m -w 3"));
    let removed_at = Instant::now();
    sh(&format!("ipvsadm -d -t {svc} -r {dest}"));
    let gone = w
        .wait_for(dest, removed_at, Duration::from_secs(2), |w| w.is_none())
        .expect("removal not seen");
    let log = w.stop();
    let span = log.started.elapsed();
    let history: Vec<_> = log.history(dest).into_iter().map(|(_, w)| w).collect();
    assert_eq!(history, vec![Some(1), Some(0), Some(3), None]);
    assert_eq!(
        log.history(other).len(),
        1,
        "the other backend never changed"
    );
    assert_eq!(log.first_time(dest, quarantined), Some(seen));
    assert_eq!(
        log.first_time_after(dest, removed_at, quarantined),
        Some(gone)
    );
    assert_eq!(log.state_at(other, Instant::now()), Some(1));
    // It polled all along: at least one dump per 10 ms of its run (a 2 ms period; a
    // dump takes longer under a slow emulator, so no fixed count).
    let wanted = span.as_millis() / 10;
    assert!(
        u128::from(log.polls) >= wanted && log.errors == 0,
        "{} polls ({} errors) in {:.1} ms, wanted {wanted}",
        log.polls,
        log.errors,
        ms(span)
    );
    println!(
        "weight watcher: {} polls, longest gap {:.1} ms",
        log.polls,
        ms(log.max_gap)
    );
    remove_service(vip, Family::V4);
}

#[test]
fn held_connection_survives_killed_listener() {
    require_vm();
    let lab = Lab::new(Family::V4, 1);
    lab.serve_greeting(0, RPORT);
    lab.serve_echo(0, 9090);
    let vip = lab.ipvsadm_service(90, 0, 9090);
    let mut held = hold_connection(vip, Duration::from_secs(2)).expect("holding a connection");
    assert_eq!(held.backend, "vb1");
    assert!(held.alive());
    assert_eq!(lab.kill_server(0), 2, "greeting and echo listeners");
    assert!(
        held.alive(),
        "an accepted connection must outlive its listener"
    );
    let err = hold_connection(vip, Duration::from_secs(2))
        .err()
        .expect("the echo listener is closed");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(lab.restart_server(0), 2);
    let mut again = hold_connection(vip, Duration::from_secs(2)).expect("restarted");
    assert!(again.alive() && held.alive());
    sh("ipvsadm -D -t 198.18.0.10:90");
}

#[test]
fn keepalived_tcp_check_quarantines_and_readmits() {
    let lab = {
        require_vm();
        Lab::new(Family::V4, 2)
    };
    let backends: Vec<SocketAddr> = (0..2).map(|i| lab.serve_greeting(i, RPORT)).collect();
    let vip = SocketAddr::new(lab.vip, VPORT);
    let config = KeepalivedConfig::tcp_check(
        vip,
        backends.clone(),
        Duration::from_millis(100),
        Duration::from_millis(200),
    );
    let w = WeightWatcher::start(config.service(), Duration::from_millis(2));
    let mut k = Keepalived::start("harness", &config);
    k.wait_ready(Duration::from_secs(10));
    let killed = Instant::now();
    lab.kill_server(0);
    let down = w.wait_for(backends[0], killed, Duration::from_secs(5), |w| {
        w == Some(0)
    });
    let restarted = Instant::now();
    lab.restart_server(0);
    let up = w.wait_for(backends[0], restarted, Duration::from_secs(5), |w| {
        w == Some(1)
    });
    let dropped = Instant::now();
    lab.drop_syns(1);
    let down2 = w.wait_for(backends[1], dropped, Duration::from_secs(5), |w| {
        w == Some(0)
    });
    lab.accept_syns(1);
    let log = k.stop();
    let gone = w.wait_for(backends[1], dropped, Duration::from_secs(5), |w| {
        w.is_none()
    });
    println!("{log}");
    let down = down.expect("keepalived did not set weight 0 for a refusing backend");
    assert!(
        down - killed < Duration::from_secs(2),
        "{:?}",
        down - killed
    );
    let up = up.expect("keepalived did not re-admit the restarted backend");
    assert!(
        up - restarted < Duration::from_secs(2),
        "{:?}",
        up - restarted
    );
    let down2 = down2.expect("keepalived did not set weight 0 for a SYN-dropping backend");
    assert!(
        down2 - dropped < Duration::from_secs(2),
        "{:?}",
        down2 - dropped
    );
    assert!(
        gone.is_some(),
        "keepalived left its service behind when it stopped"
    );
    assert!(
        log.contains("TCP_CHECK") || log.contains("TCP connection"),
        "{log}"
    );
}
