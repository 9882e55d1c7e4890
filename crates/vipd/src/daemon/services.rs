//! The daemon's table of services: for each configured service its key, the backends
//! the config declares with their weights, its health machine, active-check settings and
//! the per-backend counters `vipd status` shows. Rebuilt on every (re)load, carrying over
//! the health state of every service and backend that is still configured.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;
use tracing::info;

use super::{
    admin::Drains,
    persist::HealthRecord,
    view::{OutcomeCounts, RecentRing},
};
use crate::{
    config::{ActiveCheck, Config, Protocol, UdpProbe, UdpStaleFlows},
    health::{Policy, ServiceHealth, Transition},
    model::{BackendId, ServiceKey, Vip},
    plane::{Held, Weights},
};

/// Default time a probation probe may take.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Counters of one backend.
#[derive(Debug, Default)]
pub struct BackendStats {
    /// The backend's address as metrics and logs name it, made once (an outcome is
    /// counted per connection).
    pub label: String,
    pub counts: OutcomeCounts,
    pub recent: RecentRing,
    pub active_conns: u32,
    pub inactive_conns: u32,
    /// Clients its service's persistence keeps on it; `None`: not counted (no
    /// persistence, or a plane that does not count them).
    pub sticky_clients: Option<u32>,
}

/// One configured service at run time.
pub struct ServiceRt {
    pub name: String,
    pub key: ServiceKey,
    pub scheduler: String,
    /// UDP: how long a backend may stay silent (datagrams sent, no reply) before that
    /// counts as a failure; `None`: not watched.
    pub silence_window: Option<Duration>,
    /// TCP: the initial SYN retransmission timeout the plane gives clients'
    /// connections to the VIP (fixed or adaptive); `None`: the kernel's default.
    pub syn_rto: Option<crate::config::SynRto>,
    /// UDP: what checks and probes send and expect (`None` on TCP services).
    pub udp_probe: Option<UdpProbe>,
    /// UDP with `udp_stale_flows = "expire"`: a backend the health machine takes out
    /// leaves the data plane rather than staying at weight 0, so that its flows move
    /// (IPVS: `expire_nodest_conn`) instead of keeping clients that reuse a source port
    /// on it; re-admission adds it back.
    pub expire_on_quarantine: bool,
    pub policy: Policy,
    pub check: Option<ActiveCheck>,
    pub probe_timeout: Duration,
    /// The config's backends, with their configured weights.
    pub dests: BTreeMap<BackendId, u32>,
    /// The backends an operator drained (`vipd drain`): weight 0, kept in the plane.
    pub drained: BTreeSet<BackendId>,
    pub health: ServiceHealth,
    pub stats: BTreeMap<BackendId, BackendStats>,
}

impl ServiceRt {
    /// Each configured destination's effective weight: the health machine's, else the
    /// configured one.
    pub fn effective_weights(&self, now: Instant) -> Vec<(BackendId, u32)> {
        let weights = self.health.weights(now);
        self.dests
            .iter()
            .map(|(id, w)| (*id, weights.get(id).copied().unwrap_or(*w)))
            .collect()
    }

    /// How the data plane should hold `dest` at effective weight `weight`: `None` means
    /// not at all (quarantined in an `expire_on_quarantine` service, see there). A
    /// backend the config sets to weight 0, or an operator drained, stays: its
    /// connections finish where they are.
    pub fn held_weight(&self, dest: &BackendId, weight: u32) -> Option<u32> {
        let configured = self.dests.get(dest).copied().unwrap_or(0);
        let drained = configured == 0 || self.drained.contains(dest);
        (weight > 0 || drained || !self.expire_on_quarantine).then_some(weight)
    }

    /// The backends with the weights the health machine starts from: the configured
    /// ones, 0 for a drained backend.
    pub fn machine_weights(&self) -> Vec<(BackendId, u32)> {
        machine_weights(&self.dests, &self.drained)
    }

    /// The service's VIP (address services).
    pub fn vip(&self) -> Option<Vip> {
        self.key.vip()
    }
}

fn machine_weights(
    dests: &BTreeMap<BackendId, u32>,
    drained: &BTreeSet<BackendId>,
) -> Vec<(BackendId, u32)> {
    dests
        .iter()
        .map(|(id, w)| (*id, if drained.contains(id) { 0 } else { *w }))
        .collect()
}

/// All configured services.
#[derive(Default)]
pub struct Services {
    pub by_key: BTreeMap<ServiceKey, ServiceRt>,
}

impl Services {
    /// The table for `config`. Health state comes from `old` (a reload) for services
    /// still configured, else from `record` (a restart), else starts healthy; the
    /// backends in `drains` are held at weight 0. Transitions caused by the rebuild
    /// (e.g. a backend removed while it held the service in panic) are returned per
    /// service.
    pub fn build(
        config: &Config,
        mut old: Services,
        record: Option<&HealthRecord>,
        drains: &Drains,
        now: Instant,
        wall: SystemTime,
        seed: u64,
    ) -> (Services, Vec<(ServiceKey, Transition)>) {
        let mut out = Services::default();
        let mut transitions = Vec::new();
        for (i, spec) in config.services.iter().enumerate() {
            let key = ServiceKey::from(spec.key);
            let vip = key.vip();
            let tcp = vip.is_some_and(|v| v.protocol == Protocol::Tcp);
            let udp = vip.is_some_and(Vip::is_udp);
            let policy = Policy::from_config(spec.health.as_ref(), tcp);
            let dests: BTreeMap<BackendId, u32> = spec
                .backends
                .iter()
                .map(|b| (BackendId::from(b.addr), u32::from(b.weight)))
                .collect();
            let drained: BTreeSet<BackendId> = dests
                .keys()
                .filter(|id| drains.contains(&spec.name, SocketAddr::from(**id)))
                .copied()
                .collect();
            let backends = machine_weights(&dests, &drained);
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
            stats.retain(|id, _| dests.contains_key(id));
            for id in dests.keys() {
                stats.entry(*id).or_insert_with(|| BackendStats {
                    label: std::net::SocketAddr::from(*id).to_string(),
                    ..BackendStats::default()
                });
            }
            let hp = spec.health.as_ref();
            let rt = ServiceRt {
                name: spec.name.clone(),
                key,
                scheduler: if config.dataplane.xdp().is_some() {
                    "maglev".to_owned()
                } else if config.dataplane.socket().is_some() {
                    "random".to_owned()
                } else {
                    spec.scheduler.as_str().to_owned()
                },
                policy,
                check: hp
                    .and_then(|h| h.check)
                    .filter(|_| tcp || (udp && hp.is_some_and(|h| h.udp_probe.is_some()))),
                silence_window: hp.and_then(|h| h.silence_window).filter(|_| udp),
                syn_rto: hp.and_then(|h| h.syn_rto).filter(|_| tcp),
                udp_probe: hp.and_then(|h| h.udp_probe.clone()).filter(|_| udp),
                expire_on_quarantine: udp
                    && spec.udp_stale_flows.unwrap_or(UdpStaleFlows::Expire)
                        == UdpStaleFlows::Expire,
                probe_timeout: hp
                    .and_then(|h| h.probe_timeout)
                    .unwrap_or(DEFAULT_PROBE_TIMEOUT),
                dests,
                drained,
                health,
                stats,
            };
            out.by_key.insert(key, rt);
        }
        (out, transitions)
    }

    /// How the data plane should hold every backend of `services` (`None`: of every
    /// service).
    pub fn weights(&self, now: Instant, services: Option<&BTreeSet<ServiceKey>>) -> Weights {
        let chosen: Vec<(&ServiceKey, &ServiceRt)> = match services {
            Some(only) => only
                .iter()
                .filter_map(|k| self.by_key.get_key_value(k))
                .collect(),
            None => self.by_key.iter().collect(),
        };
        let mut out = Weights::default();
        for (key, s) in chosen {
            for (id, w) in s.effective_weights(now) {
                let held = Held {
                    configured: s.dests.get(&id).copied().unwrap_or(0),
                    weight: s.held_weight(&id, w),
                };
                out.insert(*key, id, held);
            }
        }
        out
    }

    /// The earliest time any health machine needs a tick.
    /// A service's configured name (empty for a key no longer configured).
    pub fn name(&self, key: &ServiceKey) -> &str {
        self.by_key.get(key).map_or("", |s| s.name.as_str())
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_key
            .values()
            .filter_map(|s| s.health.next_deadline())
            .min()
    }
}
