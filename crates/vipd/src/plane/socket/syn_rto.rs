//! The socket plane's side of `syn_rto`: the TCP VIPs' initial SYN timeouts (fixed, or
//! adaptive through the learning every plane shares, [`Timeouts`]) written to the
//! `SOCK_SYN_RTO` map, in jiffies, for the `sock_ops` program's `TIMEOUT_INIT`. Only
//! differences are written; a VIP that loses its timeout is removed from the map. An
//! adaptive VIP's entry asks for its SYNs to be reported, which give the handshake
//! times it learns from ([`super::handshakes`]).

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use tracing::{debug, info, warn};
use vipd_common::{sock::SockSynRto, IPPROTO_TCP};

use super::handshakes::SynTimes;
use crate::{
    clock,
    config::SynRto,
    kernel::tick::{jiffies, kernel_hz},
    model::{kernel::vip_key, Report},
    plane::syn_rto::Timeouts,
    sockplane::SockMaps,
};

#[derive(Debug, Default)]
pub struct SynRtoVips {
    timeouts: Timeouts,
    syn_times: SynTimes,
    /// What `SOCK_SYN_RTO` holds, by VIP.
    applied: BTreeMap<SocketAddr, SockSynRto>,
    /// The kernel's tick rate, once read.
    hz: Option<u32>,
    /// The last failure logged (not repeated on every change).
    warned: Option<String>,
}

impl SynRtoVips {
    /// Exactly `vips` have timeouts from now on.
    pub fn configure(&mut self, vips: &[(SocketAddr, SynRto)], maps: &mut SockMaps) {
        self.timeouts.configure(vips);
        self.timeouts.take_changed();
        self.apply(maps);
    }

    /// Passes `r` on to `out` (or holds an early SYN retransmission, see
    /// [`crate::plane::syn_rto::early`]), learning the handshakes of adaptive VIPs.
    pub fn feed(&mut self, r: Report, out: &mut Vec<Report>) {
        if let Some(r) = self.syn_times.fill(r) {
            self.timeouts.feed(r, out);
        }
    }

    /// Releases held reports that are due and writes timeouts that changed.
    pub fn settle(&mut self, out: &mut Vec<Report>, maps: &mut SockMaps) {
        self.timeouts.release_due(clock::mono_ns(), out);
        if self.timeouts.take_changed() {
            self.apply(maps);
        }
    }

    /// Recomputes the adaptive timeouts (about once a second) and writes those that
    /// changed.
    pub fn update(&mut self, maps: &mut SockMaps) {
        self.timeouts.update(clock::mono_ns());
        if self.timeouts.take_changed() {
            self.apply(maps);
        }
    }

    /// When a held report is due (kernel monotonic ns).
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.timeouts.next_deadline_ns()
    }

    fn hz(&mut self) -> Result<u32, String> {
        if let Some(hz) = self.hz {
            return Ok(hz);
        }
        let hz = kernel_hz().map_err(|e| format!("the kernel's tick rate is unknown: {e}"))?;
        self.hz = Some(hz);
        Ok(hz)
    }

    fn apply(&mut self, maps: &mut SockMaps) {
        if let Err(e) = self.try_apply(maps) {
            if self.warned.as_deref() != Some(e.as_str()) {
                warn!("syn_rto not applied by the socket data plane; VIPs keep the kernel's 1 s SYN timeout: {e}");
                self.warned = Some(e);
            }
        }
    }

    fn try_apply(&mut self, maps: &mut SockMaps) -> Result<(), String> {
        let wanted: BTreeMap<SocketAddr, Duration> = self.timeouts.timeouts().into_iter().collect();
        let gone: Vec<SocketAddr> = self
            .applied
            .keys()
            .filter(|v| !wanted.contains_key(v))
            .copied()
            .collect();
        for vip in gone {
            maps.remove_syn_rto(&vip_key(vip, IPPROTO_TCP as u8))
                .map_err(|e| e.to_string())?;
            self.applied.remove(&vip);
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let hz = self.hz()?;
        for (vip, rto) in wanted {
            let j = SockSynRto {
                jiffies: jiffies(rto, hz),
                report_syn: u32::from(self.timeouts.is_adaptive(&vip)),
            };
            if self.applied.get(&vip) == Some(&j) {
                continue;
            }
            maps.set_syn_rto(&vip_key(vip, IPPROTO_TCP as u8), j)
                .map_err(|e| e.to_string())?;
            let ms = rto.as_millis() as u64;
            // Adaptive timeouts change often: only the first is worth a line.
            if self.applied.insert(vip, j).is_none() {
                info!(%vip, syn_rto_ms = ms, "SYN timeout set (socket data plane)");
            } else {
                debug!(%vip, syn_rto_ms = ms, "SYN timeout set (socket data plane)");
            }
        }
        Ok(())
    }
}
