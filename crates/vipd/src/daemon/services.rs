//! The daemon's table of services: for each configured service its IPVS key, the
//! destinations the config declares, its health machine, active-check settings and the
//! per-backend counters `vipd status` shows. Rebuilt on every (re)load, carrying over
//! the health state of every service and backend that is still configured.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;
use tracing::info;
use vipd_ipvs::{Destination, ServiceKey};

use super::{
    persist::HealthRecord,
    view::{OutcomeCounts, RecentRing},
};
use crate::{
    config::{ActiveCheck, Config, Protocol},
    health::{Policy, ServiceHealth, Transition},
    reconcile::{desired::DestId, DesiredState, WeightOverrides},
};

/// Default time a probation probe may take.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Counters of one backend.
#[derive(Debug, Default)]
pub struct BackendStats {
    pub counts: OutcomeCounts,
    pub recent: RecentRing,
    pub active_conns: u32,
    pub inactive_conns: u32,
}

/// One configured service at run time.
pub struct ServiceRt {
    pub name: String,
    pub key: ServiceKey,
    pub scheduler: String,
    /// The VIP the connection watcher reports on (TCP address services).
    pub tcp_vip: Option<SocketAddr>,
    pub policy: Policy,
    pub check: Option<ActiveCheck>,
    pub probe_timeout: Duration,
    /// The config's destinations, at their configured weights.
    pub dests: BTreeMap<DestId, Destination>,
    pub health: ServiceHealth,
    pub stats: BTreeMap<DestId, BackendStats>,
}

impl ServiceRt {
    /// Each configured destination's effective weight: the health machine's, else the
    /// configured one.
    pub fn effective_weights(&self, now: Instant) -> Vec<(DestId, u32)> {
        let weights = self.health.weights(now);
        self.dests
            .iter()
            .map(|(id, d)| (*id, weights.get(id).copied().unwrap_or(d.weight)))
            .collect()
    }

    /// The destination as IPVS should hold it with `weight`.
    pub fn destination(&self, dest: &DestId, weight: u32) -> Option<Destination> {
        self.dests.get(dest).map(|d| Destination {
            weight,
            ..d.clone()
        })
    }
}

/// All configured services.
#[derive(Default)]
pub struct Services {
    pub by_key: BTreeMap<ServiceKey, ServiceRt>,
    /// TCP VIP → service, for attributing the watcher's reports.
    pub by_vip: HashMap<SocketAddr, ServiceKey>,
}

impl Services {
    /// The table for `config`. Health state comes from `old` (a reload) for services
    /// still configured, else from `record` (a restart), else starts healthy.
    /// Transitions caused by the rebuild (e.g. a backend removed while it held the
    /// service in panic) are returned per service.
    pub fn build(
        config: &Config,
        mut old: Services,
        record: Option<&HealthRecord>,
        now: Instant,
        wall: SystemTime,
        seed: u64,
    ) -> (Services, Vec<(ServiceKey, Transition)>) {
        let desired = DesiredState::from_config(config);
        let mut out = Services::default();
        let mut transitions = Vec::new();
        for (i, spec) in config.services.iter().enumerate() {
            let key = crate::reconcile::desired::ipvs_key(&spec.key);
            let Some(d) = desired.services.get(&key) else {
                continue;
            };
            let tcp = matches!(
                spec.key,
                crate::config::ServiceKey::Addr {
                    protocol: Protocol::Tcp,
                    ..
                }
            );
            let tcp_vip = match spec.key {
                crate::config::ServiceKey::Addr {
                    protocol: Protocol::Tcp,
                    addr,
                } => Some(addr),
                _ => None,
            };
            let policy = Policy::from_config(spec.health.as_ref(), tcp);
            let backends: Vec<(DestId, u32)> = d
                .dests
                .iter()
                .map(|(id, dest)| (*id, dest.weight))
                .collect();
            let service_seed = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let (health, stats) = match old.by_key.remove(&key) {
                Some(mut prev) => {
                    for t in prev.health.update(policy.clone(), &backends, now) {
                        transitions.push((key, t));
                    }
                    (prev.health, prev.stats)
                }
                None => {
                    let health = match record.and_then(|r| r.service(&key)) {
                        Some(p) => {
                            info!(service = %spec.name, "health state restored from before the restart");
                            ServiceHealth::from_persisted(
                                policy.clone(),
                                &backends,
                                p,
                                now,
                                wall,
                                service_seed,
                            )
                        }
                        None => ServiceHealth::new(policy.clone(), &backends, service_seed),
                    };
                    (health, BTreeMap::new())
                }
            };
            let mut stats = stats;
            stats.retain(|id, _| d.dests.contains_key(id));
            for id in d.dests.keys() {
                stats.entry(*id).or_default();
            }
            let hp = spec.health.as_ref();
            let rt = ServiceRt {
                name: spec.name.clone(),
                key,
                scheduler: spec.scheduler.as_str().to_owned(),
                tcp_vip,
                policy,
                check: hp.and_then(|h| h.check).filter(|_| tcp),
                probe_timeout: hp
                    .and_then(|h| h.probe_timeout)
                    .unwrap_or(DEFAULT_PROBE_TIMEOUT),
                dests: d.dests.clone(),
                health,
                stats,
            };
            if let Some(vip) = tcp_vip {
                out.by_vip.insert(vip, key);
            }
            out.by_key.insert(key, rt);
        }
        (out, transitions)
    }

    /// The service a watcher report belongs to.
    pub fn by_vip_mut(&mut self, vip: &SocketAddr) -> Option<&mut ServiceRt> {
        let key = self.by_vip.get(vip)?;
        self.by_key.get_mut(key)
    }

    /// The health machines' weights where they differ from the config's: what the
    /// reconciler must write instead.
    pub fn overrides(&self, now: Instant) -> WeightOverrides {
        let mut o = WeightOverrides::default();
        for (key, s) in &self.by_key {
            for (id, w) in s.effective_weights(now) {
                if s.dests.get(&id).is_some_and(|d| d.weight != w) {
                    o.set(*key, id, w);
                }
            }
        }
        o
    }

    /// Every configured destination's effective weight.
    pub fn effective_weights(&self, now: Instant) -> BTreeMap<(ServiceKey, DestId), u32> {
        let mut out = BTreeMap::new();
        for (key, s) in &self.by_key {
            for (id, w) in s.effective_weights(now) {
                out.insert((*key, id), w);
            }
        }
        out
    }

    /// The earliest time any health machine needs a tick.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_key
            .values()
            .filter_map(|s| s.health.next_deadline())
            .min()
    }
}
