//! What comes in: the plane's reports, check and probe results, UDP counter findings,
//! and the health machines' own timers. Each feeds a health machine; a service whose
//! machine changed becomes dirty (its weights are written by [`Core::flush`]).

use std::{net::SocketAddr, time::Duration};

use tokio::time::Instant;
use tracing::{debug, info};

use super::{
    super::{
        checks::{CheckKind, CheckResult},
        view_build,
    },
    Core,
};
use crate::{
    health::Signal,
    model::{BackendId, Family, Outcome, Report, ServiceKey, Vip},
    plane::UdpFinding,
};

fn outcome_name(o: &Outcome) -> &'static str {
    match o {
        Outcome::Established { .. } => "established",
        Outcome::Refused => "refused",
        Outcome::SynRetransmit(_) => "syn_retransmit",
        Outcome::ClientAbort => "client_abort",
        Outcome::Closed { .. } => "closed",
        Outcome::Unreachable(_) => "unreachable",
        Outcome::Silent(_) => "silent",
    }
}

impl Core {
    /// A connection outcome the plane saw: counted, and fed to the backend's health
    /// machine when it says something about the backend.
    pub fn on_report(&mut self, report: &Report, now: Instant) {
        let Some(backend) = report.backend else {
            return; // counted by the correlator, exported as vipd_events_unattributed_total
        };
        let dest = BackendId::from(backend);
        let key = match report.fwmark {
            Some(mark) => Some(ServiceKey::Fwmark {
                family: Family::of(report.vip.ip()),
                mark,
            }),
            None => Vip::from_ip_proto(report.protocol, report.vip).map(ServiceKey::Addr),
        };
        let Some(key) = key else {
            return;
        };
        let Some(s) = self.services.by_key.get_mut(&key) else {
            return;
        };
        let Some(stats) = s.stats.get_mut(&dest) else {
            debug!(service = %s.name, backend = %backend, "outcome for a backend not in the config (draining)");
            return;
        };
        view_build::count(&mut stats.counts, &report.outcome);
        stats.recent.push_outcome(now, report.outcome);
        self.effects
            .metrics
            .outcome(&s.name, &stats.label, outcome_name(&report.outcome));
        let signal = match report.outcome {
            Outcome::Established { .. } => Signal::Success,
            Outcome::Refused => Signal::Refused,
            Outcome::SynRetransmit(_) => Signal::SynRetransmit,
            Outcome::Unreachable(_) => Signal::Unreachable,
            Outcome::Silent(_) => Signal::Silent,
            Outcome::ClientAbort | Outcome::Closed { .. } => return,
        };
        self.feed(key, dest, signal, Some(report), now);
    }

    /// A periodic check's or a probation probe's result.
    pub fn on_check(&mut self, r: CheckResult, now: Instant) {
        let Some(s) = self.services.by_key.get_mut(&r.service) else {
            return;
        };
        let what = match r.kind {
            CheckKind::Periodic => "check",
            CheckKind::Probe => "probe",
        };
        let verdict = if r.passed { "passed" } else { "failed" };
        if let Some(stats) = s.stats.get_mut(&r.dest) {
            stats
                .recent
                .push(now, format!("{what} {verdict}: {}", r.detail));
        }
        let backend = SocketAddr::from(r.dest).to_string();
        self.effects
            .metrics
            .outcome(&s.name, &backend, &format!("{what}_{verdict}"));
        if !r.passed {
            info!(service = %s.name, backend, check = what, detail = %r.detail, "{what} failed");
        }
        let signal = if r.passed {
            Signal::CheckPassed
        } else {
            Signal::CheckFailed
        };
        self.feed(r.service, r.dest, signal, None, now);
    }

    /// What a poll of the UDP counters found: sent and replied counts for status, new
    /// replies as a success, a silence as a report.
    pub fn on_udp(&mut self, findings: Vec<UdpFinding>, now: Instant) {
        for f in findings {
            let key = ServiceKey::Addr(f.vip);
            let Some(s) = self.services.by_key.get_mut(&key) else {
                continue;
            };
            if let Some(st) = s.stats.get_mut(&f.backend) {
                st.counts.udp_sent = f.sent;
                st.counts.udp_replies = f.replied;
            }
            if f.new_replies > 0 {
                self.feed(key, f.backend, Signal::Success, None, now);
            }
            if let Some(report) = &f.silent {
                self.on_report(report, now);
            }
        }
    }

    /// A UDP VIP's `silence_window` (`None`: silence not watched, or not configured).
    pub fn silence_window(&self, vip: Vip) -> Option<Duration> {
        self.services
            .by_key
            .get(&ServiceKey::Addr(vip))
            .and_then(|s| s.silence_window)
    }

    /// Runs the health timers due at `now` (quarantines ending, probes re-asked, slow
    /// start steps).
    pub fn tick(&mut self, now: Instant) {
        for (key, s) in self.services.by_key.iter_mut() {
            if s.health.next_deadline().is_some_and(|d| d <= now) {
                let ts = s.health.tick(now);
                self.dirty.insert(*key);
                for t in ts {
                    self.health_dirty = true;
                    self.publish = true;
                    self.effects.transition(s, *key, &t, None);
                }
            }
        }
    }

    /// Feeds one signal to a service's health machine and acts on what changes.
    fn feed(
        &mut self,
        key: ServiceKey,
        dest: BackendId,
        signal: Signal,
        report: Option<&Report>,
        now: Instant,
    ) {
        let Some(s) = self.services.by_key.get_mut(&key) else {
            return;
        };
        let ts = s.health.observe(now, dest, signal);
        if ts.is_empty() {
            return;
        }
        self.dirty.insert(key);
        self.health_dirty = true;
        self.publish = true;
        for t in ts {
            self.effects.transition(s, key, &t, report);
        }
    }
}
