//! The core on paused time with a fake data plane.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::{fake_plane::FakePlane, Core, Measured, ProbeRequest, Restored, DRAIN_RESYNC, RESYNC};
use crate::{
    config::Config,
    daemon::{
        checks::{CheckKind, CheckResult},
        config_file::Rejected,
        metrics::Metrics,
        view::{BackendView, DaemonView},
    },
    model::{BackendId, IcmpCode, Outcome, Protocol, Report, ServiceKey, Vip},
    plane::{PlaneStatus, UdpFinding},
};

pub(super) const SEC: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// A TCP service "web" with backends 1..=`n` at weight 10.
pub(super) fn web_with(n: u8) -> String {
    let backends: Vec<String> = (1..=n)
        .map(|i| format!("{{ address = \"198.18.1.{i}:8080\", weight = 10 }}"))
        .collect();
    format!(
        "[[service]]\nname = \"web\"\nvip = \"198.18.0.10:80\"\nbackend = [{}]\n",
        backends.join(", ")
    )
}

const DNS: &str = r#"
[[service]]
name = "dns"
vip = "198.18.0.10:53"
protocol = "udp"
backend = [{ address = "198.18.1.1:8080" }, { address = "198.18.1.2:8080" }]
[service.health]
silence_window = "1s"
"#;

pub(super) fn config(text: &str) -> Config {
    crate::config::parse("vipd.toml", text).unwrap()
}

fn vip(protocol: Protocol, port: u16) -> Vip {
    Vip::new(
        protocol,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 10)), port),
    )
}

pub(super) fn web() -> ServiceKey {
    ServiceKey::Addr(vip(Protocol::Tcp, 80))
}

fn dns() -> ServiceKey {
    ServiceKey::Addr(vip(Protocol::Udp, 53))
}

/// Backend n: 198.18.1.n:8080.
pub(super) fn b(n: u8) -> BackendId {
    BackendId::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, n)), 8080)
}

/// `outcome` of a connection to `service`'s VIP on `backend`, seen by the kernel at
/// `ts_ns`, its first SYN at `syn_ns`.
pub(super) fn report(
    service: ServiceKey,
    outcome: Outcome,
    backend: BackendId,
    ts_ns: u64,
    syn_ns: u64,
) -> Report {
    let vip = service.vip().unwrap();
    Report {
        ts_ns,
        client: Some("198.18.9.9:40000".parse().unwrap()),
        vip: vip.addr,
        backend: Some(SocketAddr::from(backend)),
        outcome,
        syn_ns,
        protocol: vip.ip_proto(),
        fwmark: None,
    }
}

/// An ICMP port unreachable for a datagram to a backend.
fn port_unreachable() -> Outcome {
    Outcome::Unreachable(IcmpCode {
        v6: false,
        icmp_type: 3,
        code: 3,
    })
}

/// A probation probe's result for `backend` of "web".
fn probe_result(backend: BackendId, passed: bool) -> CheckResult {
    CheckResult {
        service: web(),
        dest: backend,
        kind: CheckKind::Probe,
        passed,
        detail: if passed {
            "connected in 0.2ms"
        } else {
            "refused"
        }
        .to_owned(),
    }
}

pub(super) fn refused(backend: BackendId, ts_ns: u64) -> Report {
    report(web(), Outcome::Refused, backend, ts_ns, ts_ns)
}

/// The core on `text`, started on `plane`.
pub(super) struct Rig {
    pub(super) core: Core,
    pub(super) plane: FakePlane,
    metrics: Arc<Metrics>,
}

impl Rig {
    pub(super) fn new(text: &str) -> Self {
        Self::with(text, FakePlane::default())
    }

    pub(super) fn with(text: &str, plane: FakePlane) -> Self {
        Self::restored(text, plane, Restored::default())
    }

    /// Started as after a restart that brought `restored` back.
    pub(super) fn restored(text: &str, mut plane: FakePlane, restored: Restored) -> Self {
        let metrics = Arc::new(Metrics::default());
        let mut core = Core::new(
            config(text),
            "vipd.toml".to_owned(),
            restored,
            metrics.clone(),
            Instant::now(),
            SystemTime::UNIX_EPOCH,
            7,
        );
        core.start(&mut plane, Instant::now()).unwrap();
        Rig {
            core,
            plane,
            metrics,
        }
    }

    /// Runs the timers due now and writes what changed, the kernel's clock at
    /// `kernel_ns`.
    pub(super) fn turn(&mut self, kernel_ns: u64) -> Vec<Measured> {
        let now = Instant::now();
        self.core.tick(now);
        self.core.flush(&mut self.plane, now, &|| kernel_ns)
    }

    fn view(&mut self) -> DaemonView {
        self.core.view(Instant::now(), PlaneStatus::default())
    }

    pub(super) fn backend(&mut self, n: u8) -> BackendView {
        let addr = SocketAddr::from(b(n)).to_string();
        self.view().services[0]
            .backends
            .iter()
            .find(|v| v.addr == addr)
            .cloned()
            .unwrap()
    }

    pub(super) fn state(&mut self, n: u8) -> (String, u32) {
        let v = self.backend(n);
        (v.state, v.weight)
    }

    pub(super) fn reload(&mut self, loaded: Result<Config, Rejected>) -> bool {
        self.core.reload(
            loaded,
            &mut self.plane,
            Instant::now(),
            SystemTime::UNIX_EPOCH,
        )
    }

    pub(super) fn metric(&self, line: &str) -> bool {
        self.metrics.render().lines().any(|l| l == line)
    }
}

pub(super) fn state(s: &str, w: u32) -> (String, u32) {
    (s.to_owned(), w)
}

#[tokio::test(start_paused = true)]
async fn start_applies_the_config_and_reports_on_every_service() {
    let r = Rig::new(&web_with(2));
    assert_eq!(r.plane.calls("apply"), 1);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(10)));
    assert_eq!(r.plane.weight(web(), b(2)), Some(Some(10)));
    assert_eq!(r.plane.watched, vec![web()]);
    assert!(r.metric("vipd_reconcile_operations_total{kind=\"fake\"} 2"));
}

#[tokio::test(start_paused = true)]
async fn a_refused_report_quarantines_the_backend() {
    let mut r = Rig::new(&web_with(2));
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    assert!(r.core.wants_persist() && r.core.wants_publish());
    r.turn(SEC);
    assert_eq!(r.plane.calls("write"), 1);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    assert_eq!(r.plane.weight(web(), b(2)), Some(Some(10)));
    assert_eq!(r.state(1), state("quarantined", 0));
    assert_eq!(r.backend(1).outcomes.refused, 1);
    assert!(r.core.take_probes().is_empty());
    assert!(r.metric(
        "vipd_quarantines_total{service=\"web\",backend=\"198.18.1.1:8080\",cause=\"refused\"} 1"
    ));
    // Nothing dirty: the next turn writes nothing.
    r.turn(SEC);
    assert_eq!(r.plane.calls("write"), 1);
    // A report on a VIP no service has is nobody's.
    let mut stray = refused(b(2), SEC);
    stray.vip = "198.18.0.99:80".parse().unwrap();
    r.core.on_report(&stray, Instant::now());
    r.turn(SEC);
    assert_eq!(r.plane.calls("write"), 1);
    assert_eq!(r.state(2), state("healthy", 10));
}

#[tokio::test(start_paused = true)]
async fn the_quarantine_ends_in_a_probe_and_a_pass_readmits_with_slow_start() {
    let mut r = Rig::new(&web_with(2));
    let t0 = Instant::now();
    r.core.on_report(&refused(b(1), SEC), t0);
    r.turn(SEC);
    // The first quarantine: 5 s, plus up to 10% jitter.
    let until = r.core.next_deadline().unwrap();
    assert!(until >= t0 + Duration::from_secs(5) && until <= t0 + Duration::from_millis(5500));
    tokio::time::advance(until - t0 - Duration::from_millis(1)).await;
    r.turn(SEC);
    assert!(r.core.take_probes().is_empty());
    assert_eq!(r.state(1), state("quarantined", 0));
    tokio::time::advance(Duration::from_millis(1)).await;
    r.turn(SEC);
    assert_eq!(
        r.core.take_probes(),
        vec![ProbeRequest {
            service: web(),
            dest: b(1),
            timeout: Duration::from_secs(1),
            udp: None,
        }]
    );
    assert_eq!(r.state(1), state("probing", 0));
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));

    r.core.on_check(probe_result(b(1), true), Instant::now());
    r.turn(SEC);
    assert_eq!(r.state(1), state("slow-start", 1));
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(1)));
    // The ramp: the weights go up step by step to the configured 10.
    let mut seen = vec![1];
    for _ in 0..20 {
        let Some(next) = r.core.next_deadline() else {
            break;
        };
        if r.state(1).0 == "healthy" {
            break;
        }
        tokio::time::advance(next - Instant::now()).await;
        r.turn(SEC);
        if let Some(Some(w)) = r.plane.weight(web(), b(1)) {
            if seen.last() != Some(&w) {
                seen.push(w);
            }
        }
    }
    assert_eq!(r.state(1), state("healthy", 10));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&10));
    assert!(Instant::now() - t0 <= Duration::from_millis(5500) + Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn fault_to_quarantine_runs_from_the_kernel_time_to_the_confirmed_write() {
    let mut r = Rig::new(&web_with(2));
    r.core.on_report(&refused(b(1), 5 * SEC), Instant::now());
    let log = r.plane.log.clone();
    let measured = r.core.flush(&mut r.plane, Instant::now(), &|| {
        log.borrow_mut().push("clock");
        5 * SEC + 3 * MS
    });
    // The clock is read once the plane has written the weight.
    assert_eq!(*r.plane.log.borrow(), ["apply", "write", "clock"]);
    assert_eq!(
        measured,
        vec![Measured {
            service: web(),
            backend: b(1),
            cause: "refused",
            seconds: 0.003,
        }]
    );
    assert!(r.metric("vipd_fault_to_quarantine_seconds_count{cause=\"refused\"} 1"));

    // A plane that says when the backend left rotation (before its write returned):
    // measured to that moment, not to the end of the write.
    let mut r = Rig::new(&web_with(2));
    r.plane.out_at_ns = Some(5 * SEC + MS);
    r.core.on_report(&refused(b(1), 5 * SEC), Instant::now());
    let measured = r.turn(5 * SEC + 9 * MS);
    assert_eq!(measured.len(), 1);
    assert!((measured[0].seconds - 0.001).abs() < 1e-9, "{measured:?}");

    // An unanswered SYN's fault begins with the connection's first SYN.
    let mut r = Rig::new(&web_with(2));
    let syn = report(web(), Outcome::SynRetransmit(1), b(2), 5 * SEC, 4 * SEC);
    r.core.on_report(&syn, Instant::now());
    let measured = r.turn(5 * SEC + 3 * MS);
    assert_eq!(measured.len(), 1);
    assert_eq!(measured[0].cause, "syn_retransmit");
    assert!((measured[0].seconds - 1.003).abs() < 1e-9, "{measured:?}");
    // A failing probe quarantines again with no report: nothing to measure.
    let until = r.core.next_deadline().unwrap();
    tokio::time::advance(until - Instant::now()).await;
    r.turn(6 * SEC);
    assert_eq!(r.core.take_probes().len(), 1);
    r.core.on_check(probe_result(b(2), false), Instant::now());
    assert!(r.turn(7 * SEC).is_empty());
    assert_eq!(r.state(2), state("quarantined", 0));
}

#[tokio::test(start_paused = true)]
async fn a_rejected_reload_keeps_the_running_config_and_services() {
    let mut r = Rig::new(&web_with(2));
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    r.turn(SEC);

    // The plane cannot apply it: rolled back, and the plane told what it holds.
    r.plane.fail_apply = true;
    assert!(!r.reload(Ok(config(&web_with(3)))));
    assert_eq!(r.core.config(), &config(&web_with(2)));
    assert_eq!(r.core.services().by_key[&web()].dests.len(), 2);
    assert_eq!(r.view().services[0].backends.len(), 2);
    assert_eq!(r.state(1), state("quarantined", 0));
    assert_eq!(r.plane.calls("restore"), 1);
    assert_eq!(r.plane.held.len(), 2);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    let last = r.view().last_reload.unwrap();
    assert!(!last.ok);
    assert_eq!(last.message, "bad reply from the kernel: the test refuses");
    assert!(r.metric("vipd_reloads_total{result=\"rejected\"} 1"));
    assert!(r.core.take_checks_changed());

    // A config that changes the data plane is refused before the plane sees it.
    r.plane.fail_apply = false;
    let applies = r.plane.calls("apply");
    let xdp = format!(
        "dataplane = \"xdp\"\n[xdp]\ninterface = \"eth0\"\n{}",
        web_with(2)
    );
    assert!(!r.reload(Ok(config(&xdp))));
    assert_eq!(r.plane.calls("apply"), applies);
    let last = r.view().last_reload.unwrap();
    assert!(last.message.contains("needs a restart"), "{last:?}");

    // So is a file that does not load.
    let bad = Rejected {
        lines: vec!["vipd.toml:3:1: unknown key `x`".to_owned()],
    };
    assert!(!r.reload(Err(bad)));
    assert_eq!(
        r.view().last_reload.unwrap().message,
        "vipd.toml:3:1: unknown key `x`\n1 error in the config"
    );
    assert!(r.metric("vipd_reloads_total{result=\"rejected\"} 3"));
    assert_eq!(r.state(1), state("quarantined", 0));
}

#[tokio::test(start_paused = true)]
async fn an_accepted_reload_keeps_unchanged_backends_health() {
    let mut r = Rig::new(&web_with(2));
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    r.turn(SEC);
    r.core.take_checks_changed();

    assert!(r.reload(Ok(config(&web_with(3)))));
    assert_eq!(r.core.config(), &config(&web_with(3)));
    assert_eq!(r.state(1), state("quarantined", 0));
    assert_eq!(r.state(3), state("healthy", 10));
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    assert_eq!(r.plane.weight(web(), b(3)), Some(Some(10)));
    let last = r.view().last_reload.unwrap();
    assert!(last.ok);
    assert_eq!(last.message, "applied with 1 fake writes");
    assert!(r.core.take_checks_changed());
    assert!(r.core.wants_persist());
    assert_eq!(r.plane.watched, vec![web()]);

    // Removing a backend drops it and its metric series; the others keep their state.
    assert!(r.reload(Ok(config(&web_with(2)))));
    assert_eq!(r.view().services[0].backends.len(), 2);
    assert_eq!(r.plane.weight(web(), b(3)), None);
    assert_eq!(r.state(1), state("quarantined", 0));
    assert!(!r.metrics.render().contains("198.18.1.3:8080"));
}

#[tokio::test(start_paused = true)]
async fn a_plane_error_on_the_fast_path_brings_the_full_apply_forward() {
    let mut r = Rig::new(&web_with(2));
    // Without an error the next full apply is 30 s away.
    tokio::time::advance(Duration::from_secs(1)).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 1);

    r.plane.fail_writes = true;
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    assert!(r.turn(SEC).is_empty(), "a failed write measures nothing");
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(10)));
    r.plane.fail_writes = false;
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 2);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
}

#[tokio::test(start_paused = true)]
async fn a_failed_weight_write_is_retried_with_backoff_and_measured_when_it_lands() {
    let mut r = Rig::new(&web_with(2));
    r.plane.fail_writes = true;
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    assert!(r.turn(SEC).is_empty());
    assert_eq!(r.plane.calls("write"), 1);
    // The retry is a deadline of its own: 50 ms, then 100 ms, ...
    let t0 = Instant::now();
    assert_eq!(r.core.next_deadline(), Some(t0 + super::WRITE_RETRY_FIRST));
    r.turn(SEC);
    assert_eq!(r.plane.calls("write"), 1, "not before it is due");
    tokio::time::advance(super::WRITE_RETRY_FIRST).await;
    r.turn(SEC);
    assert_eq!(r.plane.calls("write"), 2);
    assert_eq!(
        r.core.next_deadline(),
        Some(Instant::now() + 2 * super::WRITE_RETRY_FIRST)
    );
    // The kernel takes writes again: the next retry lands and is measured from the fault.
    r.plane.fail_writes = false;
    tokio::time::advance(2 * super::WRITE_RETRY_FIRST).await;
    let measured = r.turn(SEC + 200 * MS);
    assert_eq!(r.plane.calls("write"), 3);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    assert_eq!(measured.len(), 1);
    assert!((measured[0].seconds - 0.2).abs() < 1e-9, "{measured:?}");
    assert!(r.metric("vipd_weight_write_failures_total 2"));
    // Nothing left to retry.
    let quarantine_end = r.core.next_deadline().unwrap();
    assert!(quarantine_end > Instant::now() + Duration::from_secs(1));
}

#[test]
fn write_retries_back_off_to_a_ceiling() {
    use super::{write_retry_delay, WRITE_RETRY_MAX};
    assert_eq!(write_retry_delay(1), Duration::from_millis(50));
    assert_eq!(write_retry_delay(2), Duration::from_millis(100));
    assert_eq!(write_retry_delay(7), Duration::from_millis(3200));
    assert_eq!(write_retry_delay(8), WRITE_RETRY_MAX);
    assert_eq!(write_retry_delay(u32::MAX), WRITE_RETRY_MAX);
}

#[tokio::test(start_paused = true)]
async fn draining_backends_bring_the_next_apply_to_two_seconds() {
    let t0 = Instant::now();
    let draining = FakePlane {
        draining: true,
        ..FakePlane::default()
    };
    let mut r = Rig::with(&web_with(2), draining);
    tokio::time::advance(DRAIN_RESYNC - Duration::from_millis(1)).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 1);
    tokio::time::advance(Duration::from_millis(1)).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 2);

    // Drained: back to the slow resync.
    r.plane.draining = false;
    tokio::time::advance(DRAIN_RESYNC).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 3);
    tokio::time::advance(DRAIN_RESYNC).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 3);
    tokio::time::advance(t0 + DRAIN_RESYNC * 2 + RESYNC - Instant::now()).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 4);
}

#[tokio::test(start_paused = true)]
async fn a_silent_udp_backend_is_quarantined_out_of_the_plane() {
    let mut r = Rig::new(DNS);
    assert_eq!(
        r.core.silence_window(vip(Protocol::Udp, 53)),
        Some(Duration::from_secs(1))
    );
    assert_eq!(r.core.silence_window(vip(Protocol::Tcp, 53)), None);
    let silent = report(
        dns(),
        Outcome::Silent(Duration::from_secs(2)),
        b(1),
        9 * SEC,
        7 * SEC,
    );
    let findings = vec![
        UdpFinding {
            vip: vip(Protocol::Udp, 53),
            backend: b(1),
            sent: 5,
            replied: 3,
            new_replies: 0,
            silent: Some(silent),
        },
        UdpFinding {
            vip: vip(Protocol::Udp, 53),
            backend: b(2),
            sent: 4,
            replied: 4,
            new_replies: 1,
            silent: None,
        },
    ];
    r.core.on_udp(findings, Instant::now());
    let measured = r.turn(9 * SEC);
    // `udp_stale_flows = "expire"` (the default): out of the plane, not at weight 0.
    assert_eq!(r.plane.weight(dns(), b(1)), Some(None));
    assert_eq!(r.plane.weight(dns(), b(2)), Some(Some(1)));
    assert_eq!(measured.len(), 1);
    assert_eq!(measured[0].cause, "silent");
    assert!((measured[0].seconds - 2.0).abs() < 1e-9);
    let v = r.backend(1);
    assert_eq!(
        (
            v.outcomes.udp_sent,
            v.outcomes.udp_replies,
            v.outcomes.silences
        ),
        (5, 3, 1)
    );

    // An ICMP error is a refusal too (the other backend is the last one in rotation).
    let icmp = port_unreachable();
    r.core.on_report(
        &report(dns(), icmp, b(2), 10 * SEC, 10 * SEC),
        Instant::now(),
    );
    r.turn(10 * SEC);
    assert_eq!(r.state(2), state("failing", 1));
}

#[tokio::test(start_paused = true)]
async fn the_planes_lost_events_are_counted_and_shown() {
    let plane = FakePlane {
        lost: Some(5),
        ..FakePlane::default()
    };
    let mut r = Rig::with(&web_with(2), plane);
    r.core.read_counters(&mut r.plane);
    assert!(r.metric("vipd_events_lost_total 5"));
    assert_eq!(r.view().watcher.lost_events, 5);
}

#[tokio::test(start_paused = true)]
async fn a_udp_service_that_keeps_stale_flows_holds_its_quarantined_backend_at_zero() {
    let keep = DNS.replace(
        "protocol = \"udp\"\n",
        "protocol = \"udp\"\nudp_stale_flows = \"keep\"\n",
    );
    let mut r = Rig::new(&keep);
    let icmp = port_unreachable();
    r.core
        .on_report(&report(dns(), icmp, b(1), SEC, SEC), Instant::now());
    r.turn(SEC);
    assert_eq!(r.plane.weight(dns(), b(1)), Some(Some(0)));
    assert_eq!(r.state(1), state("quarantined", 0));
}

#[path = "metrics_tests.rs"]
mod metrics_tests;
