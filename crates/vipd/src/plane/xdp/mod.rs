//! The XDP data plane (`dataplane = "xdp"`): the balancer program on one interface, its
//! maps, and the health records it writes. The daemon drives it as it drives IPVS: the
//! health machines' effective weights go into the Maglev tables (only services whose
//! weights changed are rebuilt, only entries that differ are written), and every record
//! becomes a [`Report`] for the same path the connection watcher's reports take.
//!
//! A backend the health machine takes out of a UDP service (`udp_stale_flows =
//! "expire"`, the only choice with XDP) leaves the service's backends instead of
//! staying at weight 0, so its flows move at their next packet; re-admission adds it
//! back. A TCP backend at weight 0 keeps its flows, as with IPVS.

mod deadlines;

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
};

use tracing::{debug, info, warn};

pub use crate::model::health_record::{decode_record, report_of, RecordError};
pub use deadlines::Deadlines;

use super::{
    held_map::{applied, members, weight_writes, HeldMap},
    Applied, DataPlane, PlaneError, PlaneStatus, Ticks, WeightWrites, Weights, Written,
};
use crate::{
    clock,
    config::{Config, XdpSettings},
    model::{health_record::take_reports, Counters, Outcome, Report, ServiceKey},
    xdp::{
        loader::{ensure_bpffs, Sizes},
        Dataplane, XdpError, XdpProgram, XdpServiceSpec,
    },
};

/// How passive detection runs with XDP.
const MODE: &str =
    "xdp: the balancer program reports refusals, unreachables, unanswered SYNs and SYN-ACKs";

/// Where the maps and the link are pinned with `pin_maps` (overridable for tests).
fn pin_dir(x: &XdpSettings) -> Option<PathBuf> {
    x.pin_maps.then(|| {
        std::env::var_os("VIPD_XDP_PIN_DIR")
            .map_or_else(|| PathBuf::from(XdpSettings::PIN_DIR), PathBuf::from)
    })
}

pub struct XdpPlane {
    /// Keeps the program loaded, and attached when the link is not pinned.
    _prog: XdpProgram,
    dp: Dataplane,
    settings: XdpSettings,
    pinned: bool,
    /// Each service's spec as last handed to the data plane.
    specs: BTreeMap<ServiceKey, XdpServiceSpec>,
    /// What the maps hold per backend.
    applied: HeldMap,
    /// The kernel's lost-record counter when this vipd started.
    lost_at_start: u64,
    mode: String,
    /// Waiting on the health ring buffer failed: no more records are read.
    events_failed: bool,
    decode_errors: u64,
    /// Handshake deadlines of the TCP VIPs with `syn_rto`.
    deadlines: Deadlines,
    /// The service ids the program reports SYNs of (`XDP_SYN_WATCH`).
    syn_watched: std::collections::BTreeSet<u32>,
    /// Reports taken from the ring, before the deadlines see them (kept for its room).
    taken: Vec<Report>,
}

/// The program's count of records it could not queue.
fn lost_counter(dp: &Dataplane) -> Result<u64, XdpError> {
    let stats = dp.maps().stats()?;
    Ok(stats[vipd_common::xdp::stat::EVENTS_LOST as usize])
}

impl XdpPlane {
    /// Loads the program, attaches it to the interface (through the pinned link with
    /// `pin_maps`, replacing an earlier vipd's program atomically) and adopts what the
    /// maps hold.
    pub fn start(x: &XdpSettings) -> Result<Self, PlaneError> {
        let pins = pin_dir(x);
        if pins.is_some() {
            ensure_bpffs()?;
        }
        let mut prog =
            XdpProgram::load(Sizes::default(), pins.as_deref()).map_err(PlaneError::XdpLoad)?;
        match &pins {
            Some(dir) => prog.attach_pinned(&x.interface, dir)?,
            None => prog.attach(&x.interface)?,
        }
        let dp = Dataplane::adopt(prog.take_maps()?)?;
        let lost_at_start = lost_counter(&dp).unwrap_or(0);
        Ok(XdpPlane {
            lost_at_start,
            _prog: prog,
            dp,
            settings: x.clone(),
            pinned: pins.is_some(),
            specs: BTreeMap::new(),
            applied: HeldMap::default(),
            mode: MODE.to_owned(),
            events_failed: false,
            decode_errors: 0,
            deadlines: Deadlines::default(),
            syn_watched: Default::default(),
            taken: Vec::new(),
        })
    }

    pub fn settings(&self) -> &XdpSettings {
        &self.settings
    }

    /// For `vipd status`: where the program runs.
    pub fn describe(&self) -> String {
        format!(
            "xdp: vipd_xdp_lb on {}{}",
            self.settings.interface,
            if self.pinned { " (pinned link)" } else { "" }
        )
    }

    /// Makes the maps hold the services of `weights` at their weights. `full`: these are
    /// all the services (after a (re)load); else only these services' weights may have
    /// changed. Returns the map writes and the weights that changed.
    fn sync(&mut self, weights: &Weights, full: bool) -> Result<(usize, Vec<Written>), PlaneError> {
        if full {
            self.specs.retain(|k, _| weights.has_service(k));
        }
        let (services, wanted) = members(weights);
        for m in services {
            self.specs.insert(
                m.key,
                XdpServiceSpec {
                    vip: m.vip.addr,
                    protocol: m.vip.ip_proto(),
                    backends: m.backends,
                },
            );
        }
        let all: Vec<XdpServiceSpec> = self.specs.values().cloned().collect();
        let changes = self.dp.apply(&all).map_err(PlaneError::XdpWrite)?;
        let written = self
            .applied
            .record(wanted, changes.out_at_ns, full.then_some(weights));
        debug!(writes = changes.total(), "xdp maps synced");
        if full {
            self.sync_syn_watch();
        }
        Ok((changes.total(), written))
    }

    /// Makes the program report the SYNs of exactly the services with deadlines.
    fn sync_syn_watch(&mut self) {
        let want: std::collections::BTreeSet<u32> = self
            .deadlines
            .vips()
            .filter_map(|vip| {
                let key = crate::model::kernel::vip_key(*vip, vipd_common::IPPROTO_TCP as u8);
                self.dp.slot(&key)
            })
            .collect();
        let stale: Vec<u32> = self.syn_watched.difference(&want).copied().collect();
        let new: Vec<u32> = want.difference(&self.syn_watched).copied().collect();
        let maps = self.dp.maps_mut();
        for (id, watch) in stale
            .iter()
            .map(|id| (*id, false))
            .chain(new.iter().map(|id| (*id, true)))
        {
            if let Err(e) = maps.set_syn_watch(id, watch) {
                warn!("handshake deadlines: {e}");
                continue;
            }
            if watch {
                self.syn_watched.insert(id);
            } else {
                self.syn_watched.remove(&id);
            }
        }
        if !new.is_empty() || !stale.is_empty() {
            info!(
                services = self.syn_watched.len(),
                "handshake deadlines (syn_rto) on the XDP plane"
            );
        }
    }
}

impl DataPlane for XdpPlane {
    fn name(&self) -> &'static str {
        "xdp"
    }

    /// The clients are elsewhere: their SYN timeout stays theirs, and a SYN the
    /// backend leaves unanswered past the VIP's timeout counts as a retransmission
    /// ([`deadlines`]).
    fn set_syn_rto(&mut self, vips: &[(std::net::SocketAddr, crate::config::SynRto)]) {
        self.deadlines.configure(vips);
        self.sync_syn_watch();
    }

    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        let due = self.deadlines.next_deadline_ns()?;
        let wait = due.saturating_sub(clock::mono_ns());
        Some(tokio::time::Instant::now() + std::time::Duration::from_nanos(wait))
    }

    fn maintain(&mut self, _now: tokio::time::Instant) -> bool {
        self.deadlines.maintain(clock::mono_ns());
        false
    }

    fn write_unit(&self) -> &'static str {
        "XDP map writes"
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

    fn counters(&self) -> Counters {
        // The counters are this program's own (`XDP_STATS` is not pinned).
        let shed = self
            .dp
            .maps()
            .stats()
            .map(|s| s[vipd_common::xdp::stat::EVENTS_SHED as usize])
            .unwrap_or(0);
        Counters {
            decode_failures: self.decode_errors,
            shed,
            ..Counters::default()
        }
    }

    fn on_stop(&self) -> &'static str {
        if self.pinned {
            "the XDP program and its flow table stay in place"
        } else {
            "the XDP program is detached (pin_maps = false)"
        }
    }

    fn apply(&mut self, _config: &Config, weights: &Weights) -> Result<Applied, PlaneError> {
        let (writes, _) = self.sync(weights, true)?;
        Ok(applied("xdp", writes))
    }

    fn write_weights(&mut self, weights: &Weights) -> Result<WeightWrites, PlaneError> {
        let (ops, written) = self.sync(weights, false)?;
        Ok(weight_writes(ops, written))
    }

    fn restore(&mut self, _config: &Config, weights: &Weights) {
        if let Err(e) = self.sync(weights, true) {
            warn!(
                "restoring the XDP maps to the running config failed: {}",
                e.chain()
            );
        }
    }

    /// A duplicate of the health ring buffer's descriptor.
    fn event_fd(&self) -> Option<std::io::Result<OwnedFd>> {
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
            "xdp",
        );
        for r in taken.drain(..) {
            if r.outcome == Outcome::SynRetransmit(0) {
                self.deadlines.sent(r);
            } else {
                self.deadlines.feed(r, out);
            }
        }
        self.taken = taken;
        // With records left, a SYN-ACK may still wait behind its SYN: deadlines pass
        // only once the ring is read to its end.
        if n < max {
            self.deadlines.expire(clock::mono_ns(), out);
        }
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
            // A SYN's handshake deadline (`syn_rto`) is set when its record is read, and
            // a blackholed backend sends nothing that would wake vipd sooner.
            slow_drain: None,
        }
    }

    /// Health records the program could not queue (ring buffer full) since this vipd
    /// started (pinned maps keep the kernel's counter across restarts).
    fn lost_events(&mut self) -> Option<Result<u64, PlaneError>> {
        Some(
            lost_counter(&self.dp)
                .map(|n| n.saturating_sub(self.lost_at_start))
                .map_err(PlaneError::from),
        )
    }
}
