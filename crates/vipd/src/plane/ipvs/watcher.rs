//! The connection watcher as the IPVS plane's event source: the kernel programs
//! ([`Probes`]) with the correlator that turns their events into reports, the VIPs and
//! fwmark services they report on, the UDP traffic counters, and a retry with backoff
//! while some hook is missing (say `ip_vs` was not loaded when vipd started).

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    os::fd::{AsFd, OwnedFd},
    time::Duration,
};

use tokio::time::Instant;
use tracing::{debug, warn};

use super::{retry::RetrySchedule, syn_rto::SynRtoVips, udp_watch::UdpWatch};
use crate::{
    clock,
    config::SynRto,
    model::{Counters, Family, Outcome, Protocol, Report, ServiceKey, Vip},
    plane::{mode_kind, syn_rto::Timeouts, PlaneError, UdpFinding},
    watcher::{dest_key, Correlator, Flavour, Hooks, Probes},
};

/// Open connections the correlator follows.
const CORRELATOR_CAPACITY: usize = 65_536;

/// How much of passive detection a mode gives: more is better.
fn mode_rank(mode: &str) -> u8 {
    match mode_kind(mode) {
        "full" | "xdp" => 2,
        "partial" => 1,
        _ => 0,
    }
}

/// Loads the kernel programs: all hooks, else TCP only, else none (degraded: active
/// checks only). Returns them with the mode and the hook summary.
fn load(flavour: Flavour) -> (Option<Probes>, String, String) {
    let loaded = match Probes::load(Hooks::ALL.with_flavour(flavour)) {
        Ok(p) => Ok((p, "full".to_owned())),
        Err(udp_err) => Probes::load(Hooks::TCP.with_flavour(flavour)).map(|p| {
            let mode = format!(
                "partial: UDP detection unavailable ({udp_err}); TCP detection and active checks run"
            );
            (p, mode)
        }),
    };
    match loaded {
        Ok((p, mode)) => {
            let hooks = p.describe();
            (Some(p), mode, hooks)
        }
        Err(e) => {
            let mode = format!(
                "degraded: connection watcher unavailable ({e}); passive detection is off, active checks still run"
            );
            (None, mode, String::new())
        }
    }
}

pub struct Watcher {
    flavour: Flavour,
    /// `None`: not loaded, or its ring buffer failed.
    probes: Option<Probes>,
    correlator: Correlator,
    mode: String,
    /// How the kernel hooks are attached (`tp_btf: ...; kprobe: ...`).
    hooks: String,
    /// The services to report on, as last asked.
    wanted: Vec<ServiceKey>,
    /// (IP protocol, VIP)s the kernel programs report on.
    watched: BTreeSet<(u8, SocketAddr)>,
    /// Fwmark services the kernel programs follow: (AF_INET/AF_INET6, mark).
    watched_marks: BTreeSet<(u8, u32)>,
    /// Replies and silences of UDP backends, from the kernel's counters.
    udp_watch: UdpWatch,
    /// UDP backends (VIP, backend) just put back into rotation: a wait for a reply
    /// that began before they left must not count against them.
    rejoined: Vec<(SocketAddr, SocketAddr)>,
    /// While some hook is not attached: when to try again.
    retry: Option<RetrySchedule>,
    decode_errors: u64,
    /// Events lost by watchers replaced since start (their counters went with them).
    lost_before: u64,
    /// The running watcher's counter as last read.
    lost_last: u64,
    /// Events shed (see the kernel programs' `emit`) by watchers replaced since start.
    shed_before: u64,
    /// The TCP VIPs' initial SYN timeouts: what they should be (adaptive ones follow
    /// the handshakes), and what the kernel's map holds.
    timeouts: Timeouts,
    syn_rto: SynRtoVips,
    /// Reports the correlator made, before [`Timeouts::feed`].
    fed: Vec<Report>,
}

impl Watcher {
    /// Loads the kernel programs; a mode that is not `full` is logged and retried.
    pub fn start(flavour: Flavour, now: Instant) -> Self {
        let (probes, mode, hooks) = load(flavour);
        if mode != "full" {
            warn!(
                mode = mode_kind(&mode),
                detail = %mode,
                "connection watcher not fully attached; vipd retries the missing hooks"
            );
        }
        let retry = (mode_kind(&mode) != "full").then(|| RetrySchedule::first(now));
        Watcher {
            flavour,
            probes,
            correlator: Correlator::new(CORRELATOR_CAPACITY),
            mode,
            hooks,
            wanted: Vec::new(),
            watched: BTreeSet::new(),
            watched_marks: BTreeSet::new(),
            udp_watch: UdpWatch::default(),
            rejoined: Vec::new(),
            retry,
            decode_errors: 0,
            lost_before: 0,
            lost_last: 0,
            shed_before: 0,
            timeouts: Timeouts::default(),
            syn_rto: SynRtoVips::default(),
            fed: Vec::new(),
        }
    }

    pub fn mode(&self) -> &str {
        &self.mode
    }

    pub fn hooks(&self) -> &str {
        &self.hooks
    }

    pub fn counters(&self) -> Counters {
        Counters {
            decode_failures: self.decode_errors,
            shed: self.shed_before + self.shed(),
            ..self.correlator.counters()
        }
    }

    /// What the running watcher shed; 0 without one (or if the map cannot be read).
    fn shed(&self) -> u64 {
        self.probes
            .as_ref()
            .and_then(|p| p.shed_events().ok())
            .unwrap_or(0)
    }

    /// Connections the correlator follows.
    pub fn tracked(&self) -> u64 {
        self.correlator.open() as u64
    }

    /// A duplicate of the ring buffer's descriptor, to wait on.
    pub fn event_fd(&self) -> Option<std::io::Result<OwnedFd>> {
        self.probes.as_ref().map(|p| p.as_fd().try_clone_to_owned())
    }

    /// Waiting on the ring buffer failed: the programs go, the mode says so.
    pub fn failed(&mut self, e: &std::io::Error) {
        self.mode = format!("degraded: event ring buffer failed ({e})");
        self.probes = None;
    }

    /// Drain on a timer while something is watched; poll UDP counters while a UDP VIP
    /// is.
    pub fn ticks(&self) -> crate::plane::Ticks {
        let on = self.probes.is_some();
        crate::plane::Ticks {
            drain: on && !(self.watched.is_empty() && self.watched_marks.is_empty()),
            udp: on
                && self
                    .watched
                    .iter()
                    .any(|(p, _)| *p == libc::IPPROTO_UDP as u8),
            // Records that can wait are successes, closes and SYNs: the correlator dates
            // them by the kernel's timestamps, and a failure's wake-up reads every record
            // queued before it (so the handshakes a quarantine releases are known by
            // then). The SYN timeout is the client's own, set in the kernel.
            slow_drain: Some(crate::plane::SLOW_DRAIN),
        }
    }

    /// The clients of TCP connections to `vip` still in their handshake with
    /// `backend`.
    pub fn handshaking(&self, vip: SocketAddr, backend: SocketAddr) -> Vec<SocketAddr> {
        self.correlator.handshaking(vip, backend)
    }

    /// A UDP backend of `vip` back in rotation.
    pub fn rejoined(&mut self, vip: SocketAddr, backend: SocketAddr) {
        self.rejoined.push((vip, backend));
    }

    /// Takes up to `max` queued kernel events through the correlator.
    pub fn take_reports(&mut self, max: usize, out: &mut Vec<Report>) -> usize {
        let Some(probes) = self.probes.as_mut() else {
            return 0;
        };
        let mut n = 0;
        while n < max {
            match probes.next_event() {
                Some(Ok(ev)) => self.fed.extend(self.correlator.feed(&ev)),
                Some(Err(e)) => {
                    self.decode_errors += 1;
                    if self.decode_errors.is_power_of_two() {
                        warn!(
                            error = %e,
                            decode_failures = self.decode_errors,
                            "undecodable kernel event"
                        );
                    }
                }
                None => break,
            }
            n += 1;
        }
        for r in self.fed.drain(..) {
            self.timeouts.feed(r, out);
        }
        self.timeouts.release_due(clock::mono_ns(), out);
        if self.timeouts.take_changed() {
            self.apply_syn_rto();
        }
        n
    }

    /// When a held SYN retransmission is due (see [`Timeouts`]).
    pub fn next_deadline(&self) -> Option<Instant> {
        let due = self.timeouts.next_deadline_ns()?;
        let wait = due.saturating_sub(clock::mono_ns());
        Some(Instant::now() + Duration::from_nanos(wait))
    }

    /// Makes the kernel programs report on exactly the VIPs (TCP and UDP) and fwmark
    /// services (their TCP connections) of `services`.
    pub fn watch(&mut self, services: &[ServiceKey]) {
        self.wanted = services.to_vec();
        let Some(probes) = self.probes.as_mut() else {
            return;
        };
        let wanted: BTreeSet<(u8, SocketAddr)> = services
            .iter()
            .filter_map(ServiceKey::vip)
            .map(|v| (v.ip_proto(), v.addr))
            .collect();
        for (protocol, vip) in self.watched.difference(&wanted) {
            if let Err(e) = probes.unwatch(*vip, *protocol) {
                warn!("cannot stop watching {vip}: {e}");
            }
        }
        for (i, (protocol, vip)) in wanted.iter().enumerate() {
            if let Err(e) = probes.watch(*vip, *protocol, i as u32) {
                warn!("cannot watch {vip}: {e}; passive detection is off for it");
            }
        }
        self.watched = wanted;
        let marks: BTreeSet<(u8, u32)> = services
            .iter()
            .filter_map(|k| match *k {
                ServiceKey::Fwmark { family, mark } => Some((af(family), mark)),
                ServiceKey::Addr(_) => None,
            })
            .collect();
        for &(family, mark) in self.watched_marks.difference(&marks) {
            if let Err(e) = probes.unwatch_fwmark(family, mark) {
                warn!("cannot stop watching fwmark {mark}: {e}");
            }
        }
        for (i, &(family, mark)) in marks.iter().enumerate() {
            if let Err(e) = probes.watch_fwmark(family, mark, i as u32) {
                warn!("cannot watch fwmark {mark}: {e}; passive detection is off for it");
            }
        }
        self.watched_marks = marks;
    }

    /// Gives exactly `vips` their initial SYN timeouts.
    pub fn set_syn_rto(&mut self, vips: &[(SocketAddr, SynRto)]) {
        self.timeouts.configure(vips);
        self.timeouts.take_changed();
        self.apply_syn_rto();
    }

    /// Recomputes the adaptive SYN timeouts from recent handshakes (about once a
    /// second) and writes those that changed.
    pub fn update_syn_rto(&mut self) {
        self.timeouts.update(clock::mono_ns());
        if self.timeouts.take_changed() {
            self.apply_syn_rto();
        }
    }

    fn apply_syn_rto(&mut self) {
        self.syn_rto
            .set(&self.timeouts.timeouts(), self.probes.as_mut());
    }

    /// Reads the UDP backends' counters: replies are successes, a long wait silence.
    pub fn poll_udp(&mut self, window: &dyn Fn(Vip) -> Option<Duration>) -> Vec<UdpFinding> {
        let Some(probes) = self.probes.as_mut() else {
            return Vec::new();
        };
        for (vip, backend) in self.rejoined.drain(..) {
            if let Err(e) = probes.clear_pending(&dest_key(vip, backend)) {
                debug!("clearing the reply wait of {backend}: {e}");
            }
        }
        let counters = probes.udp_traffic();
        let now_ns = clock::mono_ns();
        let udp = |addr| Vip::new(Protocol::Udp, addr);
        let findings = self
            .udp_watch
            .poll(&counters, now_ns, |vip| window(udp(vip)));
        for f in findings.iter().filter(|f| f.silent_since_ns.is_some()) {
            if let Err(e) = probes.clear_pending(&f.key) {
                debug!("clearing the reply wait of {}: {e}", f.backend);
            }
        }
        findings
            .into_iter()
            .map(|f| UdpFinding {
                vip: udp(f.vip),
                backend: f.backend.into(),
                sent: f.sent,
                replied: f.replied,
                new_replies: f.new_replies,
                silent: f.silent_since_ns.map(|since| Report {
                    ts_ns: now_ns,
                    client: None,
                    vip: f.vip,
                    backend: Some(f.backend),
                    fwmark: None,
                    outcome: Outcome::Silent(Duration::from_nanos(now_ns.saturating_sub(since))),
                    syn_ns: since,
                    protocol: libc::IPPROTO_UDP as u8,
                }),
            })
            .collect()
    }

    /// While some hook is not attached, loads the programs again when the backoff
    /// allows; returns true when they attach more than the running ones, which they then
    /// replace.
    pub fn retry(&mut self, now: Instant) -> bool {
        let Some(schedule) = self.retry.filter(|s| s.due(now)) else {
            return false;
        };
        let better = match load(self.flavour) {
            (Some(p), mode, hooks) if mode_rank(&mode) > mode_rank(&self.mode) => {
                // The core logs the mode change.
                debug!(hooks = %hooks, "connection watcher attached on retry");
                self.mode = mode;
                self.hooks = hooks;
                self.lost_before += self.lost_last;
                self.lost_last = 0;
                self.shed_before += self.shed();
                self.probes = Some(p);
                self.watched.clear();
                self.watched_marks.clear();
                let wanted = std::mem::take(&mut self.wanted);
                self.watch(&wanted);
                if let Some(p) = self.probes.as_mut() {
                    self.syn_rto.reloaded(p);
                }
                true
            }
            _ => false,
        };
        self.retry = (mode_rank(&self.mode) < 2).then(|| schedule.after(now));
        better
    }

    /// Events lost since start, watchers replaced since included; `None` without one.
    pub fn lost_events(&mut self) -> Option<Result<u64, PlaneError>> {
        let probes = self.probes.as_ref()?;
        Some(match probes.lost_events() {
            Ok(n) => {
                self.lost_last = n;
                Ok(self.lost_before + n)
            }
            Err(e) => Err(e.into()),
        })
    }
}

/// `AF_INET` or `AF_INET6`, as the kernel programs key fwmark services.
fn af(family: Family) -> u8 {
    match family {
        Family::Ipv4 => libc::AF_INET as u8,
        Family::Ipv6 => libc::AF_INET6 as u8,
    }
}
