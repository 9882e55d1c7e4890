//! When a watcher that could not attach every hook loads the kernel programs again:
//! one second after start, then after twice the last wait, at most a minute apart.

use std::time::Duration;

use tokio::time::Instant;

/// The first wait.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// The next attempt: when, and the wait that led to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    at: Instant,
    wait: Duration,
}

impl RetrySchedule {
    /// The first attempt after a start at `now`.
    pub fn first(now: Instant) -> Self {
        RetrySchedule {
            at: now + RETRY_FIRST,
            wait: RETRY_FIRST,
        }
    }

    /// Whether the attempt is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// The attempt after one made at `now`: twice the last wait, at most [`RETRY_MAX`].
    pub fn after(self, now: Instant) -> Self {
        let wait = (self.wait * 2).min(RETRY_MAX);
        RetrySchedule {
            at: now + wait,
            wait,
        }
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
mod tests;
