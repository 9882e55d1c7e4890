//! The daemon's XDP data plane (`dataplane = "xdp"`): the balancer program on one
//! interface, its maps, and the health records it writes. The daemon drives it as it
//! drives IPVS: the health machines' effective weights go into the Maglev tables (only
//! services whose weights changed are rebuilt, only entries that differ are written),
//! and every record becomes a [`Report`] for the same path the connection watcher's
//! reports take (counters, metrics, fault-to-quarantine timing, health).
//!
//! A backend the health machine takes out of a UDP service (`udp_stale_flows =
//! "expire"`, the only choice with XDP) leaves the service's backends instead of
//! staying at weight 0, so its flows move at their next packet; re-admission adds it
//! back. A TCP backend at weight 0 keeps its flows, as with IPVS.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    os::fd::{AsFd, OwnedFd},
    path::PathBuf,
};

use anyhow::Context;
use tokio::time::Instant;
use tracing::debug;
use vipd_common::{
    xdp::{XdpHealthEvent, XdpHealthKind},
    AF_INET6,
};
use vipd_ipvs::ServiceKey;

use super::{services::Services, weights::Written};
use crate::{
    config::XdpSettings,
    reconcile::desired::DestId,
    watcher::{event, DecodeError, IcmpCode, Outcome, Report},
    xdp::{
        loader::{ensure_bpffs, Sizes},
        maps::BadRecord,
        Dataplane, XdpProgram, XdpServiceSpec,
    },
};

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
    applied: BTreeMap<(ServiceKey, DestId), Option<u32>>,
    /// The kernel's lost-record counter when this vipd started.
    lost_at_start: u64,
}

/// A health record as a report.
pub fn report_of(ev: &XdpHealthEvent) -> Result<Report, RecordError> {
    let outcome = match XdpHealthKind::from_u8(ev.kind).ok_or(RecordError::Kind(ev.kind))? {
        XdpHealthKind::Refused => Outcome::Refused,
        XdpHealthKind::SynRetransmit => Outcome::SynRetransmit(1),
        XdpHealthKind::Established => Outcome::Established { latency: None },
        XdpHealthKind::Unreachable => Outcome::Unreachable(IcmpCode {
            v6: u16::from(ev.family) == AF_INET6,
            icmp_type: ev.icmp_type,
            code: ev.icmp_code,
        }),
    };
    let addr = |a: &[u8; 16], port| event::addr(ev.family, a, port);
    Ok(Report {
        ts_ns: ev.ts_ns,
        client: Some(addr(&ev.client, ev.cport)?),
        vip: addr(&ev.vip, ev.vport)?,
        backend: Some(addr(&ev.backend, ev.bport)?),
        outcome,
        // The program knows when it saw the repeated SYN, not the first one: a
        // blackhole's fault time is the repeat.
        syn_ns: ev.ts_ns,
        protocol: ev.protocol,
        fwmark: None,
    })
}

/// The program's count of records it could not queue.
fn lost_counter(dp: &Dataplane) -> anyhow::Result<u64> {
    let stats = dp.maps().stats()?;
    Ok(stats[vipd_common::xdp::stat::EVENTS_LOST as usize])
}

/// A queued record that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("health record of {0} bytes (expected {size})", size = XdpHealthEvent::SIZE)]
    Size(usize),
    #[error("health record of unknown kind {0}")]
    Kind(u8),
    #[error("health record: {0}")]
    Decode(#[from] DecodeError),
}

impl XdpPlane {
    /// Loads the program, attaches it to the interface (through the pinned link with
    /// `pin_maps`, replacing an earlier vipd's program atomically) and adopts what the
    /// maps hold.
    pub fn start(x: &XdpSettings) -> anyhow::Result<Self> {
        let pins = pin_dir(x);
        if pins.is_some() {
            ensure_bpffs()?;
        }
        let mut prog = XdpProgram::load(Sizes::default(), pins.as_deref())
            .context("loading the XDP program")?;
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

    /// What stays when vipd stops.
    pub fn on_stop(&self) -> &'static str {
        if self.pinned {
            "the XDP program and its flow table stay in place"
        } else {
            "the XDP program is detached (pin_maps = false)"
        }
    }

    /// A descriptor of the health ring buffer, to wait on.
    pub fn ring_fd(&self) -> std::io::Result<OwnedFd> {
        self.dp.maps().as_fd().try_clone_to_owned()
    }

    /// Health records the program could not queue (ring buffer full) since this vipd
    /// started (pinned maps keep the kernel's counter across restarts).
    pub fn lost_events(&self) -> anyhow::Result<u64> {
        Ok(lost_counter(&self.dp)?.saturating_sub(self.lost_at_start))
    }

    /// The next queued record as a report (non-blocking).
    pub fn next_report(&mut self) -> Option<Result<Report, RecordError>> {
        Some(match self.dp.maps_mut().next_health()? {
            Ok(ev) => report_of(&ev),
            Err(BadRecord(n)) => Err(RecordError::Size(n)),
        })
    }

    /// Makes the maps hold every service at its effective weights. `dirty`: only these
    /// services' weights may have changed (`None`: all, after a (re)load). Returns the
    /// map writes and the weights that changed.
    pub fn sync(
        &mut self,
        services: &Services,
        dirty: Option<&BTreeSet<ServiceKey>>,
        now: Instant,
    ) -> anyhow::Result<(usize, Vec<Written>)> {
        let mut wanted: BTreeMap<(ServiceKey, DestId), Option<u32>> = BTreeMap::new();
        if dirty.is_none() {
            self.specs.retain(|k, _| services.by_key.contains_key(k));
        }
        for (key, s) in &services.by_key {
            if dirty.is_some_and(|d| !d.contains(key)) && self.specs.contains_key(key) {
                continue;
            }
            let Some((protocol, vip)) = s.vip else {
                continue; // fwmark: the config rejects it with xdp
            };
            let mut backends = Vec::new();
            for (id, w) in s.effective_weights(now) {
                let held = s.kernel_weight(&id, w);
                wanted.insert((*key, id), held);
                if let Some(w) = held {
                    backends.push((SocketAddr::from(id), w));
                }
            }
            self.specs.insert(
                *key,
                XdpServiceSpec {
                    vip,
                    protocol,
                    backends,
                },
            );
        }
        let all: Vec<XdpServiceSpec> = self.specs.values().cloned().collect();
        let changes = self.dp.apply(&all).context("writing the XDP maps")?;
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
            });
        }
        if dirty.is_none() {
            self.applied.retain(|(k, d), _| {
                services
                    .by_key
                    .get(k)
                    .is_some_and(|s| s.dests.contains_key(d))
            });
        }
        debug!(writes = changes.total(), "xdp maps synced");
        Ok((changes.total(), written))
    }
}

#[cfg(test)]
mod tests {
    use vipd_common::AF_INET;

    use super::*;

    #[test]
    fn records_become_reports() {
        let mut ev = XdpHealthEvent {
            ts_ns: 42,
            kind: XdpHealthKind::Unreachable as u8,
            family: AF_INET6 as u8,
            protocol: 17,
            icmp_type: 1,
            icmp_code: 4,
            cport: 40000,
            vport: 53,
            bport: 5353,
            ..Default::default()
        };
        ev.client[15] = 1;
        ev.vip[15] = 2;
        ev.backend[15] = 3;
        let r = report_of(&ev).unwrap();
        assert_eq!(r.client, Some("[::1]:40000".parse().unwrap()));
        assert_eq!(r.vip, "[::2]:53".parse().unwrap());
        assert_eq!(r.backend, Some("[::3]:5353".parse().unwrap()));
        assert_eq!(r.protocol, 17);
        assert_eq!(r.ts_ns, 42);
        assert!(matches!(
            r.outcome,
            Outcome::Unreachable(IcmpCode {
                v6: true,
                icmp_type: 1,
                code: 4
            })
        ));
        let mut v4 = ev;
        v4.family = AF_INET as u8;
        v4.kind = XdpHealthKind::Refused as u8;
        v4.vip = [0; 16];
        v4.vip[..4].copy_from_slice(&[198, 18, 100, 1]);
        let r = report_of(&v4).unwrap();
        assert_eq!(r.vip, "198.18.100.1:53".parse().unwrap());
        assert_eq!(r.outcome, Outcome::Refused);
        v4.kind = 99;
        assert!(matches!(report_of(&v4), Err(RecordError::Kind(99))));
        v4.kind = XdpHealthKind::Refused as u8;
        v4.family = 7;
        let e = report_of(&v4).unwrap_err();
        assert_eq!(e.to_string(), "health record: unknown address family 7");
    }
}
