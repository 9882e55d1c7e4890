//! What the core hands a data plane to write, and what the plane says it wrote.

use std::collections::BTreeMap;

use crate::model::{BackendId, ServiceKey};

/// How a plane is to hold one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The config's weight.
    pub configured: u32,
    /// The effective weight; `None`: out of the plane altogether (a quarantined backend
    /// whose flows must move, see [`crate::daemon::services::ServiceRt::held_weight`]).
    pub weight: Option<u32>,
}

/// Every backend of some services, as the health machines want them held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Weights(BTreeMap<ServiceKey, BTreeMap<BackendId, Held>>);

impl Weights {
    pub fn insert(&mut self, service: ServiceKey, backend: BackendId, held: Held) {
        self.0.entry(service).or_default().insert(backend, held);
    }

    /// Each service with its backends.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceKey, &BTreeMap<BackendId, Held>)> {
        self.0.iter()
    }

    /// Every backend of every service.
    pub fn iter(&self) -> impl Iterator<Item = (ServiceKey, BackendId, Held)> + '_ {
        self.0
            .iter()
            .flat_map(|(k, b)| b.iter().map(move |(id, h)| (*k, *id, *h)))
    }

    pub fn has_service(&self, service: &ServiceKey) -> bool {
        self.0.contains_key(service)
    }

    pub fn has(&self, service: &ServiceKey, backend: &BackendId) -> bool {
        self.0.get(service).is_some_and(|b| b.contains_key(backend))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One weight written (0 for a backend taken out of the plane or not there before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub service: ServiceKey,
    pub dest: BackendId,
    pub from: u32,
    pub to: u32,
    /// `CLOCK_MONOTONIC` (ns) when the kernel stopped giving the backend new connections,
    /// if that was before the write returned (the XDP plane marks a backend out before it
    /// rewrites its table); `None`: when the write returned.
    pub out_at_ns: Option<u64>,
}

/// What the fast path wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightWrites {
    /// The weights that changed.
    pub written: Vec<Written>,
    /// Writes to the kernel it took.
    pub ops: u64,
    /// Writes the kernel refused (tried again by the next pass).
    pub failed: u64,
}

/// A plane's kernel writes, handed out to run on a thread of their own (see
/// [`super::DataPlane::weight_sink`]): a write may wait on the kernel, and the daemon's
/// loop must not.
pub trait WeightSink: Send {
    /// Writes the `weights` of the services given (all their backends) that differ from
    /// what the plane holds.
    fn write(&mut self, weights: &Weights) -> Result<WeightWrites, super::PlaneError>;

    /// A full apply, as [`super::DataPlane::apply`] does it (the periodic resync).
    fn apply(
        &mut self,
        config: &crate::config::Config,
        weights: &Weights,
    ) -> Result<super::Applied, super::PlaneError>;
}
