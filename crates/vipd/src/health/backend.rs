//! One backend's health: its phase, its consecutive-failure counters and its ejection
//! history. The rules that involve the other backends (limits, panic) are in `service`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{DestId, Policy, Signal};

/// Slow start ramps in this many weight steps (the last is full weight).
pub const SLOW_START_STEPS: u32 = 10;

/// A backend's state, as status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// In rotation at its configured weight.
    Healthy,
    /// Over a threshold, but kept in rotation (at its configured weight) by the ejection
    /// limit or because it is the last backend with weight.
    Failing,
    /// Out of rotation (weight 0) until the quarantine ends.
    Quarantined,
    /// Quarantine over; out of rotation until the probation probe passes.
    Probing,
    /// Re-admitted, its weight ramping up to the configured one.
    SlowStart,
}

impl State {
    /// Every state, in the order of the machine's cycle.
    pub const ALL: [State; 5] = [
        State::Healthy,
        State::Failing,
        State::Quarantined,
        State::Probing,
        State::SlowStart,
    ];

    /// The spelling status uses: `healthy`, `failing`, `quarantined`, `probing`,
    /// `slow-start`.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Failing => "failing",
            State::Quarantined => "quarantined",
            State::Probing => "probing",
            State::SlowStart => "slow-start",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state with the times it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Healthy,
    Failing,
    Quarantined {
        until: Instant,
    },
    /// `reissue_at`: when to ask for the probe again if no result came; `passes`:
    /// consecutive passed checks since probation began.
    Probing {
        reissue_at: Instant,
        passes: u32,
    },
    /// `step` (1..SLOW_START_STEPS): the ramp step last reached by a tick.
    SlowStart {
        since: Instant,
        step: u32,
    },
}

impl Phase {
    pub(crate) fn state(self) -> State {
        match self {
            Phase::Healthy => State::Healthy,
            Phase::Failing => State::Failing,
            Phase::Quarantined { .. } => State::Quarantined,
            Phase::Probing { .. } => State::Probing,
            Phase::SlowStart { .. } => State::SlowStart,
        }
    }
}

/// The slow-start step at `now` for a ramp that began at `since`: step k (1-based)
/// begins at `since + slow_start * (k-1) / (STEPS-1)`, so step 1 (a tenth of the weight)
/// starts at re-admission and the last step (full weight) at `since + slow_start`.
pub(crate) fn step_at(since: Instant, slow_start: Duration, now: Instant) -> u32 {
    let total = slow_start.as_nanos();
    let elapsed = now.saturating_duration_since(since).as_nanos();
    if total == 0 || elapsed >= total {
        return SLOW_START_STEPS;
    }
    let k = elapsed * u128::from(SLOW_START_STEPS - 1) / total;
    // k < STEPS - 1 here.
    u32::try_from(k).unwrap_or(SLOW_START_STEPS - 2) + 1
}

/// When slow-start step `k` (1..=STEPS) begins: the first nanosecond at which
/// [`step_at`] says `k` (rounded up, so a tick at this deadline always moves on).
pub(crate) fn step_start(since: Instant, slow_start: Duration, k: u32) -> Instant {
    let nanos = (slow_start.as_nanos() * u128::from(k.saturating_sub(1)))
        .div_ceil(u128::from(SLOW_START_STEPS - 1));
    since + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The weight at slow-start step `k` of a backend configured with `weight`:
/// `max(1, ceil(weight * k / STEPS))`, or 0 for a configured weight of 0.
pub fn slow_start_weight(weight: u32, k: u32) -> u32 {
    if weight == 0 {
        return 0;
    }
    let k = u64::from(k.clamp(1, SLOW_START_STEPS));
    let w = (u64::from(weight) * k).div_ceil(u64::from(SLOW_START_STEPS));
    u32::try_from(w).unwrap_or(weight).clamp(1, weight)
}

/// One backend of a service.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    pub(crate) dest: DestId,
    /// The weight the config gives it; 0 means administratively drained.
    pub(crate) config_weight: u32,
    pub(crate) phase: Phase,
    pub(crate) refusals: u32,
    pub(crate) retransmits: u32,
    pub(crate) check_failures: u32,
    /// Ejections that count for the backoff; reset once healthy for `max_ejection`.
    pub(crate) ejections: u32,
    /// Every quarantine since the daemon started watching (restarts included).
    pub(crate) quarantines: u32,
    /// Since when it has been healthy without a failure (for the ejection count decay).
    pub(crate) clean_since: Option<Instant>,
    /// The last change of state; `None`: none seen.
    pub(crate) last_change: Option<Instant>,
}

impl Backend {
    pub(crate) fn new(dest: DestId, config_weight: u32) -> Self {
        Backend {
            dest,
            config_weight,
            phase: Phase::Healthy,
            refusals: 0,
            retransmits: 0,
            check_failures: 0,
            ejections: 0,
            quarantines: 0,
            clean_since: None,
            last_change: None,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.phase.state()
    }

    /// Has a configured weight (is not administratively drained).
    pub(crate) fn eligible(&self) -> bool {
        self.config_weight > 0
    }

    /// Quarantined or waiting for its probe: out of rotation.
    pub(crate) fn ejected(&self) -> bool {
        matches!(
            self.phase,
            Phase::Quarantined { .. } | Phase::Probing { .. }
        )
    }

    /// Counts as available for the panic rule: healthy or ramping up, with a weight.
    pub(crate) fn available(&self) -> bool {
        self.eligible() && matches!(self.phase, Phase::Healthy | Phase::SlowStart { .. })
    }

    /// Has a weight above 0 when not in panic.
    pub(crate) fn carries_weight(&self) -> bool {
        self.eligible() && !self.ejected()
    }

    /// The weight its state gives it (panic aside).
    pub(crate) fn weight(&self, policy: &Policy, now: Instant) -> u32 {
        match self.phase {
            _ if self.config_weight == 0 => 0,
            Phase::Healthy | Phase::Failing => self.config_weight,
            Phase::Quarantined { .. } | Phase::Probing { .. } => 0,
            Phase::SlowStart { since, .. } => {
                slow_start_weight(self.config_weight, step_at(since, policy.slow_start, now))
            }
        }
    }

    /// The sum of the consecutive-failure counters.
    pub(crate) fn failures(&self) -> u32 {
        self.refusals
            .saturating_add(self.retransmits)
            .saturating_add(self.check_failures)
    }

    /// Whether a success would change nothing here: the backend is healthy and has no
    /// refusal or retransmission counted for it to reset (see [`Backend::count`]).
    pub(crate) fn success_changes_nothing(&self) -> bool {
        self.phase == Phase::Healthy && self.refusals == 0 && self.retransmits == 0
    }

    /// Updates the counters for `signal`.
    pub(crate) fn count(&mut self, signal: Signal) {
        match signal {
            Signal::Success => {
                self.refusals = 0;
                self.retransmits = 0;
            }
            Signal::Refused | Signal::Unreachable => {
                self.refusals = self.refusals.saturating_add(1)
            }
            Signal::SynRetransmit | Signal::Silent => {
                self.retransmits = self.retransmits.saturating_add(1)
            }
            Signal::CheckFailed => self.check_failures = self.check_failures.saturating_add(1),
            Signal::CheckPassed => self.check_failures = 0,
            Signal::Operator => {}
        }
    }

    /// Whether any counter is at or over its threshold.
    pub(crate) fn over_threshold(&self, policy: &Policy) -> bool {
        self.refusals >= policy.refuse_threshold
            || self.retransmits >= policy.retransmit_threshold
            || self.check_failures >= policy.check_fall
    }

    pub(crate) fn reset_counters(&mut self) {
        self.refusals = 0;
        self.retransmits = 0;
        self.check_failures = 0;
    }

    /// Enters `phase` at `now`.
    pub(crate) fn set(&mut self, phase: Phase, now: Instant) {
        self.phase = phase;
        self.last_change = Some(now);
    }

    /// The next time a tick has something to do for this backend.
    pub(crate) fn deadline(&self, policy: &Policy) -> Option<Instant> {
        match self.phase {
            Phase::Quarantined { until } => Some(until),
            Phase::Probing { reissue_at, .. } => Some(reissue_at),
            Phase::SlowStart { since, step } => {
                Some(step_start(since, policy.slow_start, step + 1))
            }
            Phase::Healthy if self.ejections > 0 => {
                self.clean_since.map(|c| c + policy.max_ejection)
            }
            Phase::Healthy | Phase::Failing => None,
        }
    }
}
