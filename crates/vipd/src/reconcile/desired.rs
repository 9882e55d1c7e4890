//! From a validated [`Config`] to the kernel's own terms: IPVS services and destinations in
//! exactly the form a kernel dump reports them (netmask from the prefix length, flag bits,
//! persistence timeout in seconds, tunnel parameters), so that comparing with a dump is an
//! equality test. A [`WeightOverrides`] layer goes on top (the health machine's quarantine
//! and slow start).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use vipd_ipvs::{
    AddressFamily, Destination, ForwardMethod, Netmask, Protocol, Service, ServiceFlags,
    ServiceKey, TunnelFlags, TunnelKind,
};

use crate::config::{
    self, Config, Family, Forwarding, ServiceFlag, ServiceSpec, TunnelChecksum, TunnelEncap,
    UdpStaleFlows,
};

/// A destination of a service: real server address and port.
pub type DestId = crate::model::BackendId;

/// What happens to a backend once it leaves the config (or its service does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalRule {
    /// TCP: weight 0 at once, deleted when its ActiveConn (established connections) is 0
    /// or the drain timeout has passed.
    DrainTcp,
    /// UDP or fwmark with `udp_stale_flows = "keep"`: weight 0 at once, deleted when its
    /// ActiveConn and InActConn are both 0 (every flow entry idled out) or the drain
    /// timeout has passed.
    DrainFlows,
    /// UDP or fwmark with `udp_stale_flows = "expire"` (the default): deleted at once, no
    /// drain. With `net.ipv4.vs.expire_nodest_conn = 1` IPVS expires each flow entry of the
    /// deleted destination at its next packet and schedules that packet again.
    Expire,
}

/// A service's [`RemovalRule`] and drain timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemovalPolicy {
    pub rule: RemovalRule,
    pub drain_timeout: Duration,
}

/// One service as the kernel should hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredService {
    /// The config's name, for messages and `vipd status`.
    pub name: String,
    /// Kernel-normal form; `stats` is `None`, the `HASHED` flag clear.
    pub service: Service,
    /// Kernel-normal form; connection counts and `stats` zero/`None`.
    pub dests: BTreeMap<DestId, Destination>,
    pub removal: RemovalPolicy,
}

/// Every service the config declares, by IPVS key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub services: BTreeMap<ServiceKey, DesiredService>,
}

impl DesiredState {
    /// Translates a validated config. Pure; never fails (the config is already checked).
    pub fn from_config(config: &Config) -> Self {
        let services = config
            .services
            .iter()
            .map(|spec| {
                let d = desired_service(spec);
                (d.service.key, d)
            })
            .collect();
        DesiredState { services }
    }

    /// Applies weight overrides on top of the config's weights. An override for a backend
    /// the config does not declare is ignored (it cannot create a backend). A backend
    /// overridden to absent leaves the desired state, and is removed by its service's
    /// [`RemovalRule`].
    pub fn with_overrides(mut self, overrides: &WeightOverrides) -> Self {
        for ((key, dest), weight) in &overrides.0 {
            let Some(s) = self.services.get_mut(key) else {
                continue;
            };
            match weight {
                Some(w) => {
                    if let Some(d) = s.dests.get_mut(dest) {
                        d.weight = *w;
                    }
                }
                None => {
                    s.dests.remove(dest);
                }
            }
        }
        self
    }

    /// The VIP addresses of address-keyed services (fwmark services have none).
    pub fn vip_addresses(&self) -> BTreeSet<IpAddr> {
        self.services.keys().filter_map(vip_address).collect()
    }
}

/// The VIP address of an address-keyed service.
pub fn vip_address(key: &ServiceKey) -> Option<IpAddr> {
    match key {
        ServiceKey::Addr { addr, .. } => Some(*addr),
        ServiceKey::Fwmark { .. } => None,
    }
}

/// Weights that replace the config's for some backends: how the health machine takes a
/// backend out (0) or ramps it back (slow start) without touching the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeightOverrides(pub BTreeMap<(ServiceKey, DestId), Option<u32>>);

impl WeightOverrides {
    pub fn set(&mut self, service: ServiceKey, dest: DestId, weight: u32) {
        self.0.insert((service, dest), Some(weight));
    }

    /// The backend is to be out of IPVS altogether (a quarantined UDP backend whose
    /// flows must move).
    pub fn set_absent(&mut self, service: ServiceKey, dest: DestId) {
        self.0.insert((service, dest), None);
    }

    pub fn clear(&mut self, service: &ServiceKey, dest: &DestId) {
        self.0.remove(&(*service, *dest));
    }
}

/// The IPVS key of a config service key.
pub fn ipvs_key(key: &config::ServiceKey) -> ServiceKey {
    match *key {
        config::ServiceKey::Addr { protocol, addr } => ServiceKey::Addr {
            addr: addr.ip(),
            protocol: match protocol {
                config::Protocol::Tcp => Protocol::Tcp,
                config::Protocol::Udp => Protocol::Udp,
            },
            port: addr.port(),
        },
        config::ServiceKey::Fwmark { family, mark } => ServiceKey::Fwmark {
            family: match family {
                Family::Ipv4 => AddressFamily::Inet,
                Family::Ipv6 => AddressFamily::Inet6,
            },
            mark,
        },
    }
}

fn desired_service(spec: &ServiceSpec) -> DesiredService {
    let key = ipvs_key(&spec.key);
    let mut service = Service::new(key, spec.scheduler.as_str());
    for flag in &spec.flags {
        service.flags |= match flag {
            ServiceFlag::OnePacket => ServiceFlags::ONE_PACKET,
            ServiceFlag::ShFallback => ServiceFlags::SH_FALLBACK,
            ServiceFlag::ShPort => ServiceFlags::SH_PORT,
            ServiceFlag::MhFallback => ServiceFlags::MH_FALLBACK,
            ServiceFlag::MhPort => ServiceFlags::MH_PORT,
        };
    }
    if let Some(p) = spec.persistence {
        service.flags |= ServiceFlags::PERSISTENT;
        // Validation keeps it to whole seconds, at most 31 days.
        service.timeout = u32::try_from(p.timeout.as_secs()).unwrap_or(u32::MAX);
        service.netmask = netmask(key.family(), p.netmask);
    }
    let forward = forward_method(spec.forwarding);
    let dests = spec
        .backends
        .iter()
        .map(|b| {
            let mut d = Destination::new(b.addr.ip(), b.addr.port(), forward);
            d.weight = u32::from(b.weight);
            d.upper_threshold = b.upper_threshold;
            d.lower_threshold = b.lower_threshold;
            (DestId::new(d.addr, d.port), d)
        })
        .collect();
    let rule = match (spec.key, spec.udp_stale_flows) {
        (
            config::ServiceKey::Addr {
                protocol: config::Protocol::Tcp,
                ..
            },
            _,
        ) => RemovalRule::DrainTcp,
        (_, Some(UdpStaleFlows::Keep)) => RemovalRule::DrainFlows,
        (_, Some(UdpStaleFlows::Expire) | None) => RemovalRule::Expire,
    };
    DesiredService {
        name: spec.name.clone(),
        service,
        dests,
        removal: RemovalPolicy {
            rule,
            drain_timeout: spec.drain_timeout,
        },
    }
}

/// The kernel's netmask for a persistence prefix length: an IPv4 mask, or the IPv6
/// prefix length itself.
pub fn netmask(family: AddressFamily, prefix: u8) -> Netmask {
    match family {
        AddressFamily::Inet => {
            let bits = match prefix {
                0 => 0,
                p => u32::MAX << (32 - u32::from(p.min(32))),
            };
            Netmask::V4(Ipv4Addr::from(bits))
        }
        AddressFamily::Inet6 => Netmask::V6Prefix(prefix),
    }
}

/// The kernel's forwarding method for the config's.
pub fn forward_method(f: Forwarding) -> ForwardMethod {
    match f {
        Forwarding::Masq => ForwardMethod::Masquerade,
        Forwarding::Route => ForwardMethod::DirectRoute,
        Forwarding::Tunnel(t) => {
            let (kind, port) = match t.encap {
                TunnelEncap::Ipip => (TunnelKind::Ipip, 0),
                TunnelEncap::Gue { port } => (TunnelKind::Gue, port),
                TunnelEncap::Gre => (TunnelKind::Gre, 0),
            };
            let flags = match t.checksum {
                TunnelChecksum::None => TunnelFlags::NO_CSUM,
                TunnelChecksum::Csum => TunnelFlags::CSUM,
                TunnelChecksum::RemCsum => TunnelFlags::REMCSUM,
            };
            ForwardMethod::Tunnel { kind, port, flags }
        }
    }
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
