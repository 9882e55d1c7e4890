use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{text::float, Metrics};
use crate::health::State;

/// Every kind of update once, some twice.
pub(super) fn example() -> Metrics {
    let m = Metrics::new();
    m.config_loaded(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    m.reload(true, UNIX_EPOCH + Duration::from_millis(1_700_000_100_500));
    m.reload(false, UNIX_EPOCH + Duration::from_secs(1_700_000_200));
    m.set_backend("web", "198.18.1.2:8080", 100, State::Healthy);
    // A new state replaces the old series.
    m.set_backend("web", "198.18.1.2:8080", 0, State::Quarantined);
    m.set_drained("web", "198.18.1.2:8080", false);
    m.set_sticky("web", "198.18.1.2:8080", Some(3));
    m.set_sticky("web", "198.18.1.3:8080", Some(1));
    // Not counted any more: the series goes.
    m.set_sticky("web", "198.18.1.3:8080", None);
    m.set_panic("web", true);
    m.outcome("web", "198.18.1.2:8080", "refused");
    m.outcome("web", "198.18.1.2:8080", "refused");
    m.outcome("we\"b", "a\\b\nc", "established");
    m.quarantine("web", "198.18.1.2:8080", "refused");
    m.fault_to_quarantine("refused", 0.0015);
    m.fault_to_quarantine("refused", 3.0);
    m.set_watcher_mode("partial");
    m.set_lost_events(5);
    m.set_unattributed(1);
    m.set_decode_failures(2);
    m.reconcile_ops("ipvs", 2);
    m.reconcile_ops("ipvs", 1);
    m.reconcile_failure();
    m.weight_write_failures(3);
    m.weight_write_failures(1);
    m.rtnetlink_skipped(3);
    m.dns_resolution("web", "web.lab", "ok", false);
    m.dns_resolution("web", "web.lab", "failed", true);
    m
}

pub(super) const EXAMPLE: &str = concat!(
    r#"# HELP vipd_build_info Always 1; the labels say which vipd this is.
# TYPE vipd_build_info gauge
vipd_build_info{version=""#,
    env!("CARGO_PKG_VERSION"),
    r#""} 1
# HELP vipd_config_last_reload_successful 1 if the last load of the config (at start or on reload) was taken, 0 if rejected.
# TYPE vipd_config_last_reload_successful gauge
vipd_config_last_reload_successful 0
# HELP vipd_config_last_reload_success_timestamp_seconds When the running config was taken (at start or on reload), Unix time.
# TYPE vipd_config_last_reload_success_timestamp_seconds gauge
vipd_config_last_reload_success_timestamp_seconds 1700000100.5
# HELP vipd_reloads_total Config reloads, applied or rejected.
# TYPE vipd_reloads_total counter
vipd_reloads_total{result="ok"} 1
vipd_reloads_total{result="rejected"} 1
# HELP vipd_backend_state A backend's health state: one series per state, 1 for the current one.
# TYPE vipd_backend_state gauge
vipd_backend_state{service="web",backend="198.18.1.2:8080",state="healthy"} 0
vipd_backend_state{service="web",backend="198.18.1.2:8080",state="failing"} 0
vipd_backend_state{service="web",backend="198.18.1.2:8080",state="quarantined"} 1
vipd_backend_state{service="web",backend="198.18.1.2:8080",state="probing"} 0
vipd_backend_state{service="web",backend="198.18.1.2:8080",state="slow-start"} 0
# HELP vipd_backend_weight A backend's effective weight, as written to the data plane.
# TYPE vipd_backend_weight gauge
vipd_backend_weight{service="web",backend="198.18.1.2:8080"} 0
# HELP vipd_backend_drained 1 while an operator's drain (vipd drain) holds the backend at weight 0.
# TYPE vipd_backend_drained gauge
vipd_backend_drained{service="web",backend="198.18.1.2:8080"} 0
# HELP vipd_backend_sticky_clients Clients the service's persistence keeps on the backend now (socket data plane).
# TYPE vipd_backend_sticky_clients gauge
vipd_backend_sticky_clients{service="web",backend="198.18.1.2:8080"} 3
# HELP vipd_service_panic 1 while every backend of the service is out and weights are restored.
# TYPE vipd_service_panic gauge
vipd_service_panic{service="web"} 1
# HELP vipd_outcomes_total Connection outcomes and check results, per backend.
# TYPE vipd_outcomes_total counter
vipd_outcomes_total{service="we\"b",backend="a\\b\nc",outcome="established"} 1
vipd_outcomes_total{service="web",backend="198.18.1.2:8080",outcome="refused"} 2
# HELP vipd_quarantines_total Backends taken out of rotation, by cause.
# TYPE vipd_quarantines_total counter
vipd_quarantines_total{service="web",backend="198.18.1.2:8080",cause="refused"} 1
# HELP vipd_fault_to_quarantine_seconds Time from the kernel seeing a fault to the backend's weight-0 write.
# TYPE vipd_fault_to_quarantine_seconds histogram
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.001"} 0
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.002"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.005"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.01"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.02"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.05"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.1"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.2"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.5"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="1"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="1.5"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="2"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="5"} 2
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="10"} 2
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="+Inf"} 2
vipd_fault_to_quarantine_seconds_sum{cause="refused"} 3.0015
vipd_fault_to_quarantine_seconds_count{cause="refused"} 2
# HELP vipd_watcher_mode How passive detection runs: 1 for the current mode (full: every hook attached; partial: TCP only; degraded: none, active checks only; xdp: the XDP program).
# TYPE vipd_watcher_mode gauge
vipd_watcher_mode{mode="full"} 0
vipd_watcher_mode{mode="partial"} 1
vipd_watcher_mode{mode="degraded"} 0
vipd_watcher_mode{mode="xdp"} 0
# HELP vipd_watcher_degraded 1 while some kernel hook of the connection watcher is not attached.
# TYPE vipd_watcher_degraded gauge
vipd_watcher_degraded 1
# HELP vipd_events_lost_total Kernel events lost to a full ring buffer.
# TYPE vipd_events_lost_total counter
vipd_events_lost_total 5
# HELP vipd_events_unattributed_total Kernel events that could not be attributed to a backend.
# TYPE vipd_events_unattributed_total counter
vipd_events_unattributed_total 1
# HELP vipd_event_decode_failures_total Kernel records that could not be decoded (and were dropped).
# TYPE vipd_event_decode_failures_total counter
vipd_event_decode_failures_total 2
# HELP vipd_events_shed_total Success and close records not queued while the ring was nearly full, to keep room for failures.
# TYPE vipd_events_shed_total counter
vipd_events_shed_total 0
# HELP vipd_udp_sockets_destroyed_total Connected UDP sockets the socket plane destroyed because their backend was taken out of its service.
# TYPE vipd_udp_sockets_destroyed_total counter
vipd_udp_sockets_destroyed_total 0
# HELP vipd_reconcile_operations_total Writes made to bring the kernel to the desired state, by kind.
# TYPE vipd_reconcile_operations_total counter
vipd_reconcile_operations_total{kind="ipvs"} 3
vipd_reconcile_operations_total{kind="rtnetlink"} 0
# HELP vipd_reconcile_failures_total Full applies of the config that failed or had writes refused by the kernel.
# TYPE vipd_reconcile_failures_total counter
vipd_reconcile_failures_total 1
# HELP vipd_weight_write_failures_total Backend weight writes that failed (each is tried again).
# TYPE vipd_weight_write_failures_total counter
vipd_weight_write_failures_total 4
# HELP vipd_rtnetlink_messages_skipped_total Rtnetlink messages in the kernel's answers that could not be decoded and were skipped.
# TYPE vipd_rtnetlink_messages_skipped_total counter
vipd_rtnetlink_messages_skipped_total 3
# HELP vipd_dns_resolutions_total Resolutions of DNS backends' names, by result: ok, empty, nxdomain, failed.
# TYPE vipd_dns_resolutions_total counter
vipd_dns_resolutions_total{service="web",name="web.lab",result="failed"} 1
vipd_dns_resolutions_total{service="web",name="web.lab",result="ok"} 1
# HELP vipd_dns_stale 1 while a DNS backend's set is the last good one, kept because the last resolution failed or was empty.
# TYPE vipd_dns_stale gauge
vipd_dns_stale{service="web",name="web.lab"} 1
"#
);

#[test]
fn render_is_the_text_exposition_format() {
    let text = example().render();
    assert_eq!(text, EXAMPLE, "\n{text}");
}

#[test]
fn a_fresh_registry_has_every_family_and_no_reload_yet() {
    let text = Metrics::new().render();
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let in_example = EXAMPLE.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(families, in_example, "{text}");
    assert!(
        text.contains("\nvipd_config_last_reload_successful 0\n"),
        "{text}"
    );
    assert!(text.contains("\nvipd_watcher_degraded 0\n"), "{text}");
    assert!(!text.contains("vipd_backend_state{"), "{text}");
}

#[test]
fn the_last_reload_decides_success_and_only_success_moves_the_time() {
    let m = Metrics::new();
    m.config_loaded(UNIX_EPOCH + Duration::from_secs(100));
    let text = m.render();
    assert!(
        text.contains("\nvipd_config_last_reload_successful 1\n"),
        "{text}"
    );
    assert!(text.contains("\nvipd_config_last_reload_success_timestamp_seconds 100\n"));
    m.reload(false, UNIX_EPOCH + Duration::from_secs(200));
    let text = m.render();
    assert!(
        text.contains("\nvipd_config_last_reload_successful 0\n"),
        "{text}"
    );
    assert!(text.contains("\nvipd_config_last_reload_success_timestamp_seconds 100\n"));
    m.reload(true, SystemTime::UNIX_EPOCH + Duration::from_secs(300));
    let text = m.render();
    assert!(
        text.contains("\nvipd_config_last_reload_successful 1\n"),
        "{text}"
    );
    assert!(text.contains("\nvipd_config_last_reload_success_timestamp_seconds 300\n"));
}

#[test]
fn forgetting_drops_the_series() {
    let m = example();
    m.set_backend("web", "198.18.1.3:8080", 100, State::Healthy);
    m.forget_backend("web", "198.18.1.2:8080");
    let text = m.render();
    assert!(!text.contains("198.18.1.2:8080"), "{text}");
    assert!(text.contains(r#"vipd_backend_weight{service="web",backend="198.18.1.3:8080"} 100"#));
    assert!(text.contains(
        r#"vipd_backend_state{service="web",backend="198.18.1.3:8080",state="healthy"} 1"#
    ));
    m.forget_service("web");
    let text = m.render();
    assert!(!text.contains("service=\"web\""), "{text}");
    // Another service's series and the per-cause histogram stay.
    assert!(text.contains(r#"service="we\"b""#), "{text}");
    assert!(text.contains("vipd_fault_to_quarantine_seconds_count{cause=\"refused\"} 2"));
}

#[test]
fn odd_observations() {
    let m = Metrics::new();
    m.fault_to_quarantine("rst", -1.0);
    m.fault_to_quarantine("rst", f64::NAN);
    m.fault_to_quarantine("rst", 100.0);
    let text = m.render();
    assert!(text.contains("vipd_fault_to_quarantine_seconds_bucket{cause=\"rst\",le=\"0.001\"} 1"));
    assert!(text.contains("vipd_fault_to_quarantine_seconds_bucket{cause=\"rst\",le=\"10\"} 1"));
    assert!(text.contains("vipd_fault_to_quarantine_seconds_bucket{cause=\"rst\",le=\"+Inf\"} 2"));
    assert!(text.contains("vipd_fault_to_quarantine_seconds_sum{cause=\"rst\"} 100\n"));
    assert_eq!(float(f64::INFINITY), "+Inf");
    assert_eq!(float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(float(f64::NAN), "NaN");
    assert_eq!(float(0.005), "0.005");
}
