//! Helpers for the health tests.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use tokio::time::Instant;

use super::{DestId, Policy, ServiceHealth};

/// Backend n: 198.18.1.n:80.
pub(super) fn d(n: u8) -> DestId {
    DestId::new(IpAddr::V4(Ipv4Addr::new(198, 18, 1, n)), 80)
}

/// Backends 1.. with these configured weights.
pub(super) fn backends(weights: &[u32]) -> Vec<(DestId, u32)> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| (d(u8::try_from(i + 1).unwrap()), *w))
        .collect()
}

/// The defaults without jitter, so durations are exact.
pub(super) fn exact() -> Policy {
    Policy {
        jitter_percent: 0,
        ..Policy::default()
    }
}

pub(super) fn service(policy: Policy, weights: &[u32]) -> ServiceHealth {
    ServiceHealth::new(policy, &backends(weights), 7)
}

/// Moves the paused clock on by `d` and returns the new time.
pub(super) async fn after(d: Duration) -> Instant {
    tokio::time::advance(d).await;
    Instant::now()
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// The effective weights in backend order.
pub(super) fn weights(s: &ServiceHealth, now: Instant) -> Vec<u32> {
    s.weights(now).into_values().collect()
}
