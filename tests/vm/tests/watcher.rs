//! The connection watcher against real IPVS: for each scenario, every outcome names the
//! exact real backend. IPv4 and IPv6, on every kernel of the matrix, and with each form
//! of the socket hooks: tp_btf + fentry (what `auto` picks on these kernels) and the
//! classic tracepoints + kprobe.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use vipd::watcher::{Flavour, HookKind, Hooks, Outcome, Probes, Report};
use vipd_common::IPPROTO_TCP;
use vipd_vmtests::{
    lab::{Family, Lab},
    monotonic_ns, require_vm,
    watch::Watch,
};

const RPORT: u16 = 8080;

/// Every hook, the socket hooks in `flavour` (asserted), watching `vips`.
fn watch(vips: &[SocketAddr], flavour: Flavour) -> Watch {
    let mut probes = Probes::load(Hooks::ALL.with_flavour(flavour)).expect("loading probes");
    let socket_hooks = |hook: &str| {
        [
            "inet_sock_set_state",
            "tcp_retransmit_skb",
            "tcp_receive_reset",
            "tcp_connect",
        ]
        .contains(&hook)
    };
    let kinds: Vec<_> = probes
        .attachments()
        .iter()
        .filter(|a| socket_hooks(a.hook))
        .map(|a| a.kind)
        .collect();
    let expected = match flavour {
        Flavour::Classic => [
            HookKind::TracePoint,
            HookKind::TracePoint,
            HookKind::TracePoint,
            HookKind::KProbe,
        ],
        Flavour::Btf | Flavour::Auto => [
            HookKind::BtfTracePoint,
            HookKind::BtfTracePoint,
            HookKind::BtfTracePoint,
            HookKind::FEntry,
        ],
    };
    assert_eq!(kinds, expected, "{}", probes.describe());
    for (i, vip) in vips.iter().enumerate() {
        probes.watch(*vip, IPPROTO_TCP as u8, i as u32).unwrap();
    }
    Watch::new(probes)
}

fn direct_connection_produces_nothing(family: Family, flavour: Flavour) {
    require_vm();
    let lab = Lab::new(family, 1);
    let backend = lab.serve_greeting(0, RPORT);
    let vip = lab.ipvsadm_service(80, 0, RPORT);
    let mut w = watch(&[vip], flavour);
    drop(TcpStream::connect_timeout(&backend, Duration::from_secs(5)).expect("direct connect"));
    // Then one through the VIP, so the absence above is not just a dead watcher.
    drop(TcpStream::connect_timeout(&vip, Duration::from_secs(5)).expect("connect via VIP"));
    let reports = w.until(Duration::from_secs(5), |r| !r.is_empty());
    assert!(!reports.is_empty(), "no report for the VIP connection");
    assert!(
        reports.iter().all(|r| r.vip == vip),
        "a report for the direct connection: {reports:?}"
    );
    assert_eq!(w.correlator.counters().unattributed, 0);
}

fn accepted(family: Family, flavour: Flavour) {
    require_vm();
    let lab = Lab::new(family, 1);
    let backend = lab.serve_greeting(0, RPORT);
    let vip = lab.ipvsadm_service(80, 0, RPORT);
    let mut w = watch(&[vip], flavour);
    let (client, reports) = w.accepted(vip);
    for r in &reports {
        assert_eq!(
            (r.client, r.vip, r.backend),
            (Some(client), vip, Some(backend)),
            "{r:?}"
        );
    }
}

fn refused(family: Family, flavour: Flavour) {
    require_vm();
    let lab = Lab::new(family, 1); // nothing listens on the backend: it answers with RST
    let vip = lab.ipvsadm_service(80, 0, RPORT);
    let backend = SocketAddr::new(lab.backends[0].addr, RPORT);
    let mut w = watch(&[vip], flavour);
    let t0 = monotonic_ns();
    let err = TcpStream::connect_timeout(&vip, Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let reports = w.until(Duration::from_secs(5), |r| !r.is_empty());
    assert_eq!(reports.len(), 1, "{reports:?}");
    let r = &reports[0];
    assert_eq!(
        (r.outcome, r.vip, r.backend),
        (Outcome::Refused, vip, Some(backend))
    );
    let after = Duration::from_nanos(r.ts_ns - t0);
    assert!(
        after < Duration::from_millis(100),
        "Refused {after:?} after connect"
    );
    // The refused socket's CLOSE comes right after; it must not add a ClientAbort.
    assert_eq!(w.until(Duration::from_millis(300), |_| false).len(), 1);
}

fn blackholed(family: Family, flavour: Flavour) {
    require_vm();
    let lab = Lab::new(family, 1);
    let backend = lab.serve_greeting(0, RPORT);
    lab.blackhole(0);
    let vip = lab.ipvsadm_service(80, 0, RPORT);
    let mut w = watch(&[vip], flavour);
    let client_timeout = Duration::from_secs(4);
    let client = std::thread::spawn(move || TcpStream::connect_timeout(&vip, client_timeout));
    let started = Instant::now();
    let retransmit = |r: &[Report]| {
        r.iter()
            .any(|r| matches!(r.outcome, Outcome::SynRetransmit(_)))
    };
    let reports = w.until(client_timeout, retransmit);
    let seen_after = started.elapsed();
    let first = reports
        .iter()
        .find(|r| matches!(r.outcome, Outcome::SynRetransmit(1)))
        .unwrap_or_else(|| panic!("{reports:?}"));
    assert_eq!((first.vip, first.backend), (vip, Some(backend)));
    assert!(
        seen_after < client_timeout,
        "SYN retransmit seen only after {seen_after:?}"
    );
    let err = client
        .join()
        .unwrap()
        .expect_err("the blackholed connect must fail");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

/// One test per scenario, family and hook form.
macro_rules! scenario {
    ($scenario:ident: $($name:ident = $family:ident, $flavour:ident;)*) => {
        $(
            #[test]
            fn $name() {
                $scenario(Family::$family, Flavour::$flavour);
            }
        )*
    };
}

scenario!(direct_connection_produces_nothing:
    direct_connection_produces_no_events_v4 = V4, Auto;
    direct_connection_produces_no_events_v6 = V6, Auto;
    direct_connection_produces_no_events_v4_classic = V4, Classic;
    direct_connection_produces_no_events_v6_classic = V6, Classic;
);
scenario!(accepted:
    accepted_is_established_then_closed_v4 = V4, Auto;
    accepted_is_established_then_closed_v6 = V6, Auto;
    accepted_is_established_then_closed_v4_classic = V4, Classic;
    accepted_is_established_then_closed_v6_classic = V6, Classic;
);
scenario!(refused:
    refused_within_100ms_names_backend_v4 = V4, Auto;
    refused_within_100ms_names_backend_v6 = V6, Auto;
    refused_within_100ms_names_backend_v4_classic = V4, Classic;
    refused_within_100ms_names_backend_v6_classic = V6, Classic;
);
scenario!(blackholed:
    blackholed_syn_retransmit_before_client_timeout_v4 = V4, Auto;
    blackholed_syn_retransmit_before_client_timeout_v6 = V6, Auto;
    blackholed_syn_retransmit_before_client_timeout_v4_classic = V4, Classic;
    blackholed_syn_retransmit_before_client_timeout_v6_classic = V6, Classic;
);
