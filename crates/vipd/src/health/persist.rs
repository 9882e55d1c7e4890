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
    DestId, State,
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

/// Puts the saved state into `b` (a fresh, healthy backend).
pub(crate) fn restore(
    b: &mut Backend,
    saved: &PersistedBackend,
    probe: bool,
    slow_start: Duration,
    now: Instant,
    wall: SystemTime,
) {
    let at = |ms: u64| from_unix_ms(ms, now, wall);
    b.refusals = saved.refusals;
    b.retransmits = saved.retransmits;
    b.check_failures = saved.check_failures;
    b.ejections = saved.ejections;
    b.quarantines = saved.quarantines;
    b.clean_since = saved.clean_since_ms.map(at);
    b.last_change = saved.last_change_ms.map(at);
    b.phase = match saved.state {
        State::Healthy => {
            b.clean_since.get_or_insert(now);
            Phase::Healthy
        }
        State::Failing => Phase::Failing,
        State::Quarantined => Phase::Quarantined {
            until: saved.quarantined_until_ms.map_or(now, at),
        },
        // The probe ran in the old process: ask again now (or re-admit at the next tick
        // when probing is now off).
        State::Probing if probe => Phase::Probing {
            reissue_at: now,
            passes: 0,
        },
        State::Probing => Phase::Quarantined { until: now },
        State::SlowStart => {
            let since = saved.slow_start_since_ms.map_or(now, at);
            // If the ramp (maybe shortened by the config) is over, the next tick ends it.
            Phase::SlowStart {
                since,
                step: step_at(since, slow_start, now).min(SLOW_START_STEPS - 1),
            }
        }
    };
}
