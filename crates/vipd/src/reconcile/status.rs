//! `vipd status`'s view: every IPVS service in the kernel with its backends, counters and
//! rates, each service marked as vipd's (with its config name) or foreign, and vipd's
//! draining backends marked with when their drain began.

use std::{path::Path, time::SystemTime};

use serde::{Deserialize, Serialize};
use vipd_ipvs::{Client, Destination, Protocol, Service, ServiceFlags, ServiceKey, Stats};

use super::{
    desired::DestId,
    error::ReconcileError,
    op::{endpoint, forward_text},
    snapshot::Snapshot,
    state::{self, Ownership},
};

/// Counters since creation (or the last zeroing) and the kernel's rate estimates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsView {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

impl From<Stats> for StatsView {
    fn from(s: Stats) -> Self {
        StatsView {
            conns: s.conns,
            inpkts: s.inpkts,
            outpkts: s.outpkts,
            inbytes: s.inbytes,
            outbytes: s.outbytes,
            cps: s.cps,
            inpps: s.inpps,
            outpps: s.outpps,
            inbps: s.inbps,
            outbps: s.outbps,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendView {
    /// `198.18.1.2:8080`, `[fd00:18:1::2]:8080`.
    pub address: String,
    /// `masq`, `route`, `tunnel gue:6080 csum`, ...
    pub forward: String,
    pub weight: u32,
    pub upper_threshold: u32,
    pub lower_threshold: u32,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub persistent_conns: u32,
    /// When vipd began draining it (it left the config), if it is draining.
    pub draining_since_unix_ms: Option<u64>,
    pub stats: StatsView,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// `TCP`, `UDP`, `SCTP`, `FWM`.
    pub protocol: String,
    /// `198.18.0.10:80`, `[fd00:18::10]:53`, or the fwmark (`5`, `5 IPv6`).
    pub address: String,
    /// `vipd` or `foreign`.
    pub owner: String,
    /// The config name, for vipd's services.
    pub name: Option<String>,
    pub scheduler: String,
    /// Flag names as ipvsadm shows them (`persistent`, `ops`, `sh-fallback`, ...).
    pub flags: Vec<String>,
    pub persistence_timeout: Option<u32>,
    pub active_conns: u64,
    pub inactive_conns: u64,
    pub stats: StatsView,
    pub backends: Vec<BackendView>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub services: Vec<ServiceView>,
    /// The IPVS sysctls vipd sets, as `name=value`.
    #[serde(default)]
    pub sysctls: Vec<String>,
}

/// Reads the kernel (every service, every backend) and the ownership record (unlocked,
/// read-only).
pub fn read(state_file: &Path) -> Result<StatusView, ReconcileError> {
    let owned = state::read(state_file)?;
    let mut client = Client::connect().map_err(ReconcileError::Connect)?;
    let kernel = Snapshot::read(&mut client, |_| true)?;
    let mut v = view(&kernel, &owned);
    v.sysctls = crate::reach::sysctl::current();
    Ok(v)
}

/// The view of a snapshot (pure).
pub fn view(kernel: &Snapshot, owned: &Ownership) -> StatusView {
    let services = kernel
        .services
        .iter()
        .map(|(key, ks)| {
            let backends: Vec<BackendView> =
                ks.dests.values().map(|d| backend(key, d, owned)).collect();
            let (protocol, address) = key_columns(key);
            let s = &ks.service;
            ServiceView {
                protocol,
                address,
                owner: if owned.owns(key) { "vipd" } else { "foreign" }.to_owned(),
                name: owned.services.get(key).map(|o| o.name.clone()),
                scheduler: s.scheduler.clone(),
                flags: flag_names(s),
                persistence_timeout: s
                    .flags
                    .contains(ServiceFlags::PERSISTENT)
                    .then_some(s.timeout),
                active_conns: backends.iter().map(|b| u64::from(b.active_conns)).sum(),
                inactive_conns: backends.iter().map(|b| u64::from(b.inactive_conns)).sum(),
                stats: s.stats.map(StatsView::from).unwrap_or_default(),
                backends,
            }
        })
        .collect();
    StatusView {
        services,
        sysctls: Vec::new(),
    }
}

fn backend(key: &ServiceKey, d: &Destination, owned: &Ownership) -> BackendView {
    BackendView {
        address: endpoint(d.addr, d.port),
        forward: forward_text(&d.forward),
        weight: d.weight,
        upper_threshold: d.upper_threshold,
        lower_threshold: d.lower_threshold,
        active_conns: d.active_conns,
        inactive_conns: d.inactive_conns,
        persistent_conns: d.persistent_conns,
        draining_since_unix_ms: owned
            .drains
            .get(&(*key, DestId::new(d.addr, d.port)))
            .map(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
        stats: d.stats.map(StatsView::from).unwrap_or_default(),
    }
}

fn key_columns(key: &ServiceKey) -> (String, String) {
    match key {
        ServiceKey::Addr {
            addr,
            protocol,
            port,
        } => {
            let p = match protocol {
                Protocol::Tcp => "TCP".to_owned(),
                Protocol::Udp => "UDP".to_owned(),
                Protocol::Sctp => "SCTP".to_owned(),
                Protocol::Other(n) => format!("P{n}"),
            };
            (p, endpoint(*addr, *port))
        }
        ServiceKey::Fwmark { family, mark } => (
            "FWM".to_owned(),
            match family {
                vipd_ipvs::AddressFamily::Inet => mark.to_string(),
                vipd_ipvs::AddressFamily::Inet6 => format!("{mark} IPv6"),
            },
        ),
    }
}

/// Flag names as ipvsadm spells them; the scheduler-specific bits by scheduler.
fn flag_names(s: &Service) -> Vec<String> {
    let mut out = Vec::new();
    let f = s.flags;
    if f.contains(ServiceFlags::PERSISTENT) {
        out.push("persistent".to_owned());
    }
    if f.contains(ServiceFlags::ONE_PACKET) {
        out.push("ops".to_owned());
    }
    let (one, two) = match s.scheduler.as_str() {
        "sh" => ("sh-fallback", "sh-port"),
        "mh" => ("mh-fallback", "mh-port"),
        _ => ("flag-1", "flag-2"),
    };
    if f.contains(ServiceFlags::SCHED1) {
        out.push(one.to_owned());
    }
    if f.contains(ServiceFlags::SCHED2) {
        out.push(two.to_owned());
    }
    if f.contains(ServiceFlags::SCHED3) {
        out.push("flag-3".to_owned());
    }
    out
}
