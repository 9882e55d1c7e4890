//! The state across a restart: deadlines and slow start positions survive.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::{test_util::*, PersistedService, Policy, ServiceHealth, Signal, State, Transition};

fn wall0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Saves `s` at `now`/`wall`, through JSON, into a new process `downtime` later whose
/// monotonic clock is unrelated (we keep the paused clock but map it afresh).
fn restart(
    s: &ServiceHealth,
    policy: Policy,
    weights: &[u32],
    now: Instant,
    wall: SystemTime,
    downtime: Duration,
) -> ServiceHealth {
    let saved = s.to_persisted(now, wall);
    let json = serde_json::to_string(&saved).unwrap();
    let back: PersistedService = serde_json::from_str(&json).unwrap();
    assert_eq!(back, saved);
    ServiceHealth::from_persisted(policy, &backends(weights), &back, now, wall + downtime, 11)
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) <= ms(1)
}

#[tokio::test(start_paused = true)]
async fn a_quarantine_survives_a_restart_with_the_same_deadline() {
    let mut s = service(exact(), &[100, 100, 100]);
    let t0 = Instant::now();
    s.observe(t0, d(1), Signal::Refused);
    let now = after(ms(1250)).await;
    let r = restart(&s, exact(), &[100, 100, 100], now, wall0(), ms(500));
    assert_eq!(r.state(&d(1)), Some(State::Quarantined));
    let left = r.views(now)[0].quarantine_left.unwrap();
    assert!(close(left, ms(3250)), "{left:?}");
    assert!(close(r.next_deadline().unwrap() - now, ms(3250)));
    assert_eq!(r.weights(now)[&d(1)], 0);
    let v = &r.views(now)[0];
    assert_eq!((v.ejections, v.quarantines), (1, 1));
    // The backoff goes on from there.
    let mut r = r;
    let now = after(ms(3250)).await;
    assert_eq!(r.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    assert!(matches!(
        r.observe(now, d(1), Signal::CheckFailed).as_slice(),
        [Transition::Quarantined { ejections: 2, .. }]
    ));
}

#[tokio::test(start_paused = true)]
async fn slow_start_goes_on_from_the_same_point() {
    let p = Policy {
        slow_start: secs(9),
        probe: false,
        ..exact()
    };
    let mut s = service(p.clone(), &[100, 100]);
    s.observe(Instant::now(), d(1), Signal::Refused);
    let start = after(secs(5)).await;
    s.tick(start);
    let now = after(ms(3500)).await;
    s.tick(now);
    assert_eq!(s.weights(now)[&d(1)], 40);
    let r = restart(&s, p, &[100, 100], now, wall0(), secs(1));
    assert_eq!(r.state(&d(1)), Some(State::SlowStart));
    // 4.5s into the ramp now: step 5.
    assert_eq!(r.weights(now)[&d(1)], 50);
    let next = r.next_deadline().unwrap();
    assert!(close(next - now, ms(500)), "{:?}", next - now);
    let mut r = r;
    let end = after(ms(4500)).await;
    assert_eq!(r.tick(end), [Transition::Recovered { dest: d(1) }]);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_passed_during_the_restart_is_handled_by_the_next_tick() {
    let mut s = service(exact(), &[1, 1]);
    let now = Instant::now();
    s.observe(now, d(1), Signal::Refused);
    let mut r = restart(&s, exact(), &[1, 1], now, wall0(), secs(60));
    assert!(r.next_deadline().unwrap() <= now);
    assert_eq!(r.state(&d(1)), Some(State::Quarantined));
    assert_eq!(r.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
}

#[tokio::test(start_paused = true)]
async fn a_backend_waiting_for_its_probe_is_probed_again() {
    let mut s = service(exact(), &[1, 1]);
    s.observe(Instant::now(), d(1), Signal::Refused);
    let now = after(secs(5)).await;
    s.tick(now);
    let mut r = restart(&s, exact(), &[1, 1], now, wall0(), secs(1));
    assert_eq!(r.state(&d(1)), Some(State::Probing));
    assert_eq!(r.next_deadline(), Some(now));
    assert_eq!(r.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    // With probing now off: re-admitted at the next tick instead.
    let mut r = restart(
        &s,
        Policy {
            probe: false,
            ..exact()
        },
        &[1, 1],
        now,
        wall0(),
        secs(1),
    );
    assert_eq!(r.tick(now), [Transition::Readmitted { dest: d(1) }]);
}

#[tokio::test(start_paused = true)]
async fn removed_backends_are_ignored_and_new_ones_start_healthy() {
    let mut s = service(exact(), &[1, 1, 1]);
    let now = Instant::now();
    s.observe(now, d(3), Signal::Refused);
    let saved = s.to_persisted(now, wall0());
    let r = ServiceHealth::from_persisted(
        exact(),
        &[(d(1), 1), (d(2), 1), (d(4), 1)],
        &saved,
        now,
        wall0(),
        3,
    );
    assert_eq!(r.state(&d(3)), None);
    assert_eq!(r.state(&d(4)), Some(State::Healthy));
    assert_eq!(r.next_deadline(), None);
}

#[tokio::test(start_paused = true)]
async fn panic_is_restored_and_the_format_is_stable() {
    let mut s = service(exact(), &[1, 1]);
    let now = Instant::now();
    s.observe(now, d(1), Signal::Refused);
    s.observe(now, d(2), Signal::Refused);
    assert!(s.in_panic());
    let saved = s.to_persisted(now, wall0());
    let json = serde_json::to_value(&saved).unwrap();
    assert_eq!(json["panic"], true);
    assert_eq!(json["backends"][0]["address"], "198.18.1.1");
    assert_eq!(json["backends"][0]["port"], 80);
    assert_eq!(json["backends"][0]["state"], "quarantined");
    assert_eq!(
        json["backends"][0]["quarantined_until_ms"],
        1_700_000_005_000u64
    );
    assert_eq!(json["backends"][1]["state"], "failing");
    let r = restart(&s, exact(), &[1, 1], now, wall0(), ms(10));
    assert!(r.in_panic());
    assert_eq!(r.state(&d(2)), Some(State::Failing));
    // An older record with only the essentials still loads.
    let minimal: PersistedService = serde_json::from_str(
        r#"{"backends":[{"address":"198.18.1.2","port":80,"state":"healthy"}]}"#,
    )
    .unwrap();
    let r = ServiceHealth::from_persisted(exact(), &backends(&[1, 1]), &minimal, now, wall0(), 1);
    assert_eq!(r.state(&d(2)), Some(State::Healthy));
}

/// A hostile or corrupt record: times far in the future and counters beyond any
/// threshold are clamped to what the config allows, never acted on as written.
#[tokio::test(start_paused = true)]
async fn a_planted_record_is_clamped_to_what_the_config_allows() {
    let now = Instant::now();
    let wall = wall0();
    let wall_ms = 1_700_000_000_000u64;
    let far = wall_ms + 10 * 365 * 24 * 3600 * 1000;
    let text = format!(
        r#"{{"backends": [
        {{"address": "198.18.1.1", "port": 80, "state": "quarantined",
          "quarantined_until_ms": {far}, "ejections": 4000000000,
          "refusals": 99, "retransmits": 99, "check_failures": 99}},
        {{"address": "198.18.1.2", "port": 80, "state": "slow-start",
          "slow_start_since_ms": {far}, "last_change_ms": {far}, "clean_since_ms": {far}}},
        {{"address": "198.18.1.3", "port": 80, "state": "slow-start",
          "slow_start_since_ms": 1}}
        ]}}"#
    );
    let saved: PersistedService = serde_json::from_str(&text).unwrap();
    let p = exact();
    let mut s =
        ServiceHealth::from_persisted(p.clone(), &backends(&[100, 100, 100]), &saved, now, wall, 1);
    // Quarantined for at most max_ejection, not ten years.
    let left = s.views(now)[0].quarantine_left.unwrap();
    assert_eq!(left, p.max_ejection);
    let v = &s.views(now)[0];
    assert_eq!(v.ejections, super::persist::MAX_RESTORED_EJECTIONS);
    // Counters stay below the thresholds: one more refusal is what quarantines.
    assert_eq!(v.consecutive_refusals, p.refuse_threshold - 1);
    // A slow start "since the future" starts now; one from long ago is over at once.
    assert_eq!(s.state(&d(2)), Some(State::SlowStart));
    assert!(s.views(now)[1].since_change.is_some_and(|d| d.is_zero()));
    assert_eq!(s.weights(now)[&d(2)], 10);
    assert_eq!(
        s.next_deadline().map(|t| t <= now + p.slow_start),
        Some(true)
    );
    s.tick(now);
    assert_eq!(s.state(&d(3)), Some(State::Healthy));
    // And the ten-year quarantine ends when max_ejection says.
    let later = after(p.max_ejection).await;
    let t = s.tick(later);
    assert!(t.contains(&Transition::ProbeWanted { dest: d(1) }), "{t:?}");
}

/// A health record written when backends were (address, port) pairs names the same
/// backends, and a record written now has the same shape.
#[test]
fn a_record_of_address_and_port_names_the_backend() {
    let old = r#"{"panic":false,"backends":[
        {"address":"198.18.1.2","port":80,"state":"healthy","refusals":1},
        {"address":"fd00:18::3","port":53,"state":"failing"}]}"#;
    let saved: PersistedService = serde_json::from_str(old).unwrap();
    let dests: Vec<String> = saved
        .backends
        .iter()
        .map(|b| b.dest().to_string())
        .collect();
    assert_eq!(dests, ["198.18.1.2:80", "[fd00:18::3]:53"]);
    assert_eq!(saved.backends[0].dest(), d(2));
    let again = serde_json::to_value(&saved).unwrap();
    assert_eq!(again["backends"][1]["address"], "fd00:18::3");
    assert_eq!(again["backends"][1]["port"], 53);
    assert_eq!(again["backends"][0]["refusals"], 1);
}
