//! What an operator can do to one backend's health by hand: force a quarantine (the
//! backend leaves rotation at once, whatever the ejection limits say, and comes back the
//! usual way: probation probe, then slow start) and re-admit (a quarantine or probation
//! ends now, straight into slow start). Both go through the same transitions as the
//! machine's own decisions, so logs, metrics and weights follow.

use std::time::Duration;

use tokio::time::Instant;

use super::{backend::Phase, DestId, ServiceHealth, Signal, Transition};

/// Why an operator's command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("not a backend of this service")]
    UnknownBackend,
    #[error("already quarantined ({0} left)")]
    AlreadyQuarantined(String),
    #[error("not out of rotation (it is {0})")]
    NotEjected(&'static str),
}

impl ServiceHealth {
    /// Takes `dest` out of rotation now, for `duration` or its next backoff. The ejection
    /// limit and the never-zero rule do not apply (the operator decides), but panic
    /// still does: a service left without an available backend spreads over all.
    pub fn force_quarantine(
        &mut self,
        now: Instant,
        dest: DestId,
        duration: Option<Duration>,
    ) -> Result<Vec<Transition>, OperatorError> {
        let b = self
            .backends
            .get(&dest)
            .ok_or(OperatorError::UnknownBackend)?;
        if let Phase::Quarantined { until } = b.phase {
            let left = until.saturating_duration_since(now);
            return Err(OperatorError::AlreadyQuarantined(
                crate::config::format_duration(left),
            ));
        }
        let mut out = Vec::new();
        self.quarantine_for(now, dest, Signal::Operator, duration, &mut out);
        self.settle_panic(&mut out);
        Ok(out)
    }

    /// Ends the quarantine or probation of `dest` now: slow start (or full weight with
    /// `slow_start = 0s`). A failing backend held in rotation gets its counters reset.
    pub fn force_readmit(
        &mut self,
        now: Instant,
        dest: DestId,
    ) -> Result<Vec<Transition>, OperatorError> {
        let b = self
            .backends
            .get_mut(&dest)
            .ok_or(OperatorError::UnknownBackend)?;
        let mut out = Vec::new();
        match b.phase {
            Phase::Quarantined { .. } | Phase::Probing { .. } => {
                self.readmit(now, dest, &mut out);
            }
            Phase::Failing => {
                b.reset_counters();
                b.set(Phase::Healthy, now);
                b.clean_since = Some(now);
            }
            Phase::Healthy | Phase::SlowStart { .. } => {
                return Err(OperatorError::NotEjected(b.state().as_str()));
            }
        }
        self.settle_panic(&mut out);
        Ok(out)
    }
}
