//! The fast path: writes weight changes to IPVS one destination at a time (one
//! `IPVS_CMD_SET_DEST` each, about 0.3 ms), without the full reconcile's dump. A backend
//! to be held out of the plane (see [`crate::plane::Held::weight`]) is deleted instead
//! (`IPVS_CMD_DEL_DEST`) and added back (`IPVS_CMD_NEW_DEST`) on re-admission. It
//! remembers what it last wrote, so a loop iteration without changes writes nothing.
//!
//! The writer owns its netlink socket and runs on the daemon's writer thread, with the
//! periodic full apply; what it knows of the kernel ([`Table`]) is shared with the
//! plane, whose own applies (start-up, reloads) reset it too. The daemon runs one write
//! or apply at a time, so they never interleave; the lock is held for bookkeeping only,
//! never across a netlink call.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use tracing::warn;
use vipd_ipvs::{Client, Destination};

use super::{ipvs_key, SharedApply};
use crate::{
    config::Config,
    model::{BackendId, ServiceKey},
    plane::{Applied, PlaneError, WeightSink, WeightWrites, Weights, Written},
    reconcile::DesiredState,
};

/// What the kernel holds, as far as vipd knows, and the config it is to hold.
#[derive(Default)]
pub struct Table {
    /// After the last reconcile and writes; `None`: the destination is not there.
    applied: BTreeMap<(ServiceKey, BackendId), Option<u32>>,
    /// The config as IPVS should hold it (destinations' other attributes).
    desired: DesiredState,
}

/// The [`Table`] shared by the plane and its writer.
#[derive(Clone, Default)]
pub struct SharedTable(Arc<Mutex<Table>>);

impl SharedTable {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic aborts the process (panic = "abort"): the lock is never poisoned.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a reconcile: the kernel now holds exactly these weights, for `desired`.
    pub fn reset(&self, weights: &Weights, desired: DesiredState) {
        let mut t = self.lock();
        t.applied = weights
            .iter()
            .map(|(key, id, held)| ((key, id), held.weight))
            .collect();
        t.desired = desired;
    }
}

pub struct WeightWriter {
    client: Client,
    table: SharedTable,
    full: SharedApply,
    failures: u64,
}

/// One write to make: the destination as it is to be, and whether it was there.
struct Pending {
    key: ServiceKey,
    dest: BackendId,
    from: Option<Option<u32>>,
    to: Option<u32>,
    destination: Destination,
}

impl WeightWriter {
    pub fn new(client: Client, table: SharedTable, full: SharedApply) -> Self {
        Self {
            client,
            table,
            full,
            failures: 0,
        }
    }

    /// The writes `weights` needs: every weight that differs from what was last
    /// written, with the rest of each destination as the config has it.
    fn pending(&self, weights: &Weights) -> Vec<Pending> {
        let t = self.table.lock();
        let mut out = Vec::new();
        for (key, dest, held) in weights.iter() {
            let to = held.weight;
            let from = t.applied.get(&(key, dest)).copied();
            if from == Some(to) {
                continue;
            }
            let Some(destination) = t
                .desired
                .services
                .get(&ipvs_key(key))
                .and_then(|s| s.dests.get(&dest))
                .map(|d| Destination {
                    weight: to.unwrap_or(0),
                    ..d.clone()
                })
            else {
                continue;
            };
            out.push(Pending {
                key,
                dest,
                from,
                to,
                destination,
            });
        }
        out
    }

    /// Writes every weight in `weights` that differs from what was last written. Work
    /// is proportional to the services given, not the table.
    pub fn sync(&mut self, weights: &Weights) -> Vec<Written> {
        let mut done = Vec::new();
        for p in self.pending(weights) {
            let ipvs = ipvs_key(p.key);
            // Unknown (never reconciled) counts as present: a reconcile creates it.
            let was_there = p.from != Some(None);
            let result = match (was_there, p.to) {
                (true, Some(_)) => self.client.set_destination(&ipvs, &p.destination),
                (false, Some(_)) => self.client.new_destination(&ipvs, &p.destination),
                (true, None) => self.client.del_destination(&ipvs, p.dest.ip, p.dest.port),
                (false, None) => Ok(()),
            };
            match result {
                Ok(()) => {
                    self.table.lock().applied.insert((p.key, p.dest), p.to);
                    let to = p.to.unwrap_or(0);
                    done.push(Written {
                        service: p.key,
                        dest: p.dest,
                        from: match p.from {
                            None => to,
                            Some(old) => old.unwrap_or(0),
                        },
                        to,
                        out_at_ns: None,
                    });
                }
                Err(e) => {
                    // Not recorded as applied: the retry (and the next reconcile, which
                    // recreates a missing destination) tries again.
                    self.failures += 1;
                    warn!(
                        ipvs_service = %p.key,
                        backend = %SocketAddr::from(p.dest),
                        weight = p.to.unwrap_or(0),
                        error = %e,
                        "setting the weight failed"
                    );
                }
            }
        }
        done
    }
}

impl WeightSink for WeightWriter {
    fn write(&mut self, weights: &Weights) -> Result<WeightWrites, PlaneError> {
        let failures_before = self.failures;
        let written = self.sync(weights);
        Ok(WeightWrites {
            ops: written.len() as u64,
            written,
            failed: self.failures - failures_before,
        })
    }

    fn apply(&mut self, config: &Config, weights: &Weights) -> Result<Applied, PlaneError> {
        self.full.run(config, weights, &self.table)
    }
}
