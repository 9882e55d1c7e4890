//! Operator commands on the health machine, on paused time.

use tokio::time::Instant;

use super::{operator::OperatorError, test_util::*, Policy, Signal, State, Transition};

#[tokio::test(start_paused = true)]
async fn a_forced_quarantine_ignores_the_ejection_limit_and_returns_by_probation() {
    // At 10 % of 3 backends one may be ejected; the operator takes out a second one.
    let policy = Policy {
        max_ejection_percent: 10,
        ..exact()
    };
    let mut s = service(policy, &[100, 100, 100]);
    let now = Instant::now();
    assert_eq!(s.observe(now, d(1), Signal::Refused).len(), 1);
    let t = s.force_quarantine(now, d(2), Some(secs(30))).unwrap();
    assert_eq!(
        t,
        vec![Transition::Quarantined {
            dest: d(2),
            ejections: 1,
            duration: secs(30),
            cause: Signal::Operator,
        }]
    );
    assert_eq!(weights(&s, now), vec![0, 0, 100]);
    // It ends like any quarantine: a probe is asked for.
    let later = after(secs(30)).await;
    let t = s.tick(later);
    assert!(t.contains(&Transition::ProbeWanted { dest: d(2) }), "{t:?}");
    assert_eq!(s.state(&d(2)), Some(State::Probing));
}

#[tokio::test(start_paused = true)]
async fn without_a_duration_a_forced_quarantine_takes_the_next_backoff() {
    let mut s = service(exact(), &[100, 100]);
    let now = Instant::now();
    let t = s.force_quarantine(now, d(1), None).unwrap();
    let [Transition::Quarantined { duration, .. }] = t.as_slice() else {
        panic!("{t:?}");
    };
    assert_eq!(*duration, exact().base_ejection);
}

#[tokio::test(start_paused = true)]
async fn quarantining_twice_or_an_unknown_backend_changes_nothing() {
    let mut s = service(exact(), &[100, 100]);
    let now = Instant::now();
    s.force_quarantine(now, d(1), Some(secs(60))).unwrap();
    let later = after(secs(20)).await;
    assert_eq!(
        s.force_quarantine(later, d(1), Some(secs(5))),
        Err(OperatorError::AlreadyQuarantined("40s".into()))
    );
    assert_eq!(
        s.force_quarantine(later, d(9), None),
        Err(OperatorError::UnknownBackend)
    );
    assert_eq!(s.weights(later).get(&d(1)), Some(&0));
}

#[tokio::test(start_paused = true)]
async fn readmit_ends_a_quarantine_into_slow_start() {
    let mut s = service(exact(), &[100, 100]);
    let now = Instant::now();
    s.observe(now, d(1), Signal::Refused);
    assert_eq!(s.state(&d(1)), Some(State::Quarantined));
    let t = s.force_readmit(now, d(1)).unwrap();
    assert_eq!(t, vec![Transition::Readmitted { dest: d(1) }]);
    assert_eq!(s.state(&d(1)), Some(State::SlowStart));
    assert_eq!(weights(&s, now), vec![10, 100]);
    assert_eq!(
        s.force_readmit(now, d(1)),
        Err(OperatorError::NotEjected("slow-start"))
    );
    assert_eq!(
        s.force_readmit(now, d(2)),
        Err(OperatorError::NotEjected("healthy"))
    );
}

#[tokio::test(start_paused = true)]
async fn readmit_clears_a_failing_backend_held_in_rotation() {
    // Two backends: the never-zero rule keeps the second failing one in rotation, and
    // with nothing healthy the service is in panic until it is re-admitted.
    let mut s = service(exact(), &[100, 100]);
    let now = Instant::now();
    s.observe(now, d(1), Signal::Refused);
    s.observe(now, d(2), Signal::Refused);
    assert_eq!(s.state(&d(2)), Some(State::Failing));
    assert!(s.in_panic());
    assert_eq!(
        s.force_readmit(now, d(2)),
        Ok(vec![Transition::PanicExited])
    );
    assert_eq!(s.state(&d(2)), Some(State::Healthy));
}
