//! What the map-programmed planes (XDP, socket) share: each service of a [`Weights`] as
//! the members its kernel side should select (backends with a weight, at that weight),
//! and the record of what the maps hold per backend, from which the weights that
//! changed ([`Written`]) come.

use std::{collections::BTreeMap, net::SocketAddr};

use super::{Weights, Written};
use crate::model::{BackendId, ServiceKey, Vip};

/// One service as its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub key: ServiceKey,
    pub vip: Vip,
    /// Backends in the plane and their weights (0: no new connections).
    pub backends: Vec<(SocketAddr, u32)>,
}

/// What the maps hold per backend: `Some(weight)`, or `None` (not a member).
#[derive(Debug, Clone, Default)]
pub struct HeldMap(BTreeMap<(ServiceKey, BackendId), Option<u32>>);

/// The services of `weights` as members (fwmark services, which the config rejects
/// with these planes, are left out), and every backend's wanted hold.
pub fn members(weights: &Weights) -> (Vec<Members>, HeldMap) {
    let mut wanted = HeldMap::default();
    let mut out = Vec::new();
    for (key, backends) in weights.services() {
        let Some(vip) = key.vip() else {
            continue;
        };
        let mut m = Vec::new();
        for (id, held) in backends {
            wanted.0.insert((*key, *id), held.weight);
            if let Some(w) = held.weight {
                m.push((id.socket_addr(), w));
            }
        }
        out.push(Members {
            key: *key,
            vip,
            backends: m,
        });
    }
    (out, wanted)
}

impl HeldMap {
    /// Records that the maps now hold `wanted`; returns the weights that changed.
    /// `out_at_ns`: when a backend marked out left rotation (see [`Written::out_at_ns`]).
    /// `full`: `weights` are all the services, and backends not in them are forgotten.
    pub fn record(
        &mut self,
        wanted: HeldMap,
        out_at_ns: Option<u64>,
        full: Option<&Weights>,
    ) -> Vec<Written> {
        let mut written = Vec::new();
        for ((service, dest), to) in wanted.0 {
            let from = self.0.insert((service, dest), to);
            if from == Some(to) {
                continue;
            }
            let to_w = to.unwrap_or(0);
            written.push(Written {
                service,
                dest,
                // Unknown before (start, reload): as if it had been what it is now.
                from: from.map_or(to_w, |f| f.unwrap_or(0)),
                to: to_w,
                out_at_ns: if to_w == 0 { out_at_ns } else { None },
            });
        }
        if let Some(weights) = full {
            self.0.retain(|(k, d), _| weights.has(k, d));
        }
        written
    }
}

/// A full apply's result from the map writes it took (logged when there were any).
pub fn applied(plane: &'static str, writes: usize) -> super::Applied {
    if writes > 0 {
        tracing::info!(dataplane = plane, map_writes = writes, "reconciled");
    }
    super::Applied {
        writes: writes as u64,
        ops: vec![(plane, writes as u64)],
        ..super::Applied::default()
    }
}

/// The fast path's result from the map writes it took and the weights that changed.
pub fn weight_writes(ops: usize, written: Vec<Written>) -> super::WeightWrites {
    super::WeightWrites {
        written,
        ops: ops as u64,
        failed: 0,
    }
}
