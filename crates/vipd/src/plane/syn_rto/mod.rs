//! The TCP VIPs' initial SYN timeouts as the planes keep them: fixed ones as
//! configured, adaptive ones (`syn_rto = "auto"`) at k × the p99 of the VIP's observed
//! handshakes within their floor and ceiling, with the rule for SYNs retransmitted early
//! (see [`early`]). Pure: the plane feeds it reports and kernel times, and writes the
//! timeouts it gives to the kernel.

pub mod early;
pub mod handshakes;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use tracing::{debug, info};

use crate::{
    config::{AutoRto, SynRto},
    model::Report,
};
use early::{Early, Handshake};
use handshakes::{scaled, Handshakes};

/// An adaptive VIP's state.
#[derive(Debug)]
struct Adaptive {
    cfg: AutoRto,
    handshakes: Handshakes,
    /// The timeout connections get now.
    current: Duration,
    /// The timeout last logged at info (changes under a quarter are logged at debug).
    logged: Duration,
}

#[derive(Debug, Default)]
pub struct Timeouts {
    fixed: BTreeMap<SocketAddr, Duration>,
    adaptive: BTreeMap<SocketAddr, Adaptive>,
    early: Early,
    /// An adaptive timeout changed since [`Timeouts::take_changed`] was last called.
    changed: bool,
}

impl Timeouts {
    /// Exactly these VIPs have timeouts. An adaptive VIP that stays adaptive with the
    /// same bounds keeps what it learnt.
    pub fn configure(&mut self, vips: &[(SocketAddr, SynRto)]) {
        self.fixed.clear();
        let mut adaptive = BTreeMap::new();
        for &(vip, rto) in vips {
            match rto {
                SynRto::Fixed(d) => {
                    self.fixed.insert(vip, d);
                }
                SynRto::Auto(cfg) => {
                    let kept = self.adaptive.remove(&vip).filter(|a| a.cfg == cfg);
                    let a = kept.unwrap_or(Adaptive {
                        cfg,
                        handshakes: Handshakes::default(),
                        current: cfg.ceiling,
                        logged: cfg.ceiling,
                    });
                    adaptive.insert(vip, a);
                }
            }
        }
        self.adaptive = adaptive;
        self.changed = true;
    }

    /// Whether `vip`'s timeout is adaptive.
    pub fn is_adaptive(&self, vip: &SocketAddr) -> bool {
        self.adaptive.contains_key(vip)
    }

    /// Whether any VIP has a timeout.
    pub fn any(&self) -> bool {
        !(self.fixed.is_empty() && self.adaptive.is_empty())
    }

    /// Every VIP's timeout now.
    pub fn timeouts(&self) -> Vec<(SocketAddr, Duration)> {
        let adaptive = self.adaptive.iter().map(|(v, a)| (*v, a.current));
        self.fixed
            .iter()
            .map(|(v, d)| (*v, *d))
            .chain(adaptive)
            .collect()
    }

    /// True once after an adaptive timeout changed (or the VIPs did).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Passes report `r` on to `out`, or holds it (an early SYN retransmission), and
    /// learns the handshake time it gives. A handshake that completed after an early
    /// retransmission raises its VIP's timeout at once.
    pub fn feed(&mut self, r: Report, out: &mut Vec<Report>) {
        let (vip, ts_ns) = (r.vip, r.ts_ns);
        let adaptive = &self.adaptive;
        let learnt = self.early.feed(r, |v| adaptive.contains_key(&v), out);
        let Some(a) = self.adaptive.get_mut(&vip) else {
            return;
        };
        match learnt {
            Some(Handshake::Normal(d)) => a.handshakes.observe(ts_ns, d),
            Some(Handshake::AnsweredLate(d)) => {
                a.handshakes.observe(ts_ns, d);
                let raised = scaled(&a.cfg, d);
                info!(
                    %vip,
                    handshake_ms = d.as_millis() as u64,
                    "SYN retransmitted early but answered: the backend is slow, not failing; raising the VIP's SYN timeout"
                );
                if raised > a.current {
                    self.changed |= set(vip, a, raised);
                }
            }
            None => {}
        }
    }

    /// Releases held retransmissions whose deadline passed.
    pub fn release_due(&mut self, now_ns: u64, out: &mut Vec<Report>) {
        self.early.release_due(now_ns, out);
    }

    /// When the next held retransmission is due (kernel monotonic ns).
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.early.next_deadline_ns()
    }

    /// Retransmissions that turned out answered (not counted as failures).
    pub fn answered_late(&self) -> u64 {
        self.early.answered_late
    }

    /// Recomputes each adaptive VIP's timeout from the handshakes of its window (a VIP
    /// with too few keeps its timeout).
    pub fn update(&mut self, now_ns: u64) {
        for (vip, a) in &mut self.adaptive {
            if let Some(p99) = a.handshakes.p99(now_ns) {
                let rto = scaled(&a.cfg, p99);
                self.changed |= set(*vip, a, rto);
            }
        }
    }
}

/// Sets `a`'s timeout; true if it changed.
fn set(vip: SocketAddr, a: &mut Adaptive, rto: Duration) -> bool {
    if rto == a.current {
        return false;
    }
    a.current = rto;
    let ms = rto.as_millis() as u64;
    let (lo, hi) = (a.logged.min(rto), a.logged.max(rto));
    if hi.as_nanos() * 4 >= lo.as_nanos() * 5 {
        a.logged = rto;
        info!(%vip, syn_rto_ms = ms, "adaptive SYN timeout");
    } else {
        debug!(%vip, syn_rto_ms = ms, "adaptive SYN timeout");
    }
    true
}

#[cfg(test)]
mod tests;
