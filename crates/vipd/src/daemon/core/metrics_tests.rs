//! What the core tells the metrics: reloads, failed writes and applies, backend states,
//! the watcher's mode and the plane's counters.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::model::Counters;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test(start_paused = true)]
async fn reloads_set_success_and_its_time() {
    let mut r = Rig::new(&web_with(2));
    assert!(r.metric("vipd_config_last_reload_successful 1"));
    let now = Instant::now();
    assert!(r
        .core
        .reload(Ok(config(&web_with(3))), &mut r.plane, now, at(1000)));
    assert!(r.metric("vipd_config_last_reload_successful 1"));
    assert!(r.metric("vipd_config_last_reload_success_timestamp_seconds 1000"));

    let bad = Rejected {
        lines: vec!["vipd.toml:3:1: unknown key `x`".to_owned()],
    };
    assert!(!r.core.reload(Err(bad), &mut r.plane, now, at(2000)));
    assert!(r.metric("vipd_config_last_reload_successful 0"));
    assert!(r.metric("vipd_config_last_reload_success_timestamp_seconds 1000"));
    assert!(r.metric("vipd_reloads_total{result=\"ok\"} 1"));
    assert!(r.metric("vipd_reloads_total{result=\"rejected\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn failed_and_incomplete_applies_count_as_reconcile_failures() {
    let mut r = Rig::new(&web_with(2));
    assert!(r.metric("vipd_reconcile_failures_total 0"));
    r.plane.fail_apply = true;
    tokio::time::advance(RESYNC).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert!(r.metric("vipd_reconcile_failures_total 1"));

    r.plane.fail_apply = false;
    r.plane.refused = 2;
    tokio::time::advance(RESYNC).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert!(r.metric("vipd_reconcile_failures_total 2"));

    r.plane.refused = 0;
    tokio::time::advance(RESYNC).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 4);
    assert!(r.metric("vipd_reconcile_failures_total 2"));
}

#[tokio::test(start_paused = true)]
async fn weight_write_failures_are_counted() {
    let mut r = Rig::new(&web_with(3));
    r.plane.fail_writes = true;
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    r.turn(SEC);
    assert!(r.metric("vipd_weight_write_failures_total 1"));

    // A write that went through in part: the plane says how many were refused.
    r.plane.fail_writes = false;
    r.plane.failed_writes = 2;
    r.core.on_report(&refused(b(2), SEC), Instant::now());
    r.turn(SEC);
    assert!(r.metric("vipd_weight_write_failures_total 3"));
}

#[tokio::test(start_paused = true)]
async fn every_state_has_a_series_and_the_current_one_is_1() {
    let mut r = Rig::new(&web_with(2));
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    r.turn(SEC);
    r.view();
    let series = |state: &str| {
        format!(
            "vipd_backend_state{{service=\"web\",backend=\"198.18.1.1:8080\",state=\"{state}\"}}"
        )
    };
    assert!(r.metric(&format!("{} 1", series("quarantined"))));
    for other in ["healthy", "failing", "probing", "slow-start"] {
        assert!(r.metric(&format!("{} 0", series(other))), "{other}");
    }
    assert!(r.metric(
        "vipd_backend_state{service=\"web\",backend=\"198.18.1.2:8080\",state=\"healthy\"} 1"
    ));
}

#[tokio::test(start_paused = true)]
async fn the_watcher_mode_follows_the_plane() {
    let mut r = Rig::new(&web_with(1));
    r.core.plane_mode("full");
    assert!(r.metric("vipd_watcher_mode{mode=\"full\"} 1"));
    r.core
        .plane_mode("degraded: event ring buffer failed (test)");
    assert!(r.metric("vipd_watcher_mode{mode=\"full\"} 0"));
    assert!(r.metric("vipd_watcher_mode{mode=\"degraded\"} 1"));
    assert!(r.metric("vipd_watcher_degraded 1"));
}

#[tokio::test(start_paused = true)]
async fn the_planes_decode_failures_are_exported() {
    let plane = FakePlane {
        counters: Counters {
            decode_failures: 4,
            unattributed: 2,
            udp_sockets_destroyed: 3,
            ..Counters::default()
        },
        ..FakePlane::default()
    };
    let mut r = Rig::with(&web_with(1), plane);
    r.core.read_counters(&mut r.plane);
    assert!(r.metric("vipd_event_decode_failures_total 4"));
    assert!(r.metric("vipd_events_unattributed_total 2"));
    assert!(r.metric("vipd_udp_sockets_destroyed_total 3"));
}

#[tokio::test(start_paused = true)]
async fn rtnetlink_messages_skipped_by_applies_are_counted() {
    let plane = FakePlane {
        skipped: 2,
        ..FakePlane::default()
    };
    // The start's apply skipped 2, and so does each later one.
    let mut r = Rig::with(&web_with(1), plane);
    assert!(r.metric("vipd_rtnetlink_messages_skipped_total 2"));
    tokio::time::advance(super::super::RESYNC).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert!(r.metric("vipd_rtnetlink_messages_skipped_total 4"));
    r.plane.skipped = 0;
    tokio::time::advance(super::super::RESYNC).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert!(r.metric("vipd_rtnetlink_messages_skipped_total 4"));
}

/// IPVS answers a weight write with ENOMEM when the kernel is short of memory; no test
/// can provoke that reliably in a VM, so a fake plane refuses the writes the same way
/// (per destination, nothing changed): retried with backoff, each refusal counted, the
/// full apply brought forward, and the quarantine measured once a retry lands.
#[tokio::test(start_paused = true)]
async fn enomem_from_a_weight_write_is_retried_with_backoff_and_counted() {
    use super::super::WRITE_RETRY_FIRST as FIRST;
    const SEC: u64 = 1_000_000_000;
    let mut r = Rig::new(&web_with(3));
    r.plane.refuse_writes = true;
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    assert!(r.turn(SEC).is_empty());
    assert_eq!(
        r.plane.weight(web(), b(1)),
        Some(Some(10)),
        "nothing changed"
    );
    assert!(r.metric("vipd_weight_write_failures_total 1"));
    // The full apply is due at once (the next housekeeping) ...
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 2);
    // ... which the short kernel would refuse too: the fake plane's apply holds
    // everything, so refuse again after it to see the retries alone.
    r.plane.held.insert((web(), b(1)), Some(10));
    // Retries at 50 ms, then 100 ms, 200 ms after each failure.
    for (attempt, wait) in [(2, FIRST), (3, 2 * FIRST), (4, 4 * FIRST)] {
        let before = r.plane.calls("write");
        tokio::time::advance(wait - Duration::from_millis(1)).await;
        r.turn(SEC);
        assert_eq!(
            r.plane.calls("write"),
            before,
            "attempt {attempt} too early"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        r.turn(SEC);
        assert_eq!(r.plane.calls("write"), before + 1, "attempt {attempt}");
        assert!(r.metric(&format!("vipd_weight_write_failures_total {attempt}")));
    }
    // Memory again: the next retry (400 ms on) lands and is measured from the fault.
    r.plane.refuse_writes = false;
    tokio::time::advance(8 * FIRST).await;
    let measured = r.turn(2 * SEC);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    assert_eq!(measured.len(), 1, "{measured:?}");
    assert!((measured[0].seconds - 1.0).abs() < 1e-9, "{measured:?}");
    assert!(r.metric("vipd_weight_write_failures_total 4"));
    assert_eq!(r.state(2), state("healthy", 10));
}
