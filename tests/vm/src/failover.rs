//! The failover scenario shared by the acceptance tests and the comparison benchmark:
//! steady client load through a VIP, a fault at one backend, the time until the health
//! checker in charge (vipd or keepalived: whoever programs the IPVS service) takes it out
//! of rotation, the connections clients saw fail, then recovery and re-admission.
//!
//! The scenario does not start or stop the system under test: the caller does, around
//! [`Failover::start`] and [`Failover::finish`].
//!
//! Faults, and the two triggers each report (what the quarantine time is measured from):
//! - [`Fault::Refuse`]: the backend's server is killed, so its namespace answers SYNs
//!   with RST. Client trigger: the end of the first refused client attempt. Backend
//!   trigger: the first SYN the backend answered with RST (anyone's: a client's or a
//!   health checker's).
//! - [`Fault::DropSyns`]: the backend drops every SYN. Client trigger: the first client
//!   SYN it dropped (one the load sent: [`Load::sent`]; health checks come from the same
//!   client host, from other ports). Backend trigger: the first SYN it dropped (anyone's).
//!
//! A health checker that probes faster than clients arrive can quarantine a backend
//! before any client fails: the client trigger is then None. The backend trigger is
//! always defined, and is the fault's first observable effect.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    thread,
    time::{Duration, Instant},
};

use vipd_ipvs::ServiceKey;

use crate::{
    lab::Lab,
    load::{Attempt, Load, LoadReport},
    syn::{Answer, SynSniffer},
    weights::{quarantined, Weight, WeightLog, WeightWatcher},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Kill the backend's server: connections are refused (RST).
    Refuse,
    /// Drop every SYN at the backend: connections time out.
    DropSyns,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Refuse => "refuse",
            Fault::DropSyns => "drop_syns",
        }
    }
}

/// How long to wait for each phase of a fault.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long the system may take to quarantine the backend.
    pub detect_timeout: Duration,
    /// How long the fault stays after the quarantine (failures then still count).
    pub hold: Duration,
    /// How long the system may take to give the backend its full weight again.
    pub readmit_timeout: Duration,
    /// Load after the full weight is back, before the next step (still counted).
    pub settle: Duration,
    /// The weight that means "fully re-admitted".
    pub full_weight: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            detect_timeout: Duration::from_secs(20),
            hold: Duration::from_secs(1),
            readmit_timeout: Duration::from_secs(30),
            settle: Duration::from_secs(1),
            full_weight: 1,
        }
    }
}

/// A successful attempt that took longer than this counts as slow.
pub const SLOW: Duration = Duration::from_millis(500);
/// A successful attempt that took longer than this was caught on the faulty backend:
/// its SYN was retransmitted (every initial SYN timeout is at least 20 ms; an
/// untroubled connect and greeting take a few ms in the lab).
pub const CAUGHT: Duration = Duration::from_millis(40);

/// What one fault did.
#[derive(Clone, Debug)]
pub struct FaultReport {
    pub fault: Fault,
    /// Backend index in the lab, and its namespace and IPVS destination.
    pub backend: usize,
    pub ns: String,
    pub dest: SocketAddr,
    /// When the fault command started, and when it had taken effect (listener closed,
    /// nftables rule loaded).
    pub injecting: Instant,
    pub injected: Instant,
    /// See the module documentation.
    pub client_trigger: Option<Instant>,
    pub backend_trigger: Option<Instant>,
    /// When the watcher first saw weight 0 (or removal) after the fault command started.
    pub quarantined: Option<Instant>,
    /// When the undo started (server restarted, rule deleted) and when it was done.
    pub undoing: Instant,
    pub undone: Instant,
    /// When the watcher first saw a weight above 0 after the undo started.
    pub readmitted: Option<Instant>,
    /// When it first saw the full weight after that.
    pub full_weight: Option<Instant>,
    /// Every state of the destination from the fault to the end of the step (slow start
    /// shows here as rising weights).
    pub weights: Vec<(Instant, Weight)>,
    /// Client attempts that started from the fault command to the end of the step, and
    /// those of them that failed.
    pub attempts: usize,
    pub failures: Vec<Attempt>,
    /// Successful attempts in that window that took longer than [`SLOW`] (e.g. a
    /// dropped SYN whose retransmission IPVS sent to another backend).
    pub slow: usize,
    /// How long each successful attempt longer than [`CAUGHT`] took, in ms.
    pub caught_ms: Vec<f64>,
    /// Successful attempts per backend in that window.
    pub served: BTreeMap<String, usize>,
    pub ended: Instant,
}

fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -((from - to).as_secs_f64() * 1e3)
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("none".to_string(), |v| format!("{v:.1}"))
}

impl FaultReport {
    /// Backend trigger to quarantine, in ms.
    pub fn detect_ms(&self) -> Option<f64> {
        Some(signed_ms(self.backend_trigger?, self.quarantined?))
    }

    /// Client trigger to quarantine, in ms (None when no client failed).
    pub fn client_detect_ms(&self) -> Option<f64> {
        Some(signed_ms(self.client_trigger?, self.quarantined?))
    }

    /// The fault in place to quarantine, in ms.
    pub fn since_injection_ms(&self) -> Option<f64> {
        Some(signed_ms(self.injected, self.quarantined?))
    }

    /// The undo command's start to the first weight above 0, in ms (the command itself,
    /// tens of ms under emulation, is included: the backend is healthy again somewhere
    /// inside it).
    pub fn readmit_ms(&self) -> Option<f64> {
        Some(signed_ms(self.undoing, self.readmitted?))
    }

    /// Failed client attempts that started before the quarantine was seen (+ `grace`
    /// for connects already in flight): the failures the detection delay caused.
    pub fn failures_before_quarantine(&self, grace: Duration) -> usize {
        let until = self.quarantined.map(|q| q + grace).unwrap_or(self.ended);
        self.failures.iter().filter(|a| a.started < until).count()
    }

    /// One parseable line: `BENCH failover system=.. fault=.. key=value ...`.
    pub fn line(&self, system: &str) -> String {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for a in &self.failures {
            *kinds
                .entry(a.outcome.to_string().replace(' ', "_"))
                .or_default() += 1;
        }
        let mut s = format!(
            "BENCH failover system={system} fault={} backend={} \
             backend_trigger_to_quarantine_ms={} client_trigger_to_quarantine_ms={} \
             injected_to_quarantine_ms={} client_failures={} client_slow={} attempts={} \
             readmit_ms={}",
            self.fault.name(),
            self.ns,
            opt_ms(self.detect_ms()),
            opt_ms(self.client_detect_ms()),
            opt_ms(self.since_injection_ms()),
            self.failures.len(),
            self.slow,
            self.attempts,
            opt_ms(self.readmit_ms()),
        );
        for (k, n) in kinds {
            write!(s, " failed_{k}={n}").unwrap();
        }
        s
    }

    /// The destination's weights after the undo started, as `+ms:weight` relative to
    /// that.
    pub fn weights_after_undo(&self) -> String {
        self.weights
            .iter()
            .filter(|(t, _)| *t >= self.undoing)
            .map(|(t, w)| {
                let w = w.map_or("-".to_string(), |w| w.to_string());
                format!("+{:.0}ms:{w}", signed_ms(self.undoing, *t))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A running scenario: load, weight watcher and SYN sniffers on every backend.
pub struct Failover<'a> {
    pub lab: &'a Lab,
    pub service: ServiceKey,
    pub rport: u16,
    pub load: Load,
    pub weights: WeightWatcher,
    pub sniffers: Vec<SynSniffer>,
}

/// Everything the scenario saw, once finished.
pub struct FailoverLogs {
    pub load: LoadReport,
    pub weights: WeightLog,
}

impl<'a> Failover<'a> {
    /// Starts watching `service`'s weights (every 2 ms), sniffing SYNs to `rport` on
    /// every backend, and client load at `rate` connections/s to the service's VIP
    /// (connect timeout `connect_timeout`). The service should already be set up.
    pub fn start(
        lab: &'a Lab,
        service: ServiceKey,
        rport: u16,
        rate: f64,
        connect_timeout: Duration,
    ) -> Self {
        let weights = WeightWatcher::start(service, Duration::from_millis(2));
        Self::start_watching(lab, service, rport, rate, connect_timeout, weights)
    }

    /// Like [`Failover::start`], with the service's weights from `weights` (for a data
    /// plane other than IPVS).
    pub fn start_watching(
        lab: &'a Lab,
        service: ServiceKey,
        rport: u16,
        rate: f64,
        connect_timeout: Duration,
        weights: WeightWatcher,
    ) -> Self {
        let ServiceKey::Addr { addr, port, .. } = service else {
            panic!("a failover scenario needs an address service, not {service:?}");
        };
        let sniffers = (0..lab.backends.len())
            .map(|i| lab.sniff_syns(i, rport))
            .collect();
        let load = Load::start(SocketAddr::new(addr, port), rate, connect_timeout);
        Failover {
            lab,
            service,
            rport,
            load,
            weights,
            sniffers,
        }
    }

    pub fn dest(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.lab.backends[i].addr, self.rport)
    }

    /// Lets the load run for `d`.
    pub fn settle(&self, d: Duration) {
        thread::sleep(d);
    }

    /// Injects `fault` at backend `i`, waits for the quarantine, holds, undoes the fault,
    /// waits for full re-admission, settles; reports.
    pub fn fault(&self, fault: Fault, i: usize, timing: &Timing) -> FaultReport {
        let dest = self.dest(i);
        let injecting = Instant::now();
        match fault {
            Fault::Refuse => {
                self.lab.kill_server(i);
            }
            Fault::DropSyns => self.lab.drop_syns(i),
        }
        let injected = Instant::now();
        let quarantined =
            self.weights
                .wait_for(dest, injecting, timing.detect_timeout, quarantined);
        thread::sleep(timing.hold);
        let undoing = Instant::now();
        match fault {
            Fault::Refuse => {
                self.lab.restart_server(i);
            }
            Fault::DropSyns => {
                self.lab.accept_syns(i);
            }
        }
        let undone = Instant::now();
        let readmitted = self
            .weights
            .wait_for(dest, undoing, timing.readmit_timeout, |w| {
                w.unwrap_or(0) > 0
            });
        let full = timing.full_weight;
        let full_weight = self
            .weights
            .wait_for(dest, undoing, timing.readmit_timeout, |w| {
                w.unwrap_or(0) >= full
            });
        thread::sleep(timing.settle);
        let ended = Instant::now();
        let report = self.report_through(ended);
        let window = report.started_in(injecting, ended);
        let sniffer = &self.sniffers[i];
        let (client_trigger, backend_trigger) = match fault {
            Fault::Refuse => (
                report.first_refused_after(injecting).map(|a| a.ended),
                sniffer
                    .first_answered_after(injecting, |_| true, Answer::Rst)
                    .map(|s| s.at),
            ),
            Fault::DropSyns => (
                sniffer
                    .first_answered_after(injecting, |s| self.load.sent(s), Answer::None)
                    .map(|s| s.at),
                sniffer
                    .first_answered_after(injecting, |_| true, Answer::None)
                    .map(|s| s.at),
            ),
        };
        let weights = self
            .weights
            .snapshot()
            .history(dest)
            .into_iter()
            .filter(|(t, _)| *t >= injecting)
            .collect();
        FaultReport {
            fault,
            backend: i,
            ns: self.lab.backends[i].ns.clone(),
            dest,
            injecting,
            injected,
            client_trigger,
            backend_trigger,
            quarantined,
            undoing,
            undone,
            readmitted,
            full_weight,
            weights,
            attempts: window.len(),
            failures: window
                .iter()
                .filter(|a| !a.outcome.is_ok())
                .map(|a| (*a).clone())
                .collect(),
            slow: window
                .iter()
                .filter(|a| a.outcome.is_ok() && a.ended - a.started > SLOW)
                .count(),
            caught_ms: window
                .iter()
                .filter(|a| a.outcome.is_ok() && a.ended - a.started > CAUGHT)
                .map(|a| (a.ended - a.started).as_secs_f64() * 1e3)
                .collect(),
            served: report.per_backend_in(injecting, ended),
            ended,
        }
    }

    /// The load's report once every attempt that started before `t` has finished
    /// (attempts are recorded as they finish: wait for one that started after `t` and
    /// for all scheduled before it).
    fn report_through(&self, t: Instant) -> LoadReport {
        loop {
            let r = self.load.report();
            let after = r.attempts.iter().find(|a| a.started >= t).map(|a| a.seq);
            let complete = |n: u64| r.attempts.iter().filter(|a| a.seq < n).count() as u64 == n;
            if after.is_some_and(complete) {
                return r;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the load, the watcher and the sniffers.
    pub fn finish(self) -> FailoverLogs {
        let load = self.load.stop();
        let weights = self.weights.stop();
        drop(self.sniffers);
        FailoverLogs { load, weights }
    }
}

/// One system's runs of the two faults (repeated).
#[derive(Clone, Debug)]
pub struct Figures {
    pub system: String,
    pub refuse: Vec<FaultReport>,
    pub drop_syns: Vec<FaultReport>,
}

/// Median and maximum of the values that exist, and how many are missing.
fn stats(v: impl Iterator<Item = Option<f64>>) -> (Option<f64>, Option<f64>, usize) {
    let mut missing = 0;
    let mut xs: Vec<f64> = v
        .filter_map(|x| {
            if x.is_none() {
                missing += 1;
            }
            x
        })
        .collect();
    xs.sort_by(f64::total_cmp);
    let median = (!xs.is_empty()).then(|| xs[xs.len() / 2]);
    (median, xs.last().copied(), missing)
}

impl Figures {
    fn of(&self, fault: Fault) -> &[FaultReport] {
        match fault {
            Fault::Refuse => &self.refuse,
            Fault::DropSyns => &self.drop_syns,
        }
    }

    /// Median backend-trigger-to-quarantine time of a fault, in ms.
    pub fn median_detect_ms(&self, fault: Fault) -> Option<f64> {
        stats(self.of(fault).iter().map(FaultReport::detect_ms)).0
    }

    /// Median time from the fault in place to the quarantine, in ms. For comparing a
    /// prober with a passive watcher this is the fair one: whose SYN met the fault first
    /// (a probe's, or a client's) does not matter to it.
    pub fn median_injected_ms(&self, fault: Fault) -> Option<f64> {
        stats(self.of(fault).iter().map(FaultReport::since_injection_ms)).0
    }

    /// Client-visible failures over every run of a fault.
    pub fn total_failures(&self, fault: Fault) -> usize {
        self.of(fault).iter().map(|r| r.failures.len()).sum()
    }

    /// Every run's line, each run's weights after the undo, and a summary per fault:
    /// `BENCH failover summary system=.. fault=.. runs=.. detect_median_ms=..
    /// detect_max_ms=.. client_detect_median_ms=.. client_failures_total=..
    /// client_failures_max=..`.
    pub fn lines(&self) -> String {
        let mut out = Vec::new();
        for fault in [Fault::Refuse, Fault::DropSyns] {
            for r in self.of(fault) {
                out.push(r.line(&self.system));
                out.push(format!(
                    "BENCH failover system={} fault={} weights_after_undo {}",
                    self.system,
                    fault.name(),
                    r.weights_after_undo()
                ));
            }
        }
        for fault in [Fault::Refuse, Fault::DropSyns] {
            let runs = self.of(fault);
            let (med, max, no_trigger) = stats(runs.iter().map(FaultReport::detect_ms));
            let missing = runs.iter().filter(|r| r.quarantined.is_none()).count();
            let (cmed, cmax, cmissing) = stats(runs.iter().map(FaultReport::client_detect_ms));
            let fmax = runs.iter().map(|r| r.failures.len()).max().unwrap_or(0);
            let (imed, imax, _) = stats(runs.iter().map(FaultReport::since_injection_ms));
            let caught = runs
                .iter()
                .flat_map(|r| r.caught_ms.iter().copied().map(Some));
            let (caught_med, caught_max, _) = stats(caught);
            let caught_n: usize = runs.iter().map(|r| r.caught_ms.len()).sum();
            out.push(format!(
                "BENCH failover summary system={} fault={} runs={} detect_median_ms={} \
                 detect_max_ms={} runs_without_backend_trigger={no_trigger} \
                 not_quarantined={missing} injected_median_ms={} \
                 injected_max_ms={} client_detect_median_ms={} \
                 client_detect_max_ms={} runs_without_client_trigger={cmissing} \
                 client_failures_total={} client_failures_max={fmax} client_slow_total={} \
                 client_caught_total={caught_n} client_caught_median_ms={} client_caught_max_ms={}",
                self.system,
                fault.name(),
                runs.len(),
                opt_ms(med),
                opt_ms(max),
                opt_ms(imed),
                opt_ms(imax),
                opt_ms(cmed),
                opt_ms(cmax),
                self.total_failures(fault),
                runs.iter().map(|r| r.slow).sum::<usize>(),
                opt_ms(caught_med),
                opt_ms(caught_max),
            ));
        }
        out.join("\n")
    }
}

/// `BENCH failover ratio ...` lines, `peer` over `ours`: median time from the fault in
/// place to the quarantine, median backend-trigger-to-quarantine time, and client
/// failures and slow connections over all runs.
pub fn ratio_lines(ours: &Figures, peer: &Figures) -> String {
    let ratio = |p: Option<f64>, o: Option<f64>| match (p, o) {
        (Some(p), Some(o)) if o > 0.0 => format!("{:.2}", p / o),
        _ => "none".to_string(),
    };
    let slow = |f: &Figures, fault| f.of(fault).iter().map(|r| r.slow).sum::<usize>();
    let mut out = Vec::new();
    for fault in [Fault::Refuse, Fault::DropSyns] {
        out.push(format!(
            "BENCH failover ratio fault={} {}/{} injected_median={} detect_median={} \
             client_failures={}/{} client_slow={}/{}",
            fault.name(),
            peer.system,
            ours.system,
            ratio(
                peer.median_injected_ms(fault),
                ours.median_injected_ms(fault)
            ),
            ratio(peer.median_detect_ms(fault), ours.median_detect_ms(fault)),
            peer.total_failures(fault),
            ours.total_failures(fault),
            slow(peer, fault),
            slow(ours, fault),
        ));
    }
    out.join("\n")
}
