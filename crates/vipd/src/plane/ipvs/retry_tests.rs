use std::time::Duration;

use tokio::time::{advance, Instant};

use super::*;

const STEP: Duration = Duration::from_millis(100);

/// Drives the schedule as the daemon's loop does (a look every `STEP` on the paused
/// clock, an attempt whenever one is due, each failing) for `span`, and returns the
/// seconds from start of every attempt.
async fn attempts_within(span: Duration) -> Vec<u64> {
    let start = Instant::now();
    let mut schedule = RetrySchedule::first(start);
    let mut made = Vec::new();
    while start.elapsed() < span {
        advance(STEP).await;
        let now = Instant::now();
        if schedule.due(now) {
            made.push((now - start).as_secs());
            schedule = schedule.after(now);
        }
    }
    made
}

#[tokio::test(start_paused = true)]
async fn waits_double_from_one_second_up_to_a_minute() {
    let made = attempts_within(Duration::from_secs(300)).await;
    assert_eq!(made, [1, 3, 7, 15, 31, 63, 123, 183, 243]);
    let waits: Vec<u64> = made.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
}

#[tokio::test(start_paused = true)]
async fn nothing_is_due_before_its_time() {
    let first = RetrySchedule::first(Instant::now());
    advance(RETRY_FIRST - Duration::from_millis(1)).await;
    assert!(!first.due(Instant::now()));
    advance(Duration::from_millis(1)).await;
    assert!(first.due(Instant::now()));
    // The next wait counts from the attempt, not from when it was due.
    advance(Duration::from_millis(500)).await;
    let late = Instant::now();
    let second = first.after(late);
    assert!(!second.due(late + Duration::from_millis(1999)));
    assert!(second.due(late + Duration::from_secs(2)));
}

#[test]
fn the_wait_stays_at_the_cap() {
    let now = Instant::now();
    let mut s = RetrySchedule::first(now);
    for _ in 0..40 {
        s = s.after(now);
    }
    assert!(!s.due(now + RETRY_MAX - Duration::from_millis(1)));
    assert!(s.due(now + RETRY_MAX));
}
