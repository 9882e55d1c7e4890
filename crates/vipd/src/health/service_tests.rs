//! The state machine on paused time: thresholds, backoff, probation, slow start, the
//! safety limits, panic, reloads and deadlines.

use std::time::Duration;

use tokio::time::Instant;

use super::{test_util::*, Policy, ServiceHealth, Signal, State, Transition, PROBE_REISSUE};

use Signal::{CheckFailed, CheckPassed, Refused, Success, SynRetransmit};

fn quarantined(n: u8, ejections: u32, secs_: u64, cause: Signal) -> Transition {
    Transition::Quarantined {
        dest: d(n),
        ejections,
        duration: secs(secs_),
        cause,
    }
}

fn held(n: u8, cause: Signal) -> Transition {
    Transition::HeldInRotation { dest: d(n), cause }
}

/// Quarantine duration of a transition.
fn duration_of(t: &[Transition]) -> Duration {
    match t {
        [Transition::Quarantined { duration, .. }] => *duration,
        other => panic!("expected one quarantine, got {other:?}"),
    }
}

/// No probe, no slow start, no jitter: quarantine ends straight in full weight.
fn plain() -> Policy {
    Policy {
        probe: false,
        slow_start: Duration::ZERO,
        ..exact()
    }
}

// ---------------------------------------------------------------------------------------
// Failures and thresholds.

#[tokio::test(start_paused = true)]
async fn the_first_refusal_quarantines_at_once() {
    let mut s = ServiceHealth::new(Policy::default(), &backends(&[100, 100, 100]), 1);
    let now = Instant::now();
    let t = s.observe(now, d(1), Refused);
    let [Transition::Quarantined {
        dest,
        ejections: 1,
        duration,
        cause: Refused,
    }] = t.as_slice()
    else {
        panic!("{t:?}");
    };
    assert_eq!(*dest, d(1));
    // 5s plus up to 10% jitter.
    assert!(
        *duration >= secs(5) && *duration <= ms(5500),
        "{duration:?}"
    );
    assert_eq!(s.state(&d(1)), Some(State::Quarantined));
    assert_eq!(weights(&s, now), [0, 100, 100]);
    assert_eq!(s.next_deadline(), Some(now + *duration));
    // The first SYN retransmission too.
    let t = s.observe(now, d(2), SynRetransmit);
    assert!(
        matches!(
            t.as_slice(),
            [Transition::Quarantined {
                ejections: 1,
                cause: SynRetransmit,
                ..
            }]
        ),
        "{t:?}"
    );
    assert_eq!(weights(&s, now), [0, 0, 100]);
    assert!(!s.in_panic());
}

#[tokio::test(start_paused = true)]
async fn higher_thresholds_need_that_many_consecutive_failures() {
    let p = Policy {
        refuse_threshold: 3,
        retransmit_threshold: 2,
        check_fall: 2,
        ..exact()
    };
    let mut s = service(p, &[1, 1, 1, 1]);
    let now = Instant::now();
    assert!(s.observe(now, d(1), Refused).is_empty());
    assert!(s.observe(now, d(1), Refused).is_empty());
    assert_eq!(
        s.observe(now, d(1), Refused),
        [quarantined(1, 1, 5, Refused)]
    );
    assert!(s.observe(now, d(2), SynRetransmit).is_empty());
    assert_eq!(
        s.observe(now, d(2), SynRetransmit),
        [quarantined(2, 1, 5, SynRetransmit)]
    );
    assert!(s.observe(now, d(3), CheckFailed).is_empty());
    assert_eq!(
        s.observe(now, d(3), CheckFailed),
        [quarantined(3, 1, 5, CheckFailed)]
    );
    // The counters are separate: one of each is not three of one.
    assert!(s.observe(now, d(4), Refused).is_empty());
    assert!(s.observe(now, d(4), SynRetransmit).is_empty());
    assert!(s.observe(now, d(4), CheckFailed).is_empty());
    assert_eq!(s.state(&d(4)), Some(State::Healthy));
    let v = &s.views(now)[3];
    assert_eq!(
        (
            v.consecutive_refusals,
            v.consecutive_retransmits,
            v.consecutive_check_failures,
            v.consecutive_failures
        ),
        (1, 1, 1, 3)
    );
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_connection_counters_and_a_pass_the_check_counter() {
    let p = Policy {
        refuse_threshold: 3,
        retransmit_threshold: 3,
        check_fall: 2,
        ..exact()
    };
    let mut s = service(p, &[1, 1]);
    let now = Instant::now();
    for signal in [Refused, Refused, SynRetransmit, SynRetransmit, Success] {
        assert!(s.observe(now, d(1), signal).is_empty());
    }
    let v = &s.views(now)[0];
    assert_eq!((v.consecutive_refusals, v.consecutive_retransmits), (0, 0));
    assert!(s.observe(now, d(1), Refused).is_empty());
    assert!(s.observe(now, d(1), Refused).is_empty());
    // A passed check says nothing about refusals.
    assert!(s.observe(now, d(1), CheckPassed).is_empty());
    assert_eq!(
        s.observe(now, d(1), Refused),
        [quarantined(1, 1, 5, Refused)]
    );

    assert!(s.observe(now, d(2), CheckFailed).is_empty());
    assert!(s.observe(now, d(2), CheckPassed).is_empty());
    assert!(s.observe(now, d(2), CheckFailed).is_empty());
    // ...and a connection says nothing about checks.
    assert!(s.observe(now, d(2), Success).is_empty());
    assert_eq!(s.views(now)[1].consecutive_check_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn unknown_backends_are_ignored() {
    let mut s = service(exact(), &[1, 1]);
    let now = Instant::now();
    assert!(s.observe(now, d(9), Refused).is_empty());
    assert_eq!(s.state(&d(9)), None);
    assert_eq!(weights(&s, now), [1, 1]);
}

// ---------------------------------------------------------------------------------------
// Backoff and decay.

#[tokio::test(start_paused = true)]
async fn each_ejection_doubles_the_quarantine_up_to_the_maximum() {
    let p = Policy {
        base_ejection: secs(1),
        max_ejection: secs(8),
        ..plain()
    };
    let mut s = service(p, &[1, 1]);
    let mut now = Instant::now();
    for (n, want) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (6, 8)] {
        assert_eq!(
            s.observe(now, d(1), Refused),
            [quarantined(1, n, want, Refused)]
        );
        assert_eq!(s.next_deadline(), Some(now + secs(want)));
        now = after(secs(want)).await;
        assert_eq!(s.tick(now), [Transition::Readmitted { dest: d(1) }]);
        assert_eq!(weights(&s, now), [1, 1]);
    }
    assert_eq!(s.views(now)[0].quarantines, 6);
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_within_ten_percent_of_the_capped_backoff() {
    let p = Policy {
        base_ejection: secs(1),
        max_ejection: secs(8),
        jitter_percent: 10,
        ..plain()
    };
    let mut s = ServiceHealth::new(p, &backends(&[1, 1]), 99);
    let mut now = Instant::now();
    let mut extras = Vec::new();
    for n in 1..=12u32 {
        let want = secs(1u64 << (n - 1).min(3));
        let got = duration_of(&s.observe(now, d(1), Refused));
        assert!(got >= want && got <= want + want / 10, "n={n}: {got:?}");
        extras.push(got - want);
        now = after(got).await;
        assert_eq!(s.tick(now).len(), 1);
    }
    // The jitter is random, not a constant.
    extras.sort();
    extras.dedup();
    assert!(extras.len() > 6, "{extras:?}");
}

#[tokio::test(start_paused = true)]
async fn the_ejection_count_decays_after_max_ejection_at_full_weight() {
    let p = Policy {
        base_ejection: secs(1),
        max_ejection: secs(8),
        ..plain()
    };
    let mut s = service(p, &[1, 1]);
    let mut now = Instant::now();
    for want in [1, 2, 4] {
        assert_eq!(duration_of(&s.observe(now, d(1), Refused)), secs(want));
        now = after(secs(want)).await;
        s.tick(now);
    }
    // Healthy since `now`: the count goes back to 0 after max_ejection (8s).
    let healthy_at = now;
    assert_eq!(s.next_deadline(), Some(healthy_at + secs(8)));
    now = after(secs(7)).await;
    assert!(s.tick(now).is_empty());
    assert_eq!(s.views(now)[0].ejections, 3);
    now = after(secs(1)).await;
    assert!(s.tick(now).is_empty());
    assert_eq!(s.views(now)[0].ejections, 0);
    assert_eq!(s.views(now)[0].quarantines, 3);
    assert_eq!(s.next_deadline(), None);
    assert_eq!(
        s.observe(now, d(1), Refused),
        [quarantined(1, 1, 1, Refused)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failure_restarts_the_decay_clock() {
    let p = Policy {
        refuse_threshold: 2,
        base_ejection: secs(1),
        max_ejection: secs(8),
        ..plain()
    };
    let mut s = service(p, &[1, 1]);
    let mut now = Instant::now();
    s.observe(now, d(1), Refused);
    s.observe(now, d(1), Refused);
    now = after(secs(1)).await;
    s.tick(now);
    now = after(secs(6)).await;
    // One refusal, under the threshold, is still a failure.
    assert!(s.observe(now, d(1), Refused).is_empty());
    assert_eq!(s.next_deadline(), Some(now + secs(8)));
    now = after(secs(4)).await;
    s.tick(now);
    assert_eq!(s.views(now)[0].ejections, 1);
    assert_eq!(duration_of(&s.observe(now, d(1), Refused)), secs(2));
}

// ---------------------------------------------------------------------------------------
// Probation.

#[tokio::test(start_paused = true)]
async fn a_passed_probe_readmits_into_slow_start() {
    let mut s = service(exact(), &[100, 100]);
    let t0 = Instant::now();
    s.observe(t0, d(1), Refused);
    let now = after(ms(4999)).await;
    assert!(s.tick(now).is_empty());
    let now = after(ms(1)).await;
    assert_eq!(s.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    assert_eq!(s.state(&d(1)), Some(State::Probing));
    assert_eq!(weights(&s, now), [0, 100]);
    assert_eq!(s.next_deadline(), Some(now + PROBE_REISSUE));
    assert_eq!(
        s.observe(now, d(1), CheckPassed),
        [Transition::Readmitted { dest: d(1) }]
    );
    assert_eq!(s.state(&d(1)), Some(State::SlowStart));
    assert_eq!(weights(&s, now), [10, 100]);
}

#[tokio::test(start_paused = true)]
async fn a_success_that_changes_nothing_leaves_due_timers_to_the_tick() {
    let mut s = service(exact(), &[100, 100]);
    let t0 = Instant::now();
    s.observe(t0, d(1), Refused);
    let now = after(ms(5000)).await;
    // d(1)'s quarantine is over, but a success of healthy d(2) is not what ends it.
    assert!(s.observe(now, d(2), Success).is_empty());
    assert_eq!(s.state(&d(1)), Some(State::Quarantined));
    assert_eq!(s.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    // A success that does change something (d(2) has a refusal counted, under the
    // threshold) still runs the timers first.
    let p = Policy {
        refuse_threshold: 2,
        ..exact()
    };
    let mut s = service(p, &[100, 100]);
    s.observe(now, d(1), Refused);
    s.observe(now, d(1), Refused);
    s.observe(now, d(2), Refused);
    let later = after(ms(5000)).await;
    assert_eq!(
        s.observe(later, d(2), Success),
        [Transition::ProbeWanted { dest: d(1) }]
    );
    assert_eq!(s.views(later)[1].consecutive_refusals, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_quarantines_again_for_longer() {
    let mut s = service(exact(), &[100, 100]);
    let now = Instant::now();
    s.observe(now, d(1), Refused);
    let now = after(secs(5)).await;
    assert_eq!(s.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    assert_eq!(
        s.observe(now, d(1), CheckFailed),
        [quarantined(1, 2, 10, CheckFailed)]
    );
    assert_eq!(s.next_deadline(), Some(now + secs(10)));
    let now = after(secs(10)).await;
    assert_eq!(s.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    assert_eq!(
        s.observe(now, d(1), CheckFailed),
        [quarantined(1, 3, 20, CheckFailed)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_probe_result_is_asked_for_again() {
    let mut s = service(exact(), &[1, 1]);
    s.observe(Instant::now(), d(1), Refused);
    let now = after(secs(5)).await;
    assert_eq!(s.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    let now = after(PROBE_REISSUE - ms(1)).await;
    assert!(s.tick(now).is_empty());
    let now = after(ms(1)).await;
    assert_eq!(s.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    assert_eq!(s.next_deadline(), Some(now + PROBE_REISSUE));
    // Connection outcomes do not decide probation.
    assert!(s.observe(now, d(1), Success).is_empty());
    assert!(s.observe(now, d(1), Refused).is_empty());
    assert_eq!(s.state(&d(1)), Some(State::Probing));
}

#[tokio::test(start_paused = true)]
async fn rise_consecutive_passes_readmit_and_passes_never_cut_a_quarantine_short() {
    let p = Policy {
        check_rise: 2,
        ..exact()
    };
    let mut s = service(p, &[1, 1]);
    let now = Instant::now();
    s.observe(now, d(1), Refused);
    // Passes during the quarantine: the timer rules.
    for _ in 0..3 {
        assert!(s.observe(now, d(1), CheckPassed).is_empty());
    }
    assert_eq!(s.state(&d(1)), Some(State::Quarantined));
    let now = after(secs(5)).await;
    assert_eq!(s.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    // The probe is the first pass; the next check the second.
    assert!(s.observe(now, d(1), CheckPassed).is_empty());
    assert_eq!(s.state(&d(1)), Some(State::Probing));
    let now = after(secs(2)).await;
    assert_eq!(
        s.observe(now, d(1), CheckPassed),
        [Transition::Readmitted { dest: d(1) }]
    );
}

#[tokio::test(start_paused = true)]
async fn failures_during_a_quarantine_are_counted_but_do_not_extend_it() {
    let mut s = service(exact(), &[1, 1]);
    let t0 = Instant::now();
    s.observe(t0, d(1), Refused);
    let now = after(secs(2)).await;
    for _ in 0..5 {
        assert!(s.observe(now, d(1), Refused).is_empty());
        assert!(s.observe(now, d(1), SynRetransmit).is_empty());
    }
    let v = &s.views(now)[0];
    assert_eq!(v.consecutive_refusals, 6);
    assert_eq!(v.consecutive_retransmits, 5);
    assert_eq!(v.ejections, 1);
    assert_eq!(v.quarantine_left, Some(secs(3)));
    assert_eq!(s.next_deadline(), Some(t0 + secs(5)));
    // Re-admission starts the counters afresh.
    let now = after(secs(3)).await;
    s.tick(now);
    s.observe(now, d(1), CheckPassed);
    assert_eq!(s.views(now)[0].consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn without_probe_the_quarantine_ends_in_readmission() {
    let p = Policy {
        probe: false,
        ..exact()
    };
    let mut s = service(p, &[20, 20]);
    s.observe(Instant::now(), d(1), SynRetransmit);
    let now = after(secs(5)).await;
    assert_eq!(s.tick(now), [Transition::Readmitted { dest: d(1) }]);
    assert_eq!(weights(&s, now), [2, 20]);
}

// ---------------------------------------------------------------------------------------
// Slow start.

#[tokio::test(start_paused = true)]
async fn slow_start_ramps_in_ten_steps_then_recovers() {
    // 9s: one step per second.
    let p = Policy {
        slow_start: secs(9),
        ..plain()
    };
    let mut s = service(p, &[100, 100]);
    s.observe(Instant::now(), d(1), Refused);
    let start = after(secs(5)).await;
    assert_eq!(s.tick(start), [Transition::Readmitted { dest: d(1) }]);
    let mut seen = vec![weights(&s, start)[0]];
    let mut ticks = 0;
    while let Some(next) = s.next_deadline() {
        if s.state(&d(1)) != Some(State::SlowStart) {
            break;
        }
        assert_eq!(next, start + secs(u64::try_from(seen.len()).unwrap()));
        let now = after(next - Instant::now()).await;
        let t = s.tick(now);
        ticks += 1;
        seen.push(weights(&s, now)[0]);
        if seen.len() == 10 {
            assert_eq!(t, [Transition::Recovered { dest: d(1) }]);
        } else {
            assert!(t.is_empty(), "{t:?}");
        }
    }
    assert_eq!(seen, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    assert_eq!(ticks, 9);
    assert_eq!(s.state(&d(1)), Some(State::Healthy));
    assert_eq!(Instant::now(), start + secs(9));
}

#[tokio::test(start_paused = true)]
async fn slow_start_weights_follow_the_clock_between_ticks() {
    let p = Policy {
        slow_start: secs(10),
        ..plain()
    };
    let mut s = service(p, &[15, 15]);
    s.observe(Instant::now(), d(1), Refused);
    let start = after(secs(5)).await;
    s.tick(start);
    // Step k begins at (k-1)/9 of the ramp (rounded up to the nanosecond).
    let at = |k: u32| start + Duration::from_nanos((10_000_000_000 * u64::from(k - 1)).div_ceil(9));
    let ramp: Vec<u32> = (1..=10).map(|k| weights(&s, at(k))[0]).collect();
    assert_eq!(ramp, [2, 3, 5, 6, 8, 9, 11, 12, 14, 15]);
    assert_eq!(weights(&s, at(2) - ms(1))[0], 2);
    assert_eq!(s.next_deadline(), Some(at(2)));
    // Ticking at each deadline always moves on: 9 ticks, each deadline later.
    let mut last = start;
    let mut ticks = 0;
    while s.state(&d(1)) == Some(State::SlowStart) {
        let next = s.next_deadline().unwrap();
        assert!(next > last, "{next:?} after {last:?}");
        last = next;
        ticks += 1;
        s.tick(next);
        assert!(ticks <= 9);
    }
    assert_eq!(ticks, 9);
    assert_eq!(last, start + secs(10));
    assert_eq!(s.state(&d(1)), Some(State::Healthy));
}

#[tokio::test(start_paused = true)]
async fn a_failure_during_slow_start_quarantines_with_the_next_backoff() {
    let mut s = service(exact(), &[100, 100]);
    s.observe(Instant::now(), d(1), Refused);
    let now = after(secs(5)).await;
    s.tick(now);
    s.observe(now, d(1), CheckPassed);
    let now = after(secs(3)).await;
    s.tick(now);
    assert_eq!(s.state(&d(1)), Some(State::SlowStart));
    assert_eq!(
        s.observe(now, d(1), Refused),
        [quarantined(1, 2, 10, Refused)]
    );
    assert_eq!(weights(&s, now), [0, 100]);
}

#[tokio::test(start_paused = true)]
async fn zero_slow_start_readmits_at_full_weight() {
    let p = Policy {
        slow_start: Duration::ZERO,
        ..exact()
    };
    let mut s = service(p, &[100, 100]);
    s.observe(Instant::now(), d(1), Refused);
    let now = after(secs(5)).await;
    s.tick(now);
    assert_eq!(
        s.observe(now, d(1), CheckPassed),
        [Transition::Readmitted { dest: d(1) }]
    );
    assert_eq!(s.state(&d(1)), Some(State::Healthy));
    assert_eq!(weights(&s, now), [100, 100]);
}

// ---------------------------------------------------------------------------------------
// Safety limits and panic.

#[tokio::test(start_paused = true)]
async fn a_small_ejection_percent_still_ejects_one_of_three() {
    for pct in [10, 50] {
        let p = Policy {
            max_ejection_percent: pct,
            ..exact()
        };
        let mut s = service(p, &[100, 100, 100]);
        let now = Instant::now();
        assert_eq!(
            s.observe(now, d(1), Refused),
            [quarantined(1, 1, 5, Refused)]
        );
        assert_eq!(
            s.observe(now, d(2), Refused),
            [held(2, Refused)],
            "pct {pct}"
        );
        assert_eq!(s.state(&d(2)), Some(State::Failing));
        // Held once: later failures say nothing new.
        assert!(s.observe(now, d(2), Refused).is_empty());
        assert_eq!(weights(&s, now), [0, 100, 100]);
        assert!(!s.in_panic());
        // When the first is back, the next failure of the second ejects it.
        let now = after(secs(5)).await;
        s.tick(now);
        s.observe(now, d(1), CheckPassed);
        assert_eq!(
            s.observe(now, d(2), Refused),
            [quarantined(2, 1, 5, Refused)]
        );
    }
}

#[tokio::test(start_paused = true)]
async fn zero_ejection_percent_ejects_nothing() {
    let p = Policy {
        max_ejection_percent: 0,
        ..exact()
    };
    let mut s = service(p, &[1, 1, 1]);
    let now = Instant::now();
    assert_eq!(s.observe(now, d(1), Refused), [held(1, Refused)]);
    assert_eq!(weights(&s, now), [1, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn the_last_backend_with_weight_is_never_quarantined() {
    let mut s = service(exact(), &[100, 50]);
    let now = Instant::now();
    assert_eq!(
        s.observe(now, d(1), Refused),
        [quarantined(1, 1, 5, Refused)]
    );
    // Quarantining the second would leave no weight anywhere: held, and nothing healthy
    // is left, so panic: every backend at its configured weight.
    assert_eq!(
        s.observe(now, d(2), Refused),
        [held(2, Refused), Transition::PanicEntered]
    );
    assert!(s.in_panic());
    assert_eq!(weights(&s, now), [100, 50]);
    // Timers run underneath: the first's quarantine ends, its probe passes, and panic is
    // over; weights follow the states again.
    let now = after(secs(5)).await;
    assert_eq!(s.tick(now), [Transition::ProbeWanted { dest: d(1) }]);
    assert!(s.in_panic());
    assert_eq!(
        s.observe(now, d(1), CheckPassed),
        [
            Transition::Readmitted { dest: d(1) },
            Transition::PanicExited
        ]
    );
    assert_eq!(weights(&s, now), [10, 50]);
}

#[tokio::test(start_paused = true)]
async fn a_lone_backend_is_held_and_the_service_panics() {
    let mut s = service(exact(), &[7]);
    let now = Instant::now();
    assert_eq!(
        s.observe(now, d(1), Refused),
        [held(1, Refused), Transition::PanicEntered]
    );
    assert_eq!(weights(&s, now), [7]);
    assert_eq!(s.observe(now, d(1), Success), [Transition::PanicExited]);
    assert_eq!(s.state(&d(1)), Some(State::Healthy));
}

#[tokio::test(start_paused = true)]
async fn all_three_failing_is_panic_with_no_weight_zero_except_drained() {
    let p = Policy {
        max_ejection_percent: 50,
        ..exact()
    };
    let mut s = service(p, &[100, 100, 100, 0]);
    let now = Instant::now();
    assert_eq!(
        s.observe(now, d(1), Refused),
        [quarantined(1, 1, 5, Refused)]
    );
    assert_eq!(s.observe(now, d(2), Refused), [held(2, Refused)]);
    assert_eq!(
        s.observe(now, d(3), SynRetransmit),
        [held(3, SynRetransmit), Transition::PanicEntered]
    );
    // The quarantined one too; the drained one stays at 0.
    assert_eq!(weights(&s, now), [100, 100, 100, 0]);
    // A success makes a backend healthy: panic is over.
    assert_eq!(s.observe(now, d(2), Success), [Transition::PanicExited]);
    assert_eq!(s.state(&d(2)), Some(State::Healthy));
    assert_eq!(weights(&s, now), [0, 100, 100, 0]);
}

#[tokio::test(start_paused = true)]
async fn all_failing_without_any_ejection_allowed_panics_too() {
    let p = Policy {
        max_ejection_percent: 0,
        ..exact()
    };
    let mut s = service(p, &[3, 2, 1]);
    let now = Instant::now();
    s.observe(now, d(1), Refused);
    s.observe(now, d(2), Refused);
    assert_eq!(
        s.observe(now, d(3), Refused),
        [held(3, Refused), Transition::PanicEntered]
    );
    assert_eq!(weights(&s, now), [3, 2, 1]);
}

#[tokio::test(start_paused = true)]
async fn the_panic_threshold_is_a_share_of_healthy_backends() {
    let p = Policy {
        panic_threshold: 60,
        ..plain()
    };
    let mut s = service(p, &[1, 1, 1, 1]);
    let now = Instant::now();
    // 3 of 4 healthy: 75%.
    assert_eq!(s.observe(now, d(1), Refused).len(), 1);
    assert!(!s.in_panic());
    // 2 of 4: 50% < 60%.
    assert_eq!(
        s.observe(now, d(2), Refused),
        [quarantined(2, 1, 5, Refused), Transition::PanicEntered]
    );
    assert_eq!(weights(&s, now), [1, 1, 1, 1]);
    let now = after(secs(5)).await;
    assert_eq!(
        s.tick(now),
        [
            Transition::Readmitted { dest: d(1) },
            Transition::Readmitted { dest: d(2) },
            Transition::PanicExited
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn drained_backends_have_weight_zero_and_never_count_as_available() {
    let mut s = service(exact(), &[100, 0]);
    let now = Instant::now();
    // The drained one carries no weight, so the only weighted backend is held.
    assert_eq!(
        s.observe(now, d(1), Refused),
        [held(1, Refused), Transition::PanicEntered]
    );
    assert_eq!(weights(&s, now), [100, 0]);
    // A drained backend's own failures quarantine it (nothing changes: weight 0) and do
    // not use up the ejection allowance.
    let mut s = service(
        Policy {
            max_ejection_percent: 50,
            ..exact()
        },
        &[1, 1, 0],
    );
    assert_eq!(
        s.observe(now, d(3), Refused),
        [quarantined(3, 1, 5, Refused)]
    );
    assert_eq!(
        s.observe(now, d(1), Refused),
        [quarantined(1, 1, 5, Refused)]
    );
    assert_eq!(weights(&s, now), [0, 1, 0]);
    // Every backend drained: no panic, all 0.
    let mut s = service(exact(), &[0, 0]);
    assert_eq!(
        s.observe(now, d(1), Refused),
        [quarantined(1, 1, 5, Refused)]
    );
    assert!(!s.in_panic());
    assert_eq!(weights(&s, now), [0, 0]);
}

// ---------------------------------------------------------------------------------------
// Reloads, views, deadlines.

#[tokio::test(start_paused = true)]
async fn a_reload_keeps_states_and_takes_new_weights() {
    let mut s = service(exact(), &[100, 100, 100]);
    let t0 = Instant::now();
    s.observe(t0, d(1), Refused);
    let now = after(secs(1)).await;
    // d1 weight 100 -> 50, d3 removed, d4 added.
    let t = s.update(exact(), &[(d(1), 50), (d(2), 100), (d(4), 30)], now);
    assert!(t.is_empty(), "{t:?}");
    assert_eq!(s.state(&d(1)), Some(State::Quarantined));
    assert_eq!(s.state(&d(3)), None);
    assert_eq!(s.state(&d(4)), Some(State::Healthy));
    assert_eq!(s.next_deadline(), Some(t0 + secs(5)));
    assert_eq!(s.views(now)[0].ejections, 1);
    let w = s.weights(now);
    assert_eq!((w[&d(1)], w[&d(2)], w[&d(4)]), (0, 100, 30));
    // Slow start uses the new weight.
    let now = after(secs(4)).await;
    s.tick(now);
    s.observe(now, d(1), CheckPassed);
    assert_eq!(s.weights(now)[&d(1)], 5);
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_removes_the_last_healthy_backend_panics() {
    let mut s = service(exact(), &[1, 1]);
    let now = Instant::now();
    s.observe(now, d(1), Refused);
    assert_eq!(
        s.update(exact(), &[(d(1), 1)], now),
        [Transition::PanicEntered]
    );
    assert_eq!(weights(&s, now), [1]);
    // Draining a backend by weight 0 counts the same.
    let mut s = service(exact(), &[1, 1]);
    s.observe(now, d(1), Refused);
    assert_eq!(
        s.update(exact(), &[(d(1), 1), (d(2), 0)], now),
        [Transition::PanicEntered]
    );
    assert_eq!(
        s.update(exact(), &[(d(1), 1), (d(2), 3)], now),
        [Transition::PanicExited]
    );
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_turns_probing_off_readmits_at_the_next_tick() {
    let mut s = service(exact(), &[1, 1]);
    s.observe(Instant::now(), d(1), Refused);
    let now = after(secs(5)).await;
    s.tick(now);
    assert_eq!(s.state(&d(1)), Some(State::Probing));
    s.update(plain(), &backends(&[1, 1]), now);
    assert_eq!(s.next_deadline(), Some(now));
    assert_eq!(s.tick(now), [Transition::Readmitted { dest: d(1) }]);
}

#[tokio::test(start_paused = true)]
async fn views_show_state_weights_counters_and_times() {
    let mut s = service(exact(), &[100, 100]);
    let t0 = Instant::now();
    s.observe(t0, d(1), Refused);
    let now = after(secs(2)).await;
    let v = s.views(now);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].dest, d(1));
    assert_eq!(v[0].state, State::Quarantined);
    assert_eq!((v[0].config_weight, v[0].weight), (100, 0));
    assert_eq!((v[0].ejections, v[0].quarantines), (1, 1));
    assert_eq!(v[0].quarantine_left, Some(secs(3)));
    assert_eq!(v[0].since_change, Some(secs(2)));
    assert_eq!(v[1].state, State::Healthy);
    assert_eq!(v[1].since_change, None);
    assert_eq!(v[1].quarantine_left, None);
    let json = serde_json::to_value(&v[0]).unwrap();
    assert_eq!(json["dest"], "198.18.1.1:80");
    assert_eq!(json["state"], "quarantined");
    assert_eq!(json["quarantine_left_ms"], 3000);
    assert_eq!(json["since_change_ms"], 2000);
    assert_eq!(
        serde_json::to_value(State::SlowStart).unwrap(),
        "slow-start"
    );
    assert_eq!(
        serde_json::to_value(Signal::SynRetransmit).unwrap(),
        "syn_retransmit"
    );
}

#[tokio::test(start_paused = true)]
async fn next_deadline_is_the_earliest_pending_timer() {
    let mut s = service(exact(), &[1, 1, 1]);
    assert_eq!(s.next_deadline(), None);
    let t0 = Instant::now();
    s.observe(t0, d(1), Refused);
    assert_eq!(s.next_deadline(), Some(t0 + secs(5)));
    let t1 = after(secs(1)).await;
    s.observe(t1, d(2), Refused);
    assert_eq!(s.next_deadline(), Some(t0 + secs(5)));
    // Probing: the re-ask time.
    let now = after(secs(4)).await;
    s.tick(now);
    assert_eq!(s.next_deadline(), Some(t1 + secs(5)));
    let now = after(secs(1)).await;
    s.tick(now);
    assert_eq!(s.next_deadline(), Some(t0 + secs(5) + PROBE_REISSUE));
    // Slow start: the next step.
    s.observe(now, d(1), CheckPassed);
    s.observe(now, d(2), CheckPassed);
    assert_eq!(
        s.next_deadline(),
        Some(now + Duration::from_nanos(10_000_000_000u64.div_ceil(9)))
    );
    // Healthy again with an ejection count: the decay.
    let end = after(secs(10)).await;
    assert_eq!(s.tick(end).len(), 2);
    assert_eq!(s.next_deadline(), Some(end + secs(300)));
    let now = after(secs(300)).await;
    assert!(s.tick(now).is_empty());
    assert_eq!(s.next_deadline(), None);
    // Ticking early does nothing.
    assert!(s.tick(now).is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_observation_after_a_missed_tick_sees_the_expiry_first() {
    let p = Policy {
        probe: false,
        ..exact()
    };
    let mut s = service(p, &[10, 10]);
    s.observe(Instant::now(), d(1), Refused);
    let now = after(secs(6)).await;
    // The quarantine ended a second ago; the refusal hits the ramping backend.
    assert_eq!(
        s.observe(now, d(1), Refused),
        [
            Transition::Readmitted { dest: d(1) },
            quarantined(1, 2, 10, Refused)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_backend_becomes_healthy_when_its_counters_clear() {
    let p = Policy {
        max_ejection_percent: 0,
        check_fall: 1,
        ..exact()
    };
    let mut s = service(p, &[1, 1]);
    let now = Instant::now();
    s.observe(now, d(1), Refused);
    s.observe(now, d(1), CheckFailed);
    assert_eq!(s.state(&d(1)), Some(State::Failing));
    // A pass clears checks but refusals are still over.
    s.observe(now, d(1), CheckPassed);
    assert_eq!(s.state(&d(1)), Some(State::Failing));
    s.observe(now, d(1), Success);
    assert_eq!(s.state(&d(1)), Some(State::Healthy));
}
