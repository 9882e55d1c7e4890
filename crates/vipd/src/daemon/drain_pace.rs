//! How often the shell drains the plane's event ring when no kernel wake-up asks it to.
//!
//! Kernel programs wake the reader at once only for records that cannot wait (failures);
//! the rest (successes) wait for a periodic drain. While records flow, that drain runs
//! every [`crate::watcher::RING_DRAIN`]. A plane whose waiting records can wait longer
//! (see [`crate::plane::Ticks::idle_drain`]) is drained at its slower idle period once
//! [`IDLE_AFTER`] drains in a row have found nothing, so an idle daemon wakes a few times
//! a second instead of fifty; the first drain that finds records brings the fast period
//! back.

use std::time::Duration;

/// Empty drains in a row before the idle period: 200 ms at the busy period.
pub const IDLE_AFTER: u32 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainPace {
    busy: Duration,
    idle: Option<Duration>,
    /// Drains in a row that found nothing.
    empty: u32,
    idling: bool,
}

impl DrainPace {
    /// Drains every `busy`; with `idle`, that seldom once the ring stays empty.
    pub fn new(busy: Duration, idle: Option<Duration>) -> Self {
        DrainPace {
            busy,
            idle: idle.filter(|i| *i > busy),
            empty: 0,
            idling: false,
        }
    }

    /// The period drains run at now.
    pub fn period(&self) -> Duration {
        match (self.idling, self.idle) {
            (true, Some(idle)) => idle,
            _ => self.busy,
        }
    }

    /// After a drain that took `taken` records: the new period, if it changes.
    pub fn after(&mut self, taken: usize) -> Option<Duration> {
        if taken > 0 {
            self.empty = 0;
            if self.idling {
                self.idling = false;
                return Some(self.busy);
            }
            return None;
        }
        self.empty = self.empty.saturating_add(1);
        match self.idle {
            Some(idle) if !self.idling && self.empty >= IDLE_AFTER => {
                self.idling = true;
                Some(idle)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUSY: Duration = Duration::from_millis(20);
    const IDLE: Duration = Duration::from_millis(500);

    #[test]
    fn slows_down_after_enough_empty_drains_and_speeds_up_at_the_first_record() {
        let mut p = DrainPace::new(BUSY, Some(IDLE));
        assert_eq!(p.period(), BUSY);
        for _ in 1..IDLE_AFTER {
            assert_eq!(p.after(0), None);
        }
        assert_eq!(p.after(0), Some(IDLE));
        assert_eq!(p.period(), IDLE);
        // Still idle: no change to report.
        assert_eq!(p.after(0), None);
        assert_eq!(p.after(3), Some(BUSY));
        assert_eq!(p.period(), BUSY);
        assert_eq!(p.after(1), None);
    }

    #[test]
    fn a_record_restarts_the_count_of_empty_drains() {
        let mut p = DrainPace::new(BUSY, Some(IDLE));
        for _ in 1..IDLE_AFTER {
            p.after(0);
        }
        assert_eq!(p.after(1), None);
        for _ in 1..IDLE_AFTER {
            assert_eq!(p.after(0), None);
        }
        assert_eq!(p.after(0), Some(IDLE));
    }

    #[test]
    fn without_an_idle_period_the_pace_never_changes() {
        for idle in [None, Some(BUSY), Some(Duration::from_millis(5))] {
            let mut p = DrainPace::new(BUSY, idle);
            for _ in 0..(3 * IDLE_AFTER) {
                assert_eq!(p.after(0), None, "{idle:?}");
            }
            assert_eq!(p.after(7), None);
            assert_eq!(p.period(), BUSY);
        }
    }
}
