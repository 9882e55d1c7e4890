//! The health state kept across a restart, so a restart neither re-admits a quarantined
//! backend early nor restarts a slow start. Instants are process-local, so every time is
//! stored as wall-clock Unix milliseconds and mapped back on load.

use std::{
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{
    backend::{step_at, Backend, Phase, SLOW_START_STEPS},
    DestId, Policy, State,
};

/// One service's saved health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedService {
    /// Whether the service was in panic (informational: recomputed on load).
    #[serde(default)]
    pub panic: bool,
    #[serde(default)]
    pub backends: Vec<PersistedBackend>,
}

/// One backend's saved health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedBackend {
    pub address: IpAddr,
    pub port: u16,
    pub state: State,
    #[serde(default)]
    pub refusals: u32,
    #[serde(default)]
    pub retransmits: u32,
    #[serde(default)]
    pub check_failures: u32,
    #[serde(default)]
    pub ejections: u32,
    #[serde(default)]
    pub quarantines: u32,
    /// Quarantined: when the quarantine ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined_until_ms: Option<u64>,
    /// Slow start: when the ramp began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start_since_ms: Option<u64>,
    /// Healthy: since when without a failure (for the ejection count decay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_since_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_ms: Option<u64>,
}

impl PersistedBackend {
    pub fn dest(&self) -> DestId {
        DestId::new(self.address, self.port)
    }
}

/// `t` on the wall clock, given that `now` is `wall`.
fn to_unix_ms(t: Instant, now: Instant, wall: SystemTime) -> u64 {
    let at = if t >= now {
        wall.checked_add(t - now)
    } else {
        wall.checked_sub(now - t)
    };
    at.and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix milliseconds `ms` as an instant, given that `now` is `wall`. Times too far in
/// the past for the monotonic clock become `now`.
fn from_unix_ms(ms: u64, now: Instant, wall: SystemTime) -> Instant {
    let wall_ms = wall
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if ms >= wall_ms {
        now + Duration::from_millis(ms - wall_ms)
    } else {
        now.checked_sub(Duration::from_millis(wall_ms - ms))
            .unwrap_or(now)
    }
}

pub(crate) fn save<'a>(
    panic: bool,
    backends: impl Iterator<Item = &'a Backend>,
    now: Instant,
    wall: SystemTime,
) -> PersistedService {
    let ms = |t: Instant| to_unix_ms(t, now, wall);
    PersistedService {
        panic,
        backends: backends
            .map(|b| PersistedBackend {
                address: b.dest.ip,
                port: b.dest.port,
                state: b.state(),
                refusals: b.refusals,
                retransmits: b.retransmits,
                check_failures: b.check_failures,
                ejections: b.ejections,
                quarantines: b.quarantines,
                quarantined_until_ms: match b.phase {
                    Phase::Quarantined { until } => Some(ms(until)),
                    _ => None,
                },
                slow_start_since_ms: match b.phase {
                    Phase::SlowStart { since, .. } => Some(ms(since)),
                    _ => None,
                },
                clean_since_ms: b.clean_since.map(ms),
                last_change_ms: b.last_change.map(ms),
            })
            .collect(),
    }
}

/// The most ejections a record may claim: enough for any backoff to reach its cap.
pub const MAX_RESTORED_EJECTIONS: u32 = 64;

/// Puts the saved state into `b` (a fresh, healthy backend). The record is not trusted
/// further than the config allows: a quarantine ends no later than `max_ejection` from
/// now, a slow start began no earlier than one ramp ago and not in the future, past
/// times are not in the future, and failure counters stay below the thresholds that
/// would have acted on them.
pub(crate) fn restore(
    b: &mut Backend,
    saved: &PersistedBackend,
    policy: &Policy,
    now: Instant,
    wall: SystemTime,
) {
    let past = |ms: u64| from_unix_ms(ms, now, wall).min(now);
    let below = |n: u32, threshold: u32| n.min(threshold.saturating_sub(1));
    b.refusals = below(saved.refusals, policy.refuse_threshold);
    b.retransmits = below(saved.retransmits, policy.retransmit_threshold);
    b.check_failures = below(saved.check_failures, policy.check_fall);
    b.ejections = saved.ejections.min(MAX_RESTORED_EJECTIONS);
    b.quarantines = saved.quarantines;
    b.clean_since = saved.clean_since_ms.map(past);
    b.last_change = saved.last_change_ms.map(past);
    b.phase = match saved.state {
        State::Healthy => {
            b.clean_since.get_or_insert(now);
            Phase::Healthy
        }
        State::Failing => Phase::Failing,
        State::Quarantined => Phase::Quarantined {
            until: saved
                .quarantined_until_ms
                .map_or(now, |ms| from_unix_ms(ms, now, wall))
                .min(now + policy.max_ejection),
        },
        // The probe ran in the old process: ask again now (or re-admit at the next tick
        // when probing is now off).
        State::Probing if policy.probe => Phase::Probing {
            reissue_at: now,
            passes: 0,
        },
        State::Probing => Phase::Quarantined { until: now },
        State::SlowStart => {
            let earliest = now.checked_sub(policy.slow_start).unwrap_or(now);
            let since = saved.slow_start_since_ms.map_or(now, past).max(earliest);
            // If the ramp (maybe shortened by the config) is over, the next tick ends it.
            Phase::SlowStart {
                since,
                step: step_at(since, policy.slow_start, now).min(SLOW_START_STEPS - 1),
            }
        }
    };
}
