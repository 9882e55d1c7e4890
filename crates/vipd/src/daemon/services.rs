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
    config::{ActiveCheck, Config, Protocol, UdpProbe, UdpStaleFlows},
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
    /// The VIP the connection watcher reports on, with its IP protocol (address
    /// services).
    pub vip: Option<(u8, SocketAddr)>,
    /// UDP: how long a backend may stay silent (datagrams sent, no reply) before that
    /// counts as a failure; `None`: not watched.
    pub silence_window: Option<Duration>,
    /// UDP: what checks and probes send and expect (`None` on TCP services).
    pub udp_probe: Option<UdpProbe>,
    /// UDP with `udp_stale_flows = "expire"`: a backend the health machine takes out is
    /// deleted from IPVS rather than set to weight 0, so that IPVS moves its flows
    /// (`expire_nodest_conn`) instead of keeping clients that reuse a source port on
    /// it; re-admission adds it back.
    pub expire_on_quarantine: bool,
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

    /// How IPVS should hold `dest` at effective weight `weight`: `None` means not at all
    /// (quarantined in an `expire_on_quarantine` service, see there). A backend the
    /// config itself sets to weight 0 stays in IPVS: that is an operator's drain.
    pub fn kernel_weight(&self, dest: &DestId, weight: u32) -> Option<u32> {
        let configured = self.dests.get(dest).map_or(0, |d| d.weight);
        (weight > 0 || configured == 0 || !self.expire_on_quarantine).then_some(weight)
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
    /// (IP protocol, VIP) → service, for attributing the watcher's reports.
    pub by_vip: HashMap<(u8, SocketAddr), ServiceKey>,
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
            let vip = match spec.key {
                crate::config::ServiceKey::Addr { protocol, addr } => Some((
                    match protocol {
                        Protocol::Tcp => libc::IPPROTO_TCP as u8,
                        Protocol::Udp => libc::IPPROTO_UDP as u8,
                    },
                    addr,
                )),
                crate::config::ServiceKey::Fwmark { .. } => None,
            };
            let udp = matches!(vip, Some((p, _)) if p == libc::IPPROTO_UDP as u8);
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
                scheduler: if config.dataplane.xdp().is_some() {
                    "maglev".to_owned()
                } else {
                    spec.scheduler.as_str().to_owned()
                },
                vip,
                policy,
                check: hp
                    .and_then(|h| h.check)
                    .filter(|_| tcp || (udp && hp.is_some_and(|h| h.udp_probe.is_some()))),
                silence_window: hp.and_then(|h| h.silence_window).filter(|_| udp),
                udp_probe: hp.and_then(|h| h.udp_probe.clone()).filter(|_| udp),
                expire_on_quarantine: udp
                    && spec.udp_stale_flows.unwrap_or(UdpStaleFlows::Expire)
                        == UdpStaleFlows::Expire,
                probe_timeout: hp
                    .and_then(|h| h.probe_timeout)
                    .unwrap_or(DEFAULT_PROBE_TIMEOUT),
                dests: d.dests.clone(),
                health,
                stats,
            };
            if let Some(vip) = vip {
                out.by_vip.insert(vip, key);
            }
            out.by_key.insert(key, rt);
        }
        (out, transitions)
    }

    /// The service a watcher report belongs to.
    pub fn by_vip_mut(&mut self, protocol: u8, vip: &SocketAddr) -> Option<&mut ServiceRt> {
        let key = self.by_vip.get(&(protocol, *vip))?;
        self.by_key.get_mut(key)
    }

    /// The health machines' weights where they differ from the config's: what the
    /// reconciler must write instead (absent: see [`ServiceRt::kernel_weight`]).
    pub fn overrides(&self, now: Instant) -> WeightOverrides {
        let mut o = WeightOverrides::default();
        for (key, s) in &self.by_key {
            for (id, w) in s.effective_weights(now) {
                match s.kernel_weight(&id, w) {
                    None => o.set_absent(*key, id),
                    Some(w) if s.dests.get(&id).is_some_and(|d| d.weight != w) => {
                        o.set(*key, id, w)
                    }
                    Some(_) => {}
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

    /// How IPVS should hold every configured destination (`None`: not at all).
    pub fn kernel_weights(&self, now: Instant) -> BTreeMap<(ServiceKey, DestId), Option<u32>> {
        let mut out = BTreeMap::new();
        for (key, s) in &self.by_key {
            for (id, w) in s.effective_weights(now) {
                out.insert((*key, id), s.kernel_weight(&id, w));
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
