//! The per-backend health state machine: from connection outcomes and check results to
//! each backend's effective IPVS weight. Pure logic, no I/O; time comes in as
//! [`tokio::time::Instant`] arguments, so tests run on paused time.
//!
//! The daemon feeds every [`Signal`] to [`ServiceHealth::observe`], calls
//! [`ServiceHealth::tick`] at [`ServiceHealth::next_deadline`], acts on the returned
//! [`Transition`]s (runs a probe on [`Transition::ProbeWanted`], logs the rest) and writes
//! [`ServiceHealth::weights`] to IPVS after each call (slow-start steps change weights
//! without a transition).
//!
//! # Rules
//!
//! **Failures.** Each backend has three consecutive-failure counters: refusals
//! ([`Signal::Refused`], an RST answering a SYN), SYN retransmissions
//! ([`Signal::SynRetransmit`], each one counts) and failed active checks
//! ([`Signal::CheckFailed`]). An established connection ([`Signal::Success`]) resets the
//! first two; a passed check ([`Signal::CheckPassed`]) resets the third. A counter
//! reaching its threshold (`refuse_threshold`, default 1; `retransmit_threshold`,
//! default 1; the check's `fall`, default 2) quarantines the backend at once: the first
//! refusal or retransmitted SYN is enough by default, which is the point: act within
//! milliseconds of the kernel seeing it.
//!
//! **Quarantine** sets the weight to 0. It lasts `base_ejection * 2^(n-1)` (default base
//! 5s) for the backend's n-th recent ejection, at most `max_ejection` (default 5min),
//! plus a uniform random 0..=10% so backends ejected together do not return together.
//! The count n decays: once a backend has been healthy at full weight for `max_ejection`
//! without a failure, it goes back to 0. A total count is kept for status. Outcomes of
//! connections made before the quarantine still update the counters but never extend
//! it, and a passed check never ends it early: the timer rules.
//!
//! **Probation.** When the quarantine ends, a TCP service (`probe`, default true for
//! TCP) makes the backend [`State::Probing`] and asks for one active TCP connect
//! ([`Transition::ProbeWanted`]); the daemon feeds the result back as
//! [`Signal::CheckPassed`] or [`Signal::CheckFailed`]. A pass (with active checks: the
//! check's `rise` consecutive passes, the probe counting as one) re-admits; a failure
//! quarantines again, for the next, longer backoff. If no result comes within
//! [`PROBE_REISSUE`] the probe is asked for again. Without `probe` the backend is
//! re-admitted when the quarantine ends.
//!
//! **Slow start.** A re-admitted backend ramps linearly over `slow_start` (default 10s)
//! in 10 steps: step k (k = 1..=10, starting at re-admission + (k-1)/9 of `slow_start`)
//! has weight `max(1, ceil(weight * k / 10))`, so at most 10 weight writes; at the end it
//! is [`State::Healthy`] again ([`Transition::Recovered`]). A failure over a threshold
//! during the ramp quarantines it again with the next backoff. With `slow_start = 0s` a
//! re-admitted backend gets its full weight at once.
//!
//! **Safety limits.** Only backends with a configured weight above 0 count; a backend
//! configured with weight 0 (administratively drained) always has weight 0 and is never
//! counted as available. At most `max_ejection_percent` (default 100) of them may be out
//! of rotation (quarantined or probing) at a time: `floor(n * pct / 100)`, but at least
//! one when n >= 2 and pct > 0 (so a small service can still eject one). And a backend is never quarantined if no other backend would keep a weight
//! above 0. A backend one of these rules keeps in rotation is [`State::Failing`] at its
//! configured weight ([`Transition::HeldInRotation`]); its next failure tries again.
//!
//! **Panic.** When no backend is healthy or in slow start (all failing, quarantined or
//! probing), or fewer than `panic_threshold` percent (default 0) are, the service is in
//! panic: every backend gets its configured weight, as spreading load over all of them
//! beats sending it all to one or none. Timers keep running underneath; when the
//! condition clears (a success makes a failing backend healthy, a quarantine ends) the
//! service leaves panic and weights follow the states again.
//!
//! **Restarts and reloads.** [`ServiceHealth::update`] keeps the state of backends still
//! configured; [`ServiceHealth::to_persisted`] and [`ServiceHealth::from_persisted`]
//! carry it across a restart with wall-clock deadlines, so a restart does not re-admit a
//! quarantined backend early.

mod backend;
mod backoff;
mod operator;
mod persist;
mod policy;
mod service;

#[cfg(test)]
mod backoff_tests;
#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod persist_tests;
#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod test_util;

use std::time::Duration;

use serde::Serialize;

pub use backend::{slow_start_weight, State, SLOW_START_STEPS};
pub use backoff::{backoff, jittered, Rng};
pub use operator::OperatorError;
pub use persist::{PersistedBackend, PersistedService};
pub use policy::Policy;
pub use service::{ejection_allowance, BackendHealthView, ServiceHealth, PROBE_REISSUE};

/// A destination of a service: real server address and port.
pub type DestId = crate::model::BackendId;

/// What the daemon learned about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// A connection was established (passive).
    Success,
    /// A connection was refused: an RST in SYN_SENT.
    Refused,
    /// One SYN retransmission.
    SynRetransmit,
    /// An active check or probation probe failed.
    CheckFailed,
    /// An active check or probation probe passed.
    CheckPassed,
    /// UDP: an ICMP destination-unreachable error for a datagram sent to the backend.
    /// Counts as a refusal (`refuse_threshold`).
    Unreachable,
    /// UDP: datagrams went to the backend and no reply came back for the service's
    /// `silence_window`. Counts as an unanswered SYN (`retransmit_threshold`).
    Silent,
    /// An operator's command (`vipd quarantine`, `vipd readmit`); counts for nothing.
    Operator,
}

impl Signal {
    /// Refused, SynRetransmit, CheckFailed, Unreachable or Silent.
    pub const fn is_failure(self) -> bool {
        matches!(
            self,
            Signal::Refused
                | Signal::SynRetransmit
                | Signal::CheckFailed
                | Signal::Unreachable
                | Signal::Silent
        )
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Signal::Success => "success",
            Signal::Refused => "refused",
            Signal::SynRetransmit => "syn_retransmit",
            Signal::CheckFailed => "check_failed",
            Signal::CheckPassed => "check_passed",
            Signal::Unreachable => "unreachable",
            Signal::Silent => "silent",
            Signal::Operator => "operator",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change the daemon acts on or reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Out of rotation for `duration`; `ejections` is the backoff count (1 the first time).
    Quarantined {
        dest: DestId,
        ejections: u32,
        duration: Duration,
        cause: Signal,
    },
    /// Would be quarantined, but the ejection limit or the never-zero rule keeps it in
    /// rotation (now [`State::Failing`]).
    HeldInRotation {
        dest: DestId,
        cause: Signal,
    },
    /// The quarantine is over and `probe` is on: the daemon must make one TCP connect to
    /// the backend and feed [`Signal::CheckPassed`] or [`Signal::CheckFailed`].
    ProbeWanted {
        dest: DestId,
    },
    /// Back in rotation: slow start begins (or full weight when `slow_start` is zero).
    Readmitted {
        dest: DestId,
    },
    /// Slow start complete: full weight.
    Recovered {
        dest: DestId,
    },
    PanicEntered,
    PanicExited,
}
