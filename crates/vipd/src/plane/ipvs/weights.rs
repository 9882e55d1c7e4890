//! The fast path: writes weight changes to IPVS one destination at a time (one
//! `IPVS_CMD_SET_DEST` each, about 0.3 ms), without the full reconcile's dump. A backend
//! to be held out of the plane (see [`crate::plane::Held::weight`]) is deleted instead
//! (`IPVS_CMD_DEL_DEST`) and added back (`IPVS_CMD_NEW_DEST`) on re-admission. It
//! remembers what it last wrote, so a loop iteration without changes writes nothing.

use std::{collections::BTreeMap, net::SocketAddr};

use tracing::warn;
use vipd_ipvs::{Client, Destination};

use super::ipvs_key;
use crate::{
    model::{BackendId, ServiceKey},
    plane::{Weights, Written},
    reconcile::DesiredState,
};

pub struct WeightWriter {
    client: Client,
    /// What the kernel holds, as far as vipd knows (after the last reconcile and
    /// writes); `None`: the destination is not there.
    applied: BTreeMap<(ServiceKey, BackendId), Option<u32>>,
    writes: u64,
    failures: u64,
}

impl WeightWriter {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            applied: BTreeMap::new(),
            writes: 0,
            failures: 0,
        }
    }

    /// After a reconcile: the kernel now holds exactly these weights.
    pub fn reset(&mut self, weights: &Weights) {
        self.applied = weights
            .iter()
            .map(|(key, id, held)| ((key, id), held.weight))
            .collect();
    }

    /// Writes every weight in `weights` that differs from what was last written, with
    /// the rest of each destination as `desired` (the config) has it. Work is
    /// proportional to the services given, not the table.
    pub fn sync(&mut self, weights: &Weights, desired: &DesiredState) -> Vec<Written> {
        let mut done = Vec::new();
        for (key, dest, held) in weights.iter() {
            let to = held.weight;
            let from = self.applied.get(&(key, dest)).copied();
            if from == Some(to) {
                continue;
            }
            let ipvs = ipvs_key(key);
            let Some(d) = desired
                .services
                .get(&ipvs)
                .and_then(|s| s.dests.get(&dest))
                .map(|d| Destination {
                    weight: to.unwrap_or(0),
                    ..d.clone()
                })
            else {
                continue;
            };
            // Unknown (never reconciled) counts as present: a reconcile creates it.
            let was_there = from != Some(None);
            let result = match (was_there, to) {
                (true, Some(_)) => self.client.set_destination(&ipvs, &d),
                (false, Some(_)) => self.client.new_destination(&ipvs, &d),
                (true, None) => self.client.del_destination(&ipvs, dest.ip, dest.port),
                (false, None) => Ok(()),
            };
            match result {
                Ok(()) => {
                    self.writes += 1;
                    self.applied.insert((key, dest), to);
                    let old = from.flatten().unwrap_or(0);
                    done.push(Written {
                        service: key,
                        dest,
                        from: if from.is_none() { to.unwrap_or(0) } else { old },
                        to: to.unwrap_or(0),
                        out_at_ns: None,
                    });
                }
                Err(e) => {
                    // Not recorded as applied: the next pass (and the next reconcile,
                    // which recreates a missing destination) tries again.
                    self.failures += 1;
                    warn!(
                        ipvs_service = %key,
                        backend = %SocketAddr::from(dest),
                        weight = to.unwrap_or(0),
                        error = %e,
                        "setting the weight failed"
                    );
                }
            }
        }
        done
    }

    /// IPVS writes made by the fast path since start.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The netlink client, for dumps (connection counts for `vipd status`).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}
