//! The socket data plane (`dataplane = "socket"`): the cgroup programs on one cgroup
//! v2 directory and their maps. The daemon drives it as it drives the others: the health
//! machines' effective weights become each service's selection (only services whose
//! selection changed are written, one map write each), so a backend whose weight drops
//! to 0 takes no new socket from the moment of that write. A socket keeps the backend it
//! connected to, except a connected UDP socket of a backend taken out of its service
//! (see [`crate::sockplane::udp_destroy`]).
//!
//! The programs and maps are pinned, so balancing goes on while vipd is stopped or
//! upgraded; a restarted vipd adopts what the maps hold and writes nothing when nothing
//! changed. Passive detection: for each TCP connection the connect hook translated, the
//! `sock_ops` program reports its SYN retransmissions and its establishment, and the
//! `tcp_receive_reset` tracepoint an RST during its handshake (a refusal); the socket's
//! peer is the backend itself, so nothing needs attributing. An ICMP error on a connected
//! UDP socket it translated is reported from `inet_sk_error_report` the same way;
//! unconnected UDP's errors and silent UDP backends are left to active checks.
//!
//! Services with `persistence` have their timeout and netmask in their selection's
//! value; the kernel programs keep each client's backend (`SOCK_AFFINITY`). `syn_rto`
//! is written per VIP to `SOCK_SYN_RTO` ([`syn_rto`]), which `sock_ops` applies to the
//! connections the connect hook translated.

mod handshakes;
mod mode;
mod syn_rto;

use std::{
    collections::BTreeMap,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use tracing::{debug, info, warn};
use vipd_common::sock::stat;

use super::{
    held_map::{applied, members, weight_writes, HeldMap},
    Applied, DataPlane, PlaneError, PlaneStatus, StickyCounts, Ticks, WeightWrites, Weights,
    Written,
};
use crate::{
    clock,
    config::{Config, SocketSettings},
    fs_type,
    model::{health_record::take_reports, BackendId, Counters, Report, ServiceKey},
    sockplane::{
        loader::Attached,
        udp_destroy::{taken_out, UdpExpiry},
        Dataplane, Sizes, SockError, SockPersistence, SockProgram, SockServiceSpec,
    },
};
use mode::mode;
use syn_rto::SynRtoVips;

/// Where the links and state maps are pinned (overridable for tests).
pub fn pin_dir() -> PathBuf {
    std::env::var_os("VIPD_SOCKET_PIN_DIR")
        .map_or_else(|| PathBuf::from(SocketSettings::PIN_DIR), PathBuf::from)
}

/// For a vipd started with another data plane: the socket plane's pinned programs, if
/// an earlier vipd left them, would go on translating VIPs beside it. Removes them (only
/// what is provably vipd's, see [`crate::sockplane::pins`]) and says what it did.
pub fn retire_pins() {
    let dir = pin_dir();
    if !dir.exists() {
        return;
    }
    match crate::sockplane::pins::remove_ours(&dir) {
        Ok(r) => {
            if !r.removed.is_empty() {
                info!(
                    pins = r.removed.len(),
                    dir = %dir.display(),
                    "removed the socket data plane's pinned programs and maps (this config uses another data plane)"
                );
            }
            if !r.kept.is_empty() {
                warn!(
                    kept = ?r.kept,
                    "pins under the socket data plane's names that are not provably vipd's were left in place"
                );
            }
        }
        Err(e) => warn!(
            dir = %dir.display(),
            "removing the socket data plane's pins failed: {e}; its programs may still translate VIPs"
        ),
    }
}

pub struct SocketPlane {
    /// Keeps the programs loaded (the pinned links keep them attached).
    _prog: SockProgram,
    dp: Dataplane,
    settings: SocketSettings,
    pins: PathBuf,
    /// How the programs were attached at start.
    attached: Vec<Attached>,
    /// Each service's spec as last handed to the data plane.
    specs: BTreeMap<ServiceKey, SockServiceSpec>,
    /// What the maps hold per backend.
    applied: HeldMap,
    /// The persistence of the services that have it, from the running config.
    persistence: BTreeMap<ServiceKey, SockPersistence>,
    syn_rto: SynRtoVips,
    /// Reports taken from the ring buffer, before the SYN timeouts' rule.
    taken: Vec<Report>,
    mode: String,
    /// Waiting on the health ring buffer failed: no more records are read.
    events_failed: bool,
    decode_errors: u64,
    /// The kernel's lost-record counter when this vipd started.
    lost_at_start: u64,
    /// Destroys connected UDP sockets of backends taken out of a service.
    udp_expiry: UdpExpiry,
}

/// The programs' count of records they could not queue.
fn lost_counter(dp: &Dataplane) -> Result<u64, SockError> {
    Ok(dp.maps().stats()?[stat::EVENTS_LOST as usize])
}

/// Checks that `dir` is a cgroup v2 directory before anything is loaded.
fn check_cgroup(dir: &Path) -> Result<(), PlaneError> {
    match fs_type::magic(dir) {
        Err(e) => Err(PlaneError::Socket(format!("cgroup {}: {e}", dir.display()))),
        Ok(fs_type::CGROUP2_SUPER_MAGIC) => Ok(()),
        Ok(_) => Err(PlaneError::Socket(format!(
            "cgroup {} is not on a cgroup v2 file system (the socket data plane attaches to cgroup v2)",
            dir.display()
        ))),
    }
}

impl SocketPlane {
    /// Loads the programs, attaches them to the configured cgroup through pinned links
    /// (taking over an earlier vipd's links in place) and adopts what the maps hold.
    pub fn start(s: &SocketSettings) -> Result<Self, PlaneError> {
        Self::start_with(s, &pin_dir())
    }

    /// As [`SocketPlane::start`], with the pins in `pins`.
    pub fn start_with(s: &SocketSettings, pins: &Path) -> Result<Self, PlaneError> {
        check_cgroup(&s.cgroup)?;
        fs_type::ensure_bpffs().map_err(SockError::io("mounting bpffs on /sys/fs/bpf"))?;
        let mut prog = SockProgram::load(Sizes::default(), Some(pins))?;
        for r in prog.recreated() {
            warn!(
                map = r.map,
                dir = %pins.display(),
                "the pinned map had another layout ({}); created afresh, its entries are lost",
                r.why
            );
        }
        let attached = prog.attach(&s.cgroup, Some(pins))?;
        let no_reset = prog.attach_reset()?;
        if let Some(why) = &no_reset {
            warn!("TCP refusals are not reported by the socket data plane here: {why}");
        }
        let no_errors = prog.attach_error_report()?;
        if let Some(why) = &no_errors {
            warn!("ICMP errors on connected UDP sockets are not reported by the socket data plane here: {why}");
        }
        let no_udp_errors = prog.attach_udp_errors();
        if let Some(why) = &no_udp_errors {
            warn!("ICMP errors about unconnected UDP datagrams are not reported by the socket data plane here: {why}");
        }
        let mode = mode(
            no_reset.as_deref(),
            no_errors.as_deref(),
            no_udp_errors.as_deref(),
        );
        let dp = Dataplane::adopt(prog.take_maps()?)?;
        Ok(SocketPlane {
            lost_at_start: lost_counter(&dp).unwrap_or(0),
            mode,
            events_failed: false,
            decode_errors: 0,
            _prog: prog,
            dp,
            settings: s.clone(),
            pins: pins.to_path_buf(),
            attached,
            specs: BTreeMap::new(),
            applied: HeldMap::default(),
            persistence: BTreeMap::new(),
            syn_rto: SynRtoVips::default(),
            taken: Vec::new(),
            udp_expiry: UdpExpiry::default(),
        })
    }

    pub fn settings(&self) -> &SocketSettings {
        &self.settings
    }

    /// For `vipd status`: where the programs run.
    pub fn describe(&self) -> String {
        let replaced = self
            .attached
            .iter()
            .filter(|a| **a == Attached::Replaced)
            .count();
        format!(
            "socket: connect, getpeername, sendmsg, recvmsg (v4, v6), sock_ops and sock_release on cgroup {} (links pinned in {}{})",
            self.settings.cgroup.display(),
            self.pins.display(),
            if replaced > 0 {
                format!(", {replaced} taken over from the vipd before")
            } else {
                String::new()
            }
        )
    }

    /// How many records of sockets the maps hold (one syscall per entry).
    pub fn records(&self) -> crate::sockplane::maps::Records {
        self.dp.maps().records()
    }

    /// The clients of services with persistence the maps hold, and their backends.
    pub fn affinities(
        &self,
    ) -> Vec<(
        vipd_common::sock::SockAffinityKey,
        vipd_common::sock::SockAffinity,
    )> {
        self.dp.maps().affinities()
    }

    /// The TCP VIPs' initial SYN timeouts as the map holds them.
    pub fn syn_rtos(&self) -> Vec<(vipd_common::VipKey, vipd_common::sock::SockSynRto)> {
        self.dp.maps().syn_rtos()
    }

    /// How many VIPs with a SYN timeout the programs are told of (none: they look up
    /// none).
    pub fn syn_rto_vips(&self) -> Result<u32, PlaneError> {
        Ok(self.dp.maps().syn_rto_count()?)
    }

    /// Takes the persistence of `config`'s services.
    fn persistence_of(&mut self, config: &Config) {
        self.persistence = config
            .services
            .iter()
            .filter_map(|s| {
                let p = s.persistence?;
                Some((
                    ServiceKey::from(s.key),
                    SockPersistence {
                        // Validation keeps it to whole seconds, at most 31 days.
                        timeout_s: u32::try_from(p.timeout.as_secs()).unwrap_or(u32::MAX),
                        prefix: p.netmask,
                    },
                ))
            })
            .collect();
    }

    /// The counters of the programs, by name.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<_> = match self.dp.maps().stats() {
            Ok(s) => stat::NAMES.iter().copied().zip(s).collect(),
            Err(_) => Vec::new(),
        };
        out.push(("udp_sockets_destroyed", self.udp_expiry.destroyed()));
        out
    }

    /// Makes the maps hold the services of `weights`. `full`: these are all the
    /// services; else only these services' weights may have changed.
    fn sync(&mut self, weights: &Weights, full: bool) -> Result<(usize, Vec<Written>), PlaneError> {
        if full {
            self.specs.retain(|k, _| weights.has_service(k));
        }
        let (services, wanted) = members(weights);
        // Backends taken out of a UDP service, whose connected sockets move.
        let mut left = Vec::new();
        for m in services {
            let spec = SockServiceSpec {
                vip: m.vip.addr,
                protocol: m.vip.ip_proto(),
                backends: m.backends,
                persistence: self.persistence.get(&m.key).copied(),
            };
            if let Some(old) = self.specs.get(&m.key) {
                left.extend(taken_out(old, &spec));
            }
            self.specs.insert(m.key, spec);
        }
        if full {
            // The persistence of services whose weights did not change may have.
            for (k, spec) in &mut self.specs {
                spec.persistence = self.persistence.get(k).copied();
            }
        }
        let all: Vec<SockServiceSpec> = self.specs.values().cloned().collect();
        let changes = self.dp.apply(&all).map_err(PlaneError::SocketWrite)?;
        // Connected UDP sockets of backends taken out move (`udp_stale_flows = "expire"`).
        self.udp_expiry.expire(self.dp.maps_mut(), &left);
        // The write of a service's selection is when its backends at 0 leave it.
        let written = self.applied.record(wanted, None, full.then_some(weights));
        debug!(writes = changes.total(), "socket maps synced");
        Ok((changes.total(), written))
    }
}

impl DataPlane for SocketPlane {
    fn name(&self) -> &'static str {
        "socket"
    }

    fn write_unit(&self) -> &'static str {
        "socket map writes"
    }

    fn mode(&self) -> &str {
        &self.mode
    }

    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            mode: self.mode.clone(),
            hooks: self.describe(),
            ..PlaneStatus::default()
        }
    }

    fn on_stop(&self) -> &'static str {
        "the socket programs stay attached through their pinned links, with their maps"
    }

    fn set_syn_rto(&mut self, vips: &[(std::net::SocketAddr, crate::config::SynRto)]) {
        self.syn_rto.configure(vips, self.dp.maps_mut());
    }

    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        let due = self.syn_rto.next_deadline_ns()?;
        let wait = due.saturating_sub(clock::mono_ns());
        Some(tokio::time::Instant::now() + std::time::Duration::from_nanos(wait))
    }

    fn maintain(&mut self, _now: tokio::time::Instant) -> bool {
        self.syn_rto.update(self.dp.maps_mut());
        false
    }

    fn apply(&mut self, config: &Config, weights: &Weights) -> Result<Applied, PlaneError> {
        self.persistence_of(config);
        let (writes, _) = self.sync(weights, true)?;
        Ok(applied("socket", writes))
    }

    fn write_weights(&mut self, weights: &Weights) -> Result<WeightWrites, PlaneError> {
        let (ops, written) = self.sync(weights, false)?;
        Ok(weight_writes(ops, written))
    }

    fn restore(&mut self, config: &Config, weights: &Weights) {
        self.persistence_of(config);
        if let Err(e) = self.sync(weights, true) {
            warn!(
                "restoring the socket maps to the running config failed: {}",
                e.chain()
            );
        }
    }

    fn counters(&self) -> Counters {
        // The counters are these programs' own (`SOCK_STATS` is not pinned).
        let shed = self
            .dp
            .maps()
            .stats()
            .map(|s| s[stat::EVENTS_SHED as usize])
            .unwrap_or(0);
        Counters {
            decode_failures: self.decode_errors,
            shed,
            udp_sockets_destroyed: self.udp_expiry.destroyed(),
            ..Counters::default()
        }
    }

    /// A duplicate of the health ring buffer's descriptor.
    fn event_fd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        (!self.events_failed).then(|| self.dp.maps().as_fd().try_clone_to_owned())
    }

    fn take_reports(&mut self, max: usize, out: &mut Vec<Report>) -> usize {
        let maps = self.dp.maps_mut();
        let mut taken = std::mem::take(&mut self.taken);
        let n = take_reports(
            || maps.next_health(),
            max,
            &mut taken,
            &mut self.decode_errors,
            "socket",
        );
        for r in taken.drain(..) {
            self.syn_rto.feed(r, out);
        }
        self.taken = taken;
        self.syn_rto.settle(out, self.dp.maps_mut());
        n
    }

    fn events_failed(&mut self, error: &std::io::Error) {
        self.mode = format!("degraded: event ring buffer failed ({error})");
        self.events_failed = true;
    }

    fn ticks(&self) -> Ticks {
        Ticks {
            drain: !self.events_failed,
            udp: false,
            // Failures wake vipd at once; successes and the SYNs of adaptive timeouts
            // carry the kernel's timestamps, and a held early retransmission's deadline
            // drains the ring before it is released.
            slow_drain: Some(super::SLOW_DRAIN),
        }
    }

    /// Every service with persistence, with the clients that stick to its backends now
    /// (reads `SOCK_AFFINITY` only when some service has persistence).
    fn sticky_clients(&mut self) -> Option<StickyCounts> {
        let mut out: StickyCounts = self
            .persistence
            .keys()
            .map(|k| (*k, BTreeMap::new()))
            .collect();
        if out.is_empty() {
            return Some(out);
        }
        let by_vip: BTreeMap<vipd_common::VipKey, ServiceKey> =
            self.specs.iter().map(|(k, s)| (s.key(), *k)).collect();
        for c in self.dp.sticky_clients(clock::mono_ns()) {
            let counts = by_vip.get(&c.vip).and_then(|k| out.get_mut(k));
            if let Some(counts) = counts {
                counts.insert(BackendId::from(c.backend), c.clients);
            }
        }
        Some(out)
    }

    /// Health records the programs could not queue since this vipd started.
    fn lost_events(&mut self) -> Option<Result<u64, PlaneError>> {
        Some(
            lost_counter(&self.dp)
                .map(|n| n.saturating_sub(self.lost_at_start))
                .map_err(PlaneError::from),
        )
    }
}
