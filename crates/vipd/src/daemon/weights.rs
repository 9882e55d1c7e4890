//! The fast path: writes the health machines' weight changes to IPVS one destination at a
//! time (one `IPVS_CMD_SET_DEST` each, about 0.3 ms), without the full reconcile's dump.
//! A UDP backend whose flows must move (see [`super::services::ServiceRt::kernel_weight`])
//! is deleted instead (`IPVS_CMD_DEL_DEST`) and added back (`IPVS_CMD_NEW_DEST`) on
//! re-admission. It remembers what it last wrote, so a loop iteration without changes
//! writes nothing.

use std::collections::BTreeMap;

use tokio::time::Instant;
use tracing::{debug, warn};
use vipd_ipvs::{Client, ServiceKey};

use super::services::Services;
use crate::reconcile::desired::DestId;

/// One weight written (0 for a destination that is deleted or was absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub service: ServiceKey,
    pub dest: DestId,
    pub from: u32,
    pub to: u32,
}

pub struct WeightWriter {
    client: Client,
    /// What the kernel holds, as far as vipd knows (after the last reconcile and
    /// writes); `None`: the destination is not there.
    applied: BTreeMap<(ServiceKey, DestId), Option<u32>>,
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
    pub fn reset(&mut self, applied: BTreeMap<(ServiceKey, DestId), Option<u32>>) {
        self.applied = applied;
    }

    /// Writes every effective weight of the `dirty` services that differs from what was
    /// last written. Work is proportional to the services that changed, not the table.
    pub fn sync<'a>(
        &mut self,
        services: &Services,
        dirty: impl IntoIterator<Item = &'a ServiceKey>,
        now: Instant,
    ) -> Vec<Written> {
        let mut done = Vec::new();
        let mut wanted = Vec::new();
        for key in dirty {
            if let Some(s) = services.by_key.get(key) {
                wanted.extend(
                    s.effective_weights(now)
                        .into_iter()
                        .map(|(id, w)| (*key, id, s.kernel_weight(&id, w))),
                );
            }
        }
        for (key, dest, to) in wanted {
            let from = self.applied.get(&(key, dest)).copied();
            if from == Some(to) {
                continue;
            }
            let Some(d) = services
                .by_key
                .get(&key)
                .and_then(|s| s.destination(&dest, to.unwrap_or(0)))
            else {
                continue;
            };
            // Unknown (never reconciled) counts as present: a reconcile creates it.
            let was_there = from != Some(None);
            let result = match (was_there, to) {
                (true, Some(_)) => self.client.set_destination(&key, &d),
                (false, Some(_)) => self.client.new_destination(&key, &d),
                (true, None) => self.client.del_destination(&key, dest.0, dest.1),
                (false, None) => Ok(()),
            };
            match result {
                Ok(()) => {
                    self.writes += 1;
                    self.applied.insert((key, dest), to);
                    debug!(service = %key, backend = ?dest, ?to, "weight written");
                    let old = from.flatten().unwrap_or(0);
                    done.push(Written {
                        service: key,
                        dest,
                        from: if from.is_none() { to.unwrap_or(0) } else { old },
                        to: to.unwrap_or(0),
                    });
                }
                Err(e) => {
                    // Not recorded as applied: the next pass (and the next reconcile,
                    // which recreates a missing destination) tries again.
                    self.failures += 1;
                    warn!(service = %key, backend = ?dest, weight = to, "setting the weight failed: {e}");
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
