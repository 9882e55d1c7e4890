//! The connection watcher on a fwmark service: IPVS schedules connections by their
//! firewall mark (set by an nftables rule), so their destination is no VIP and the
//! kernel follows them from IPVS's choice on. Every outcome names the exact real
//! backend and the mark. IPv4 and IPv6, on every kernel of the matrix.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use vipd::watcher::{Hooks, Outcome, Probes};
use vipd_vmtests::{
    lab::{Family, Lab},
    monotonic_ns, require_vm,
    watch::Watch,
};

const MARK: u32 = 7;
const RPORT: u16 = 8080;

/// Probes watching fwmark service [`MARK`] of `family`.
fn watch(family: Family) -> Watch {
    let mut probes = Probes::load(Hooks::ALL).expect("loading probes");
    let af = match family {
        Family::V4 => libc::AF_INET,
        Family::V6 => libc::AF_INET6,
    };
    probes
        .watch_fwmark(af as u8, MARK, 0)
        .expect("watching the fwmark service");
    Watch::new(probes)
}

fn accepted(family: Family) {
    require_vm();
    let lab = Lab::new(family, 1);
    let backend = lab.serve_greeting(0, RPORT);
    let dst = lab.ipvsadm_fwmark_service(MARK, 80, 0, RPORT);
    let mut w = watch(family);
    let (client, reports) = w.accepted(dst);
    for r in &reports {
        assert_eq!(
            (r.client, r.vip, r.backend, r.fwmark),
            (Some(client), dst, Some(backend), Some(MARK)),
            "{r:?}"
        );
    }
    assert_eq!(w.correlator.counters().unattributed, 0);
}

fn refused(family: Family) {
    require_vm();
    let lab = Lab::new(family, 1); // nothing listens on the backend: it answers with RST
    let dst = lab.ipvsadm_fwmark_service(MARK, 80, 0, RPORT);
    let backend = SocketAddr::new(lab.backends[0].addr, RPORT);
    let mut w = watch(family);
    let t0 = monotonic_ns();
    let err = TcpStream::connect_timeout(&dst, Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let reports = w.until(Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(
        (r.outcome, r.vip, r.backend, r.fwmark),
        (Outcome::Refused, dst, Some(backend), Some(MARK))
    );
    let after = Duration::from_nanos(r.ts_ns - t0);
    assert!(
        after < Duration::from_millis(100),
        "Refused {after:?} after connect"
    );
}

fn blackholed(family: Family) {
    require_vm();
    let lab = Lab::new(family, 1);
    let backend = lab.serve_greeting(0, RPORT);
    lab.blackhole(0);
    let dst = lab.ipvsadm_fwmark_service(MARK, 80, 0, RPORT);
    let mut w = watch(family);
    let client_timeout = Duration::from_secs(4);
    let client = std::thread::spawn(move || TcpStream::connect_timeout(&dst, client_timeout));
    let reports = w.until(client_timeout, |r| {
        r.iter()
            .any(|r| matches!(r.outcome, Outcome::SynRetransmit(_)))
    });
    let first = reports
        .iter()
        .find(|r| matches!(r.outcome, Outcome::SynRetransmit(1)))
        .unwrap_or_else(|| panic!("no SYN retransmit before the client's timeout: {reports:?}"));
    assert_eq!(
        (first.vip, first.backend, first.fwmark),
        (dst, Some(backend), Some(MARK))
    );
    let err = client
        .join()
        .unwrap()
        .expect_err("the blackholed connect must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

/// Without the fwmark watch, the same connections produce nothing: the kernel filters
/// them out (their destination is no watched VIP).
#[test]
fn unwatched_fwmark_service_produces_no_events() {
    require_vm();
    let lab = Lab::new(Family::V4, 1);
    lab.serve_greeting(0, RPORT);
    let dst = lab.ipvsadm_fwmark_service(MARK, 80, 0, RPORT);
    let mut probes = Probes::load(Hooks::ALL).expect("loading probes");
    let other = lab.ipvsadm_service(81, 0, RPORT);
    probes.watch(other, libc::IPPROTO_TCP as u8, 0).unwrap();
    drop(TcpStream::connect_timeout(&dst, Duration::from_secs(5)).expect("connect"));
    // Then one through the watched VIP, so the absence above is not a dead watcher.
    drop(TcpStream::connect_timeout(&other, Duration::from_secs(5)).expect("connect"));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut saw_other = false;
    while Instant::now() < deadline && !saw_other {
        match probes.next_event() {
            Some(Ok(e)) => {
                assert_eq!(
                    e.fwmark(),
                    None,
                    "event of the unwatched fwmark service: {e:?}"
                );
                saw_other = true;
            }
            Some(Err(e)) => panic!("undecodable event: {e}"),
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    assert!(saw_other, "no event for the watched VIP");
}

#[test]
fn fwmark_accepted_is_established_then_closed_v4() {
    accepted(Family::V4);
}
#[test]
fn fwmark_accepted_is_established_then_closed_v6() {
    accepted(Family::V6);
}
#[test]
fn fwmark_refused_within_100ms_names_backend_v4() {
    refused(Family::V4);
}
#[test]
fn fwmark_refused_within_100ms_names_backend_v6() {
    refused(Family::V6);
}
#[test]
fn fwmark_blackholed_syn_retransmit_names_backend_v4() {
    blackholed(Family::V4);
}
#[test]
fn fwmark_blackholed_syn_retransmit_names_backend_v6() {
    blackholed(Family::V6);
}
