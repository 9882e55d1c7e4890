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
mod records;

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
};

use tracing::{debug, info, warn};

pub use deadlines::Deadlines;
pub use records::{decode_record, report_of, RecordError};

use super::{Applied, DataPlane, PlaneError, PlaneStatus, Ticks, WeightWrites, Weights, Written};
use crate::{
    clock,
    config::{Config, XdpSettings},
    model::{BackendId, Report, ServiceKey},
    watcher::Counters,
    xdp::{
        loader::{ensure_bpffs, Sizes},
        maps::BadRecord,
        Dataplane, XdpError, XdpProgram, XdpServiceSpec,
    },
};

/// How passive detection runs with XDP.
const MODE: &str =
    "xdp: the balancer program reports refusals, unreachables, unanswered SYNs and SYN-ACKs";
/// The kind of the records that start a handshake deadline.
const SYN_SENT: u8 = vipd_common::xdp::XdpHealthKind::SynSent as u8;

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
    /// What the maps hold per backend: `Some(weight)`, or `None` (not a member).
    applied: BTreeMap<(ServiceKey, BackendId), Option<u32>>,
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
            applied: BTreeMap::new(),
            mode: MODE.to_owned(),
            events_failed: false,
            decode_errors: 0,
            deadlines: Deadlines::default(),
            syn_watched: Default::default(),
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
        let mut wanted: BTreeMap<(ServiceKey, BackendId), Option<u32>> = BTreeMap::new();
        if full {
            self.specs.retain(|k, _| weights.has_service(k));
        }
        for (key, backends) in weights.services() {
            let Some(vip) = key.vip() else {
                continue; // fwmark: the config rejects it with xdp
            };
            let mut members = Vec::new();
            for (id, held) in backends {
                wanted.insert((*key, *id), held.weight);
                if let Some(w) = held.weight {
                    members.push((id.socket_addr(), w));
                }
            }
            self.specs.insert(
                *key,
                XdpServiceSpec {
                    vip: vip.addr,
                    protocol: vip.ip_proto(),
                    backends: members,
                },
            );
        }
        let all: Vec<XdpServiceSpec> = self.specs.values().cloned().collect();
        let changes = self.dp.apply(&all).map_err(PlaneError::XdpWrite)?;
        let mut written = Vec::new();
        for ((service, dest), to) in wanted {
            let from = self.applied.insert((service, dest), to);
            if from == Some(to) {
                continue;
            }
            let to_w = to.unwrap_or(0);
            written.push(Written {
                service,
                dest,
                // Unknown before (start, reload): as if it had been what it is now.
                from: from.map_or(to_w, |f| f.unwrap_or(0)),
                to: to_w,
                out_at_ns: if to_w == 0 { changes.out_at_ns } else { None },
            });
        }
        if full {
            self.applied.retain(|(k, d), _| weights.has(k, d));
        }
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
        Counters {
            decode_failures: self.decode_errors,
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
        if writes > 0 {
            info!(xdp_map_writes = writes, "reconciled");
        }
        Ok(Applied {
            writes: writes as u64,
            ops: vec![("xdp", writes as u64)],
            ..Applied::default()
        })
    }

    fn write_weights(&mut self, weights: &Weights) -> Result<WeightWrites, PlaneError> {
        let (ops, written) = self.sync(weights, false)?;
        Ok(WeightWrites {
            written,
            ops: ops as u64,
            failed: 0,
        })
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
        let mut n = 0;
        while n < max {
            let (next, sent) = match self.dp.maps_mut().next_health() {
                Some(Ok(ev)) => (report_of(&ev), ev.kind == SYN_SENT),
                Some(Err(BadRecord(size))) => (Err(RecordError::Size(size)), false),
                None => break,
            };
            match next {
                Ok(r) if sent => self.deadlines.sent(r),
                Ok(r) => self.deadlines.feed(r, out),
                Err(e) => {
                    self.decode_errors += 1;
                    if self.decode_errors.is_power_of_two() {
                        warn!(
                            error = %e,
                            decode_failures = self.decode_errors,
                            "unusable XDP health record"
                        );
                    }
                }
            }
            n += 1;
        }
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
