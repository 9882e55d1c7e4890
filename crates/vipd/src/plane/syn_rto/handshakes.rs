//! A VIP's recent handshake times (first SYN to ESTABLISHED, from the reports the
//! correlator already makes) and the adaptive initial SYN timeout taken from their p99.

use std::{collections::VecDeque, time::Duration};

use crate::config::AutoRto;

/// Handshakes kept per VIP: the p99 is the 10th slowest of the last 1,000.
pub const SAMPLES: usize = 1_000;
/// Handshakes older than this no longer count.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Fewer handshakes than this in the window: no p99 yet (the timeout stays where it is,
/// at the ceiling to begin with).
pub const MIN_SAMPLES: usize = 20;

/// The last [`SAMPLES`] handshake times of one VIP, with when they completed.
#[derive(Debug, Default)]
pub struct Handshakes {
    /// (completion time in kernel monotonic ns, handshake time in µs), oldest first.
    samples: VecDeque<(u64, u32)>,
}

impl Handshakes {
    pub fn observe(&mut self, ts_ns: u64, latency: Duration) {
        if self.samples.len() == SAMPLES {
            self.samples.pop_front();
        }
        let us = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        self.samples.push_back((ts_ns, us));
    }

    /// The p99 handshake time of the window ending at `now_ns`; `None` with fewer than
    /// [`MIN_SAMPLES`] in it.
    pub fn p99(&mut self, now_ns: u64) -> Option<Duration> {
        let oldest = now_ns.saturating_sub(WINDOW.as_nanos() as u64);
        while self.samples.front().is_some_and(|&(ts, _)| ts < oldest) {
            self.samples.pop_front();
        }
        let n = self.samples.len();
        if n < MIN_SAMPLES {
            return None;
        }
        let mut v: Vec<u32> = self.samples.iter().map(|&(_, us)| us).collect();
        // The slowest 1 % (rounded up) are above it: the 10th slowest of 1,000, the
        // slowest of fewer than 101.
        let rank = n - n.div_ceil(100);
        let (_, p, _) = v.select_nth_unstable(rank);
        Some(Duration::from_micros(u64::from(*p)))
    }

    /// Handshakes kept now (the window is trimmed by [`Handshakes::p99`]).
    pub fn kept(&self) -> usize {
        self.samples.len()
    }
}

/// `k` × `handshake`, within the floor and ceiling.
pub fn scaled(a: &AutoRto, handshake: Duration) -> Duration {
    handshake
        .saturating_mul(a.k)
        .clamp(a.floor, a.ceiling.max(a.floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_p99_until_enough_handshakes() {
        let mut h = Handshakes::default();
        for i in 0..MIN_SAMPLES as u64 - 1 {
            h.observe(i * MS, ms(5));
        }
        assert_eq!(h.p99(100 * MS), None);
        h.observe(100 * MS, ms(5));
        assert_eq!(h.p99(100 * MS), Some(ms(5)));
    }

    #[test]
    fn the_p99_is_the_tenth_slowest_of_a_thousand() {
        let mut h = Handshakes::default();
        for i in 0..990 {
            h.observe(i * MS, ms(2));
        }
        for i in 0..10 {
            h.observe((990 + i) * MS, ms(100 + i));
        }
        assert_eq!(h.p99(1_000 * MS), Some(ms(100)));
        // One more slow one pushes the oldest fast one out: the 10th slowest is slower.
        h.observe(1_000 * MS, ms(200));
        assert_eq!(h.kept(), SAMPLES);
        assert_eq!(h.p99(1_000 * MS), Some(ms(101)));
    }

    #[test]
    fn a_backend_slow_for_a_third_of_the_handshakes_sets_the_p99() {
        let mut h = Handshakes::default();
        for i in 0..300u64 {
            h.observe(i * MS, ms(if i % 3 == 0 { 101 } else { 3 }));
        }
        assert_eq!(h.p99(300 * MS), Some(ms(101)));
    }

    #[test]
    fn old_handshakes_leave_the_window() {
        let mut h = Handshakes::default();
        for i in 0..50 {
            h.observe(i * MS, ms(300));
        }
        let later = WINDOW.as_nanos() as u64 + 100 * MS;
        for i in 0..30 {
            h.observe(later + i * MS, ms(4));
        }
        assert_eq!(h.p99(later + 30 * MS), Some(ms(4)));
        assert_eq!(h.kept(), 30);
        assert_eq!(h.p99(later + 2 * WINDOW.as_nanos() as u64), None);
    }

    #[test]
    fn the_timeout_is_k_times_the_p99_within_its_bounds() {
        let a = AutoRto {
            k: 3,
            floor: ms(50),
            ceiling: ms(1_000),
        };
        assert_eq!(scaled(&a, ms(2)), ms(50));
        assert_eq!(scaled(&a, ms(40)), ms(120));
        assert_eq!(scaled(&a, ms(500)), ms(1_000));
        assert_eq!(scaled(&a, Duration::MAX), ms(1_000));
    }
}
