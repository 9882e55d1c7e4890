//! The XDP program's health records fed to the same per-backend state machine as the
//! IPVS data plane ([`crate::health::ServiceHealth`]), one per service, and the
//! effective weights it decides turned back into what the data plane should hold.
//!
//! Signals: an RST answering a SYN is [`Signal::Refused`]; an ICMP destination
//! unreachable from the backend's side is [`Signal::Unreachable`], which counts as a
//! refusal (nothing takes the traffic there: UDP port unreachable, host unreachable),
//! as on the IPVS data plane; a late SYN repeat is
//! [`Signal::SynRetransmit`]; the backend's SYN-ACK is [`Signal::Success`].

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use tokio::time::Instant;
use vipd_common::{
    xdp::{XdpHealthEvent, XdpHealthKind},
    AF_INET, IPPROTO_TCP,
};

use super::{desired, XdpServiceSpec};
use crate::{
    config::{Config, Protocol, ServiceKey},
    health::{DestId, Policy, ServiceHealth, Signal, Transition},
};

/// What a record says, about which service and backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub service: ServiceKey,
    pub dest: DestId,
    pub signal: Signal,
}

fn ip(family: u8, a: &[u8; 16]) -> IpAddr {
    if u16::from(family) == AF_INET {
        Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()
    } else {
        Ipv6Addr::from(*a).into()
    }
}

/// The service, backend and signal of a record; `None` for a service the config does
/// not have (any more) or an unknown kind.
pub fn observation(config: &Config, ev: &XdpHealthEvent) -> Option<Observation> {
    let signal = match XdpHealthKind::from_u8(ev.kind)? {
        XdpHealthKind::Refused => Signal::Refused,
        XdpHealthKind::Unreachable => Signal::Unreachable,
        XdpHealthKind::SynRetransmit => Signal::SynRetransmit,
        XdpHealthKind::Established => Signal::Success,
    };
    let vip = SocketAddr::new(ip(ev.family, &ev.vip), ev.vport);
    let service = desired::service_of(config, vip, ev.protocol)?;
    Some(Observation {
        service: service.key,
        dest: (ip(ev.family, &ev.backend), ev.bport),
        signal,
    })
}

/// The health machines of every service.
pub struct XdpHealth {
    services: BTreeMap<ServiceKey, ServiceHealth>,
    seed: u64,
}

fn backends(s: &crate::config::ServiceSpec) -> Vec<(DestId, u32)> {
    s.backends
        .iter()
        .map(|b| ((b.addr.ip(), b.addr.port()), u32::from(b.weight)))
        .collect()
}

fn policy(s: &crate::config::ServiceSpec) -> Policy {
    let tcp = matches!(
        s.key,
        ServiceKey::Addr {
            protocol: Protocol::Tcp,
            ..
        }
    );
    Policy::from_config(s.health.as_ref(), tcp)
}

impl XdpHealth {
    pub fn new(config: &Config, seed: u64) -> Self {
        let mut h = XdpHealth {
            services: BTreeMap::new(),
            seed,
        };
        h.update(config, Instant::now());
        h
    }

    /// A reload: services and backends still configured keep their state.
    pub fn update(&mut self, config: &Config, now: Instant) -> Vec<(ServiceKey, Transition)> {
        let mut out = Vec::new();
        let mut kept = BTreeMap::new();
        for s in &config.services {
            let (p, b) = (policy(s), backends(s));
            let h = match self.services.remove(&s.key) {
                Some(mut h) => {
                    out.extend(h.update(p, &b, now).into_iter().map(|t| (s.key, t)));
                    h
                }
                None => {
                    self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    ServiceHealth::new(p, &b, self.seed)
                }
            };
            kept.insert(s.key, h);
        }
        self.services = kept;
        out
    }

    /// Feeds one record; returns the transitions it caused.
    pub fn observe(
        &mut self,
        config: &Config,
        ev: &XdpHealthEvent,
        now: Instant,
    ) -> Vec<(ServiceKey, Transition)> {
        let Some(o) = observation(config, ev) else {
            return Vec::new();
        };
        let Some(h) = self.services.get_mut(&o.service) else {
            return Vec::new();
        };
        h.observe(now, o.dest, o.signal)
            .into_iter()
            .map(|t| (o.service, t))
            .collect()
    }

    /// A probe's result.
    pub fn probed(
        &mut self,
        service: ServiceKey,
        dest: DestId,
        ok: bool,
        now: Instant,
    ) -> Vec<(ServiceKey, Transition)> {
        let signal = if ok {
            Signal::CheckPassed
        } else {
            Signal::CheckFailed
        };
        match self.services.get_mut(&service) {
            Some(h) => h
                .observe(now, dest, signal)
                .into_iter()
                .map(|t| (service, t))
                .collect(),
            None => Vec::new(),
        }
    }

    pub fn tick(&mut self, now: Instant) -> Vec<(ServiceKey, Transition)> {
        self.services
            .iter_mut()
            .flat_map(|(k, h)| h.tick(now).into_iter().map(move |t| (*k, t)))
            .collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.services
            .values()
            .filter_map(ServiceHealth::next_deadline)
            .min()
    }

    /// What the data plane should hold now: the config with the effective weights.
    pub fn specs(&self, config: &Config, now: Instant) -> Vec<XdpServiceSpec> {
        let weights: BTreeMap<ServiceKey, BTreeMap<DestId, u32>> = self
            .services
            .iter()
            .map(|(k, h)| (*k, h.weights(now)))
            .collect();
        desired::specs_with(config, |s, b| {
            weights
                .get(&s.key)
                .and_then(|w| w.get(&(b.addr.ip(), b.addr.port())))
                .copied()
                .unwrap_or(u32::from(b.weight))
        })
    }

    /// Whether a service is TCP (probes are TCP connects).
    pub fn is_tcp(key: &ServiceKey) -> bool {
        matches!(
            key,
            ServiceKey::Addr {
                protocol: Protocol::Tcp,
                ..
            }
        )
    }
}

/// The protocol number of a TCP service's records, for tests.
pub const TCP: u8 = IPPROTO_TCP as u8;

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        crate::config::parse(
            "t.toml",
            "dataplane = \"xdp\"\n[xdp]\ninterface = \"eth0\"\n\
             [[service]]\nname = \"w\"\nvip = \"198.18.100.1:80\"\n\
             backend = [{ address = \"198.18.2.11:8080\", weight = 2 }, { address = \"198.18.2.12:8080\", weight = 2 }]\n",
        )
        .unwrap()
    }

    fn event(kind: XdpHealthKind, backend: [u8; 4]) -> XdpHealthEvent {
        let mut ev = XdpHealthEvent {
            kind: kind as u8,
            family: AF_INET as u8,
            protocol: TCP,
            vport: 80,
            bport: 8080,
            cport: 40000,
            ..Default::default()
        };
        ev.vip[..4].copy_from_slice(&[198, 18, 100, 1]);
        ev.backend[..4].copy_from_slice(&backend);
        ev
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_quarantines_the_backend_and_its_weight_goes_to_zero() {
        let cfg = config();
        let mut h = XdpHealth::new(&cfg, 1);
        let now = Instant::now();
        let t = h.observe(&cfg, &event(XdpHealthKind::Refused, [198, 18, 2, 11]), now);
        assert!(
            matches!(
                t.as_slice(),
                [(
                    _,
                    Transition::Quarantined {
                        cause: Signal::Refused,
                        ..
                    }
                )]
            ),
            "{t:?}"
        );
        let specs = h.specs(&cfg, now);
        assert_eq!(
            specs[0].backends,
            vec![
                ("198.18.2.11:8080".parse().unwrap(), 0),
                ("198.18.2.12:8080".parse().unwrap(), 2)
            ]
        );
        // Records for a VIP the config does not have are ignored.
        let mut other = event(XdpHealthKind::Refused, [198, 18, 2, 12]);
        other.vport = 81;
        assert!(h.observe(&cfg, &other, now).is_empty());
    }

    #[test]
    fn kinds_map_to_the_ipvs_signals() {
        let cfg = config();
        let o = |k| {
            observation(&cfg, &event(k, [198, 18, 2, 12]))
                .unwrap()
                .signal
        };
        assert_eq!(o(XdpHealthKind::Refused), Signal::Refused);
        assert_eq!(o(XdpHealthKind::Unreachable), Signal::Unreachable);
        assert_eq!(o(XdpHealthKind::SynRetransmit), Signal::SynRetransmit);
        assert_eq!(o(XdpHealthKind::Established), Signal::Success);
    }
}
