//! `vipd run`: the daemon. One single-threaded tokio loop joins the connection watcher
//! (kernel events → correlator → outcomes), the health machines, the active checks, the
//! fast weight path and the reconciler; the control socket and the metrics endpoint are
//! tasks beside it. With `dataplane = "xdp"` the same loop drives vipd's XDP balancer
//! instead of IPVS ([`super::xdp_plane`]): its program's health records take the
//! watcher's place, and weights go into its Maglev tables. Order of events in one loop
//! turn: take what is ready (events, check results, signals, a deadline), feed the health
//! machines, write the weights that changed, then persist and publish.
//!
//! Lifecycle:
//! * start: validate the config (errors: exit, nothing touched); bind the control socket
//!   (refuses to start beside a running vipd) and the metrics address; restore health
//!   from `<runtime dir>/health.json`; load the eBPF programs (on failure: a reported
//!   degraded mode with active checks only); reconcile with the health weights on top —
//!   after a restart with nothing changed this writes nothing.
//! * SIGHUP or a changed config file: reload. A bad config is rejected and the old one
//!   kept; a good one is reconciled (only differences are written) with every
//!   unchanged backend's health carried over.
//! * SIGTERM/SIGINT: stop. The kernel's IPVS table, VIPs and weights stay as they are,
//!   so connections keep flowing while vipd is down or being upgraded (with XDP and
//!   `pin_maps`: the program, its link and flow table).

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
    time::{sleep_until, Instant},
};
use tracing::{debug, error, info, warn};
use vipd_ipvs::{AddressFamily, Client, ServiceKey};

use super::{
    checks::{CheckKind, CheckResult, Checks},
    clock,
    config_file::{ConfigFile, Rejected},
    control,
    metrics::Metrics,
    persist::{self, HealthRecord},
    services::Services,
    udp_watch::{self, UdpWatch},
    view::{DaemonView, ReloadView},
    view_build,
    weights::{WeightWriter, Written},
    xdp_plane::XdpPlane,
};
use crate::{
    config::Config,
    health::{Signal, Transition},
    reconcile::{self, desired::DestId, ApplyOptions},
    watcher::{dest_key, Correlator, Event, Flavour, Hooks, Outcome, Probes, Report},
};

/// How `vipd run` was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub state_file: PathBuf,
    pub runtime_dir: PathBuf,
    /// tp_btf/fentry or classic tracepoints/kprobes for the socket hooks.
    pub probes: Flavour,
}

/// Most events handled per loop turn before other work gets a chance.
const EVENT_BATCH: usize = 4096;
/// How often counters are refreshed, the config file is looked at and status published.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// A full reconcile repairs drift (someone changed a vipd-owned weight) this often.
const RESYNC: Duration = Duration::from_secs(30);
/// While removed backends drain, reconcile this often to delete the finished ones.
const DRAIN_RESYNC: Duration = Duration::from_secs(2);
/// Open connections the correlator follows.
const CORRELATOR_CAPACITY: usize = 65_536;
/// Destinations whose connection counts are dumped per housekeeping pass.
const COUNTS_PER_PASS: usize = 64;
/// A watcher that could not attach every hook tries again after this, doubling up to
/// [`WATCHER_RETRY_MAX`].
const WATCHER_RETRY_FIRST: Duration = Duration::from_secs(1);
const WATCHER_RETRY_MAX: Duration = Duration::from_secs(60);

/// The first word of a watcher mode (`full`, `partial: ...`, `degraded: ...`, `xdp: ...`).
fn mode_kind(mode: &str) -> &str {
    mode.split(':').next().unwrap_or(mode)
}

/// How much of passive detection a mode gives: more is better.
fn mode_rank(mode: &str) -> u8 {
    match mode_kind(mode) {
        "full" | "xdp" => 2,
        "partial" => 1,
        _ => 0,
    }
}

/// The event source as a pollable descriptor: the connection watcher's ring buffer, or
/// (a duplicate of) the XDP program's health ring buffer, which the plane reads.
enum Ring {
    Watcher(Box<Probes>),
    Xdp(OwnedFd),
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Ring::Watcher(p) => p.as_fd().as_raw_fd(),
            Ring::Xdp(fd) => fd.as_raw_fd(),
        }
    }
}

impl Ring {
    fn probes(&mut self) -> Option<&mut Probes> {
        match self {
            Ring::Watcher(p) => Some(p),
            Ring::Xdp(_) => None,
        }
    }
}

/// What the daemon programs.
enum Plane {
    /// IPVS over generic netlink: single weights on the fast path, full reconciles.
    Ipvs(WeightWriter),
    Xdp(Box<XdpPlane>),
}

struct Daemon {
    opts: Options,
    config: Config,
    file: ConfigFile,
    services: Services,
    plane: Plane,
    correlator: Correlator,
    checks: Checks,
    metrics: Arc<Metrics>,
    view_tx: watch::Sender<Arc<DaemonView>>,
    watcher_mode: String,
    /// How the kernel hooks are attached (`tp_btf: ...; kprobe: ...`).
    watcher_hooks: String,
    /// (IP protocol, VIP)s the kernel programs report on.
    watched: BTreeSet<(u8, SocketAddr)>,
    /// Fwmark services the kernel programs follow: (AF_INET/AF_INET6, mark).
    watched_marks: BTreeSet<(u8, u32)>,
    /// Replies and silences of UDP backends, from the kernel's counters.
    udp_watch: UdpWatch,
    /// UDP backends (VIP, backend) just put back into rotation: a wait for a reply
    /// that began before they left must not count against them.
    udp_rejoined: Vec<(SocketAddr, SocketAddr)>,
    started: SystemTime,
    loaded: SystemTime,
    last_reload: Option<ReloadView>,
    seed: u64,
    /// Quarantines waiting for their weight write, with the kernel time the fault began.
    faults: HashMap<(ServiceKey, DestId), (u64, &'static str)>,
    health_dirty: bool,
    next_resync: Instant,
    draining: bool,
    counts_cursor: usize,
    decode_errors: u64,
    lost_events: u64,
    /// Events lost by watchers replaced since start (their counters went with them).
    lost_before: u64,
    /// While some watcher hook is not attached: when to try again, and the backoff.
    watcher_retry: Option<(Instant, Duration)>,
    /// The last reconcile's reachability notes, logged when they change.
    reach_notes: Vec<String>,
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let (daemon, ring, check_rx) = Daemon::start(opts).await?;
        daemon.run(ring, check_rx).await
    })
}

fn signal_name(s: Signal) -> &'static str {
    s.as_str()
}

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

async fn ring_ready(
    ring: &mut Option<AsyncFd<Ring>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, Ring>> {
    match ring {
        Some(r) => r.readable_mut().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// Loads the connection watcher: all hooks, else TCP only, else none (degraded:
    /// active checks only). Returns its ring, mode and hook summary; the caller logs a
    /// mode that is not `full`.
    fn start_watcher(probes: Flavour) -> anyhow::Result<(Option<AsyncFd<Ring>>, String, String)> {
        let loaded = match Probes::load(Hooks::ALL.with_flavour(probes)) {
            Ok(p) => Ok((p, "full".to_owned())),
            Err(udp_err) => Probes::load(Hooks::TCP.with_flavour(probes)).map(|p| {
                let mode = format!(
                    "partial: UDP detection unavailable ({udp_err}); TCP detection and active checks run"
                );
                (p, mode)
            }),
        };
        let watcher_hooks = match &loaded {
            Ok((p, _)) => p.describe(),
            Err(_) => String::new(),
        };
        let (ring, watcher_mode) = match loaded {
            Ok((p, mode)) => (
                // SAFETY: the descriptor is the ring buffer map's, owned by the `Probes`
                // inside the `AsyncFd`; it stays open and the same until that is dropped.
                Some(
                    unsafe {
                        AsyncFd::register_with_interest(
                            Ring::Watcher(Box::new(p)),
                            Interest::READABLE,
                        )
                    }
                    .map_err(|e| e.into_parts().1)
                    .context("polling the event ring buffer")?,
                ),
                mode,
            ),
            Err(e) => {
                let mode = format!(
                    "degraded: connection watcher unavailable ({e}); passive detection is off, active checks still run"
                );
                (None, mode)
            }
        };
        Ok((ring, watcher_mode, watcher_hooks))
    }

    async fn start(
        opts: Options,
    ) -> anyhow::Result<(Daemon, Option<AsyncFd<Ring>>, mpsc::Receiver<CheckResult>)> {
        let mut file = ConfigFile::new(opts.config.clone());
        let (config, text) = match file.load() {
            Ok(c) => c,
            Err(rejected) => bail!("{rejected}; nothing was applied"),
        };
        file.accept(text);
        let started = SystemTime::now();

        let socket = control::socket_path(&opts.runtime_dir);
        let (view_tx, view_rx) = watch::channel(Arc::new(DaemonView::default()));
        let listener = control::bind(&socket)
            .with_context(|| format!("binding the control socket {}", socket.display()))?;
        tokio::spawn(async move {
            if let Err(e) = listener.run(view_rx).await {
                error!("control socket: {e}");
            }
        });
        let metrics = Arc::new(Metrics::default());
        if let Some(addr) = config.daemon.metrics_address {
            let l = super::metrics::bind_metrics(addr).await?;
            info!("metrics on http://{addr}/metrics");
            tokio::spawn(super::metrics::serve_metrics(l, metrics.clone()));
        }

        let record = match persist::load(&persist::path(&opts.runtime_dir)) {
            Ok(r) => r,
            Err(e) => {
                warn!("ignoring the health record: {e}; every backend starts healthy");
                None
            }
        };
        let seed = clock::mono_ns() ^ u64::from(std::process::id()).rotate_left(32);
        let now = Instant::now();
        let (services, _) = Services::build(
            &config,
            Services::default(),
            record.as_ref(),
            now,
            SystemTime::now(),
            seed,
        );

        let (plane, ring, watcher_mode, watcher_hooks) = match config.dataplane.xdp() {
            Some(x) => {
                let xdp = XdpPlane::start(x)?;
                let fd = xdp.ring_fd().context("the XDP health ring buffer")?;
                // SAFETY: the descriptor is owned by the `Ring` inside the `AsyncFd`; it
                // stays open and the same until that is dropped.
                let ring =
                    unsafe { AsyncFd::register_with_interest(Ring::Xdp(fd), Interest::READABLE) }
                        .map_err(|e| e.into_parts().1)
                        .context("polling the XDP health ring buffer")?;
                let mode = "xdp: the balancer program reports refusals, unreachables, unanswered SYNs and SYN-ACKs".to_owned();
                let hooks = xdp.describe();
                (Plane::Xdp(Box::new(xdp)), Some(ring), mode, hooks)
            }
            None => {
                // First: resolving IPVS's generic-netlink family makes the kernel load
                // ip_vs if nothing has yet (a daemon started at boot), and the watcher's
                // IPVS hooks need the module.
                let client =
                    Client::connect().context("connecting to IPVS over generic netlink")?;
                let (ring, mode, hooks) = Self::start_watcher(opts.probes)?;
                if mode != "full" {
                    warn!("watcher: {mode}; vipd retries the missing hooks");
                }
                (Plane::Ipvs(WeightWriter::new(client)), ring, mode, hooks)
            }
        };
        let mut ring = ring;
        let (checks, check_rx) = Checks::new(1024);
        let mut d = Daemon {
            opts,
            config,
            file,
            services,
            plane,
            correlator: Correlator::new(CORRELATOR_CAPACITY),
            checks,
            metrics,
            view_tx,
            watcher_mode,
            watcher_hooks,
            watched: BTreeSet::new(),
            watched_marks: BTreeSet::new(),
            udp_watch: UdpWatch::default(),
            udp_rejoined: Vec::new(),
            started,
            loaded: started,
            last_reload: None,
            seed,
            faults: HashMap::new(),
            health_dirty: true,
            next_resync: now + RESYNC,
            draining: false,
            counts_cursor: 0,
            decode_errors: 0,
            lost_events: 0,
            lost_before: 0,
            watcher_retry: None,
            reach_notes: Vec::new(),
        };
        d.metrics.set_watcher_mode(mode_kind(&d.watcher_mode));
        if matches!(d.plane, Plane::Ipvs(_)) && mode_kind(&d.watcher_mode) != "full" {
            d.watcher_retry = Some((now + WATCHER_RETRY_FIRST, WATCHER_RETRY_FIRST));
        }
        d.sync_watch(ring.as_mut());
        let writes = d.reconcile(now).context("applying the config")?;
        info!(
            services = d.config.services.len(),
            backends = d.config.backend_count(),
            dataplane = d.config.dataplane.name(),
            writes,
            watcher = %d.watcher_mode,
            hooks = %d.watcher_hooks,
            "vipd running"
        );
        d.checks.sync(&d.services);
        d.persist();
        d.publish();
        Ok((d, ring, check_rx))
    }

    async fn run(
        mut self,
        mut ring: Option<AsyncFd<Ring>>,
        mut check_rx: mpsc::Receiver<CheckResult>,
    ) -> anyhow::Result<()> {
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        let mut housekeeping = Instant::now() + HOUSEKEEPING;
        let mut udp_tick = tokio::time::interval(udp_watch::POLL);
        udp_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut drain_tick = tokio::time::interval(crate::watcher::RING_DRAIN);
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let xdp = matches!(self.plane, Plane::Xdp(_));
            let watching = ring.is_some()
                && (xdp || !(self.watched.is_empty() && self.watched_marks.is_empty()));
            let udp_active = ring.is_some()
                && self
                    .watched
                    .iter()
                    .any(|(p, _)| *p == libc::IPPROTO_UDP as u8);
            let mut dirty = BTreeSet::new();
            let wake = self
                .services
                .next_deadline()
                .map_or(housekeeping, |d| d.min(housekeeping));
            tokio::select! {
                biased;
                _ = term.recv() => { info!("SIGTERM: stopping; {}", self.on_stop()); break; }
                _ = int.recv() => { info!("SIGINT: stopping; {}", self.on_stop()); break; }
                ready = ring_ready(&mut ring) => match ready {
                    Ok(mut guard) => {
                        if self.drain(guard.get_inner_mut(), &mut dirty) < EVENT_BATCH {
                            guard.clear_ready();
                        }
                    }
                    Err(e) => {
                        error!("event ring buffer: {e}; passive detection stops");
                        self.watcher_mode = format!("degraded: event ring buffer failed ({e})");
                        self.metrics.set_watcher_mode(mode_kind(&self.watcher_mode));
                        ring = None;
                    }
                },
                Some(r) = check_rx.recv() => self.on_check(r, &mut dirty),
                _ = drain_tick.tick(), if watching => {
                    if let Some(r) = ring.as_mut() {
                        self.drain(r.get_mut(), &mut dirty);
                    }
                }
                _ = udp_tick.tick(), if udp_active => self.poll_udp(ring.as_mut(), &mut dirty),
                _ = hup.recv() => { info!("SIGHUP: reloading {}", self.opts.config.display()); self.reload(ring.as_mut()); }
                _ = sleep_until(wake) => {}
            }
            let now = Instant::now();
            for (key, s) in self.services.by_key.iter_mut() {
                if s.health.next_deadline().is_some_and(|d| d <= now) {
                    let ts = s.health.tick(now);
                    dirty.insert(*key);
                    for t in ts {
                        self.health_dirty = true;
                        Self::transition_effects(
                            &self.checks,
                            &self.metrics,
                            &mut self.faults,
                            s,
                            *key,
                            &t,
                            None,
                        );
                    }
                }
            }
            if !dirty.is_empty() {
                self.write_weights(&dirty, now);
            }
            if now >= housekeeping {
                housekeeping = now + HOUSEKEEPING;
                self.housekeeping(ring.as_mut(), now);
                if let Some(better) = self.retry_watcher(now) {
                    ring = Some(better);
                    self.watched.clear();
                    self.watched_marks.clear();
                    self.sync_watch(ring.as_mut());
                    self.publish();
                }
            }
            if self.health_dirty {
                self.persist();
                self.publish();
            }
        }
        self.persist();
        Ok(())
    }

    /// What stays in the kernel when vipd stops.
    fn on_stop(&self) -> &'static str {
        match &self.plane {
            Plane::Ipvs(_) => "the kernel's IPVS state stays in place",
            Plane::Xdp(x) => x.on_stop(),
        }
    }

    /// Takes up to [`EVENT_BATCH`] queued kernel events (the watcher's, to the
    /// correlator; the XDP program's, as reports); returns how many it took.
    fn drain(&mut self, ring: &mut Ring, dirty: &mut BTreeSet<ServiceKey>) -> usize {
        let Ring::Watcher(probes) = ring else {
            return self.drain_xdp(dirty);
        };
        let mut n = 0;
        while n < EVENT_BATCH {
            match probes.next_event() {
                Some(Ok(ev)) => self.on_event(&ev, dirty),
                Some(Err(e)) => {
                    self.decode_errors += 1;
                    if self.decode_errors.is_power_of_two() {
                        warn!(
                            "undecodable kernel event ({} so far): {e}",
                            self.decode_errors
                        );
                    }
                }
                None => break,
            }
            n += 1;
        }
        n
    }

    fn drain_xdp(&mut self, dirty: &mut BTreeSet<ServiceKey>) -> usize {
        let mut n = 0;
        while n < EVENT_BATCH {
            let Plane::Xdp(x) = &mut self.plane else {
                break;
            };
            match x.next_report() {
                Some(Ok(r)) => self.on_report(&r, dirty),
                Some(Err(e)) => {
                    self.decode_errors += 1;
                    if self.decode_errors.is_power_of_two() {
                        warn!(
                            "unusable XDP health record ({} so far): {e}",
                            self.decode_errors
                        );
                    }
                }
                None => break,
            }
            n += 1;
        }
        n
    }

    fn on_event(&mut self, ev: &Event, dirty: &mut BTreeSet<ServiceKey>) {
        if let Some(report) = self.correlator.feed(ev) {
            self.on_report(&report, dirty);
        }
    }

    /// Reads the UDP backends' counters: replies are successes, a long wait silence.
    fn poll_udp(&mut self, ring: Option<&mut AsyncFd<Ring>>, dirty: &mut BTreeSet<ServiceKey>) {
        let Some(probes) = ring.and_then(|r| r.get_mut().probes()) else {
            return;
        };
        for (vip, backend) in self.udp_rejoined.drain(..) {
            if let Err(e) = probes.clear_pending(&dest_key(vip, backend)) {
                debug!("clearing the reply wait of {backend}: {e}");
            }
        }
        let counters = probes.udp_traffic();
        let now_ns = clock::mono_ns();
        let services = &self.services;
        let udp = libc::IPPROTO_UDP as u8;
        let findings = self.udp_watch.poll(&counters, now_ns, |vip| {
            services
                .by_vip
                .get(&(udp, vip))
                .and_then(|k| services.by_key.get(k))
                .and_then(|s| s.silence_window)
        });
        for f in findings.iter().filter(|f| f.silent_since_ns.is_some()) {
            if let Err(e) = probes.clear_pending(&f.key) {
                debug!("clearing the reply wait of {}: {e}", f.backend);
            }
        }
        for f in findings {
            let Some(key) = self.services.by_vip.get(&(udp, f.vip)).copied() else {
                continue;
            };
            let dest: DestId = (f.backend.ip(), f.backend.port());
            if let Some(st) = self
                .services
                .by_key
                .get_mut(&key)
                .and_then(|s| s.stats.get_mut(&dest))
            {
                st.counts.udp_sent = f.sent;
                st.counts.udp_replies = f.replied;
            }
            if f.new_replies > 0 {
                self.feed_health(key, dest, Signal::Success, None, dirty);
            }
            if let Some(since) = f.silent_since_ns {
                let report = Report {
                    ts_ns: now_ns,
                    client: None,
                    vip: f.vip,
                    backend: Some(f.backend),
                    fwmark: None,
                    outcome: Outcome::Silent(Duration::from_nanos(now_ns.saturating_sub(since))),
                    syn_ns: since,
                    protocol: udp,
                };
                self.on_report(&report, dirty);
            }
        }
    }

    fn on_report(&mut self, report: &Report, dirty: &mut BTreeSet<ServiceKey>) {
        let Some(backend) = report.backend else {
            return; // counted by the correlator, exported as vipd_events_unattributed_total
        };
        let dest: DestId = (backend.ip(), backend.port());
        let key = match report.fwmark {
            Some(mark) => Some(ServiceKey::Fwmark {
                family: AddressFamily::of(&report.vip.ip()),
                mark,
            }),
            None => self
                .services
                .by_vip
                .get(&(report.protocol, report.vip))
                .copied(),
        };
        let Some(key) = key else {
            return;
        };
        let Some(s) = self.services.by_key.get_mut(&key) else {
            return;
        };
        let now = Instant::now();
        let Some(stats) = s.stats.get_mut(&dest) else {
            debug!(service = %s.name, backend = %backend, "outcome for a backend not in the config (draining)");
            return;
        };
        view_build::count(&mut stats.counts, &report.outcome);
        stats
            .recent
            .push(now, view_build::describe(&report.outcome));
        self.metrics
            .outcome(&s.name, &backend.to_string(), outcome_name(&report.outcome));
        let signal = match report.outcome {
            Outcome::Established { .. } => Signal::Success,
            Outcome::Refused => Signal::Refused,
            Outcome::SynRetransmit(_) => Signal::SynRetransmit,
            Outcome::Unreachable(_) => Signal::Unreachable,
            Outcome::Silent(_) => Signal::Silent,
            Outcome::ClientAbort | Outcome::Closed { .. } => return,
        };
        self.feed_health(key, dest, signal, Some(report), dirty);
    }

    fn on_check(&mut self, r: CheckResult, dirty: &mut BTreeSet<ServiceKey>) {
        let Some(s) = self.services.by_key.get_mut(&r.service) else {
            return;
        };
        let now = Instant::now();
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
        self.metrics
            .outcome(&s.name, &backend, &format!("{what}_{verdict}"));
        if !r.passed {
            info!(service = %s.name, backend, "{what} failed: {}", r.detail);
        }
        let signal = if r.passed {
            Signal::CheckPassed
        } else {
            Signal::CheckFailed
        };
        self.feed_health(r.service, r.dest, signal, None, dirty);
    }

    /// Feeds one signal to a service's health machine and acts on what changes.
    fn feed_health(
        &mut self,
        key: ServiceKey,
        dest: DestId,
        signal: Signal,
        report: Option<&Report>,
        dirty: &mut BTreeSet<ServiceKey>,
    ) {
        let Some(s) = self.services.by_key.get_mut(&key) else {
            return;
        };
        let ts = s.health.observe(Instant::now(), dest, signal);
        if ts.is_empty() {
            return;
        }
        dirty.insert(key);
        self.health_dirty = true;
        for t in ts {
            Self::transition_effects(
                &self.checks,
                &self.metrics,
                &mut self.faults,
                s,
                key,
                &t,
                report,
            );
        }
    }

    /// Logs a transition and starts what it needs (a probe, a latency measurement).
    fn transition_effects(
        checks: &Checks,
        metrics: &Metrics,
        faults: &mut HashMap<(ServiceKey, DestId), (u64, &'static str)>,
        s: &super::services::ServiceRt,
        key: ServiceKey,
        t: &Transition,
        report: Option<&Report>,
    ) {
        let name = s.name.as_str();
        match t {
            Transition::Quarantined {
                dest,
                ejections,
                duration,
                cause,
            } => {
                let backend = SocketAddr::from(*dest).to_string();
                let cause_name = signal_name(*cause);
                metrics.quarantine(name, &backend, cause_name);
                if let Some(r) = report {
                    let fault_ns = match cause {
                        Signal::SynRetransmit | Signal::Silent => r.syn_ns,
                        _ => r.ts_ns,
                    };
                    faults.insert((key, *dest), (fault_ns, cause_name));
                }
                let client = report
                    .and_then(|r| r.client)
                    .map_or_else(|| "-".to_owned(), |c| c.to_string());
                warn!(
                    service = name,
                    backend,
                    cause = cause_name,
                    client,
                    ejections,
                    "quarantined for {}",
                    crate::config::format_duration(*duration)
                );
            }
            Transition::HeldInRotation { dest, cause } => warn!(
                service = name,
                backend = %SocketAddr::from(*dest),
                cause = signal_name(*cause),
                "failing, but kept in rotation by the ejection limit"
            ),
            Transition::ProbeWanted { dest } => {
                info!(service = name, backend = %SocketAddr::from(*dest), "quarantine over: probing before re-admission");
                checks.probe(key, *dest, s.probe_timeout, s.udp_probe.clone());
            }
            Transition::Readmitted { dest } => {
                info!(service = name, backend = %SocketAddr::from(*dest), "re-admitted (slow start)")
            }
            Transition::Recovered { dest } => {
                info!(service = name, backend = %SocketAddr::from(*dest), "back at full weight")
            }
            Transition::PanicEntered => warn!(
                service = name,
                "PANIC: too few healthy backends; every backend is in rotation at its configured weight"
            ),
            Transition::PanicExited => info!(service = name, "panic over"),
        }
    }

    /// The fast path: writes changed weights, then measures fault-to-quarantine.
    fn write_weights(&mut self, dirty: &BTreeSet<ServiceKey>, now: Instant) {
        let written: Vec<Written> = match &mut self.plane {
            Plane::Ipvs(writer) => {
                let w = writer.sync(&self.services, dirty, now);
                self.metrics.reconcile_ops("ipvs", w.len() as u64);
                w
            }
            Plane::Xdp(x) => match x.sync(&self.services, Some(dirty), now) {
                Ok((writes, w)) => {
                    self.metrics.reconcile_ops("xdp", writes as u64);
                    w
                }
                Err(e) => {
                    // The next full sync (housekeeping) writes it again.
                    warn!("writing weights to the XDP maps failed: {e:#}");
                    self.next_resync = now;
                    Vec::new()
                }
            },
        };
        for w in &written {
            if w.from == 0 && w.to > 0 {
                let udp_vip = self
                    .services
                    .by_key
                    .get(&w.service)
                    .and_then(|s| s.vip)
                    .filter(|(p, _)| *p == libc::IPPROTO_UDP as u8);
                if let Some((_, vip)) = udp_vip {
                    self.udp_rejoined.push((vip, SocketAddr::from(w.dest)));
                }
            }
            if w.to == 0 {
                if let Some((fault_ns, cause)) = self.faults.remove(&(w.service, w.dest)) {
                    let secs = clock::seconds_since(fault_ns);
                    self.metrics.fault_to_quarantine(cause, secs);
                    info!(
                        backend = %SocketAddr::from(w.dest),
                        service = %w.service,
                        "weight 0 written {:.1} ms after the fault ({cause})",
                        secs * 1e3
                    );
                }
            }
        }
        // A quarantine that wrote nothing (panic, or already at 0) measures nothing.
        self.faults.retain(|(k, _), _| !dirty.contains(k));
    }

    /// Reconciles the whole table (config + health weights); returns the writes
    /// (netlink messages, or XDP map entries).
    fn reconcile(&mut self, now: Instant) -> anyhow::Result<u64> {
        let writer = match &mut self.plane {
            Plane::Ipvs(w) => w,
            Plane::Xdp(x) => {
                let (writes, _) = x.sync(&self.services, None, now)?;
                self.metrics.reconcile_ops("xdp", writes as u64);
                self.next_resync = now + RESYNC;
                if writes > 0 {
                    info!(xdp_map_writes = writes, "reconciled");
                }
                return Ok(writes as u64);
            }
        };
        let opts = ApplyOptions {
            state_file: self.opts.state_file.clone(),
            dry_run: false,
            overrides: self.services.overrides(now),
        };
        let summary = reconcile::apply(&self.config, &opts)?;
        for f in &summary.failures {
            warn!("kernel refused a write: {f:?}");
        }
        if summary.notes != self.reach_notes {
            for n in &summary.notes {
                warn!("reachability: {n}");
            }
            self.reach_notes.clone_from(&summary.notes);
        }
        writer.reset(self.services.kernel_weights(now));
        self.metrics
            .reconcile_ops("ipvs", summary.ipvs_writes as u64);
        self.metrics
            .reconcile_ops("rtnetlink", summary.rtnetlink_writes as u64);
        self.draining = !summary.draining.is_empty();
        self.next_resync = now + if self.draining { DRAIN_RESYNC } else { RESYNC };
        if summary.netlink_writes > 0 {
            info!(
                ipvs = summary.ipvs_writes,
                rtnetlink = summary.rtnetlink_writes,
                draining = summary.draining.len(),
                "reconciled"
            );
        }
        Ok(summary.netlink_writes as u64)
    }

    /// Reload: a bad config is rejected whole and the running one kept.
    fn reload(&mut self, ring: Option<&mut AsyncFd<Ring>>) {
        let now = Instant::now();
        let wall = SystemTime::now();
        let loaded = self.file.load().and_then(|(c, text)| {
            if c.dataplane == self.config.dataplane {
                Ok((c, text))
            } else {
                Err(Rejected {
                    lines: vec![format!(
                        "{}: changing `dataplane` or the [xdp] table needs a restart of vipd",
                        self.opts.config.display()
                    )],
                })
            }
        });
        let (config, text) = match loaded {
            Ok(c) => c,
            Err(rejected) => {
                for l in &rejected.lines {
                    error!("{l}");
                }
                error!("config rejected; the running config stays in force");
                self.metrics.reload(false);
                self.last_reload = Some(ReloadView {
                    unix_ms: clock::unix_ms(wall),
                    ok: false,
                    message: rejected.to_string(),
                    netlink_writes: 0,
                });
                self.publish();
                return;
            }
        };
        let old_config = std::mem::replace(&mut self.config, config);
        let old = std::mem::take(&mut self.services);
        let (services, ts) = Services::build(&self.config, old, None, now, wall, self.seed);
        self.services = services;
        for (key, t) in &ts {
            if let Some(s) = self.services.by_key.get(key) {
                Self::transition_effects(
                    &self.checks,
                    &self.metrics,
                    &mut self.faults,
                    s,
                    *key,
                    t,
                    None,
                );
            }
        }
        match self.reconcile(now) {
            Ok(writes) => {
                self.file.accept(text);
                self.loaded = wall;
                self.metrics.reload(true);
                info!(netlink_writes = writes, "config reloaded");
                self.last_reload = Some(ReloadView {
                    unix_ms: clock::unix_ms(wall),
                    ok: true,
                    message: match self.plane {
                        Plane::Ipvs(_) => format!("applied with {writes} netlink writes"),
                        Plane::Xdp(_) => format!("applied with {writes} XDP map writes"),
                    },
                    netlink_writes: writes,
                });
            }
            Err(e) => {
                error!("config rejected: {e:#}; the running config stays in force");
                self.metrics.reload(false);
                self.last_reload = Some(ReloadView {
                    unix_ms: clock::unix_ms(wall),
                    ok: false,
                    message: format!("{e:#}"),
                    netlink_writes: 0,
                });
                self.config = old_config;
                let new = std::mem::take(&mut self.services);
                self.services = Services::build(&self.config, new, None, now, wall, self.seed).0;
                match &mut self.plane {
                    Plane::Ipvs(w) => w.reset(self.services.kernel_weights(now)),
                    Plane::Xdp(x) => {
                        if let Err(e) = x.sync(&self.services, None, now) {
                            warn!("restoring the XDP maps to the running config failed: {e:#}");
                        }
                    }
                }
            }
        }
        self.sync_watch(ring);
        self.checks.sync(&self.services);
        let names: BTreeSet<&str> = self
            .services
            .by_key
            .values()
            .map(|s| s.name.as_str())
            .collect();
        let backends: BTreeSet<(String, String)> = self
            .services
            .by_key
            .values()
            .flat_map(|s| {
                s.dests
                    .keys()
                    .map(|d| (s.name.clone(), SocketAddr::from(*d).to_string()))
            })
            .collect();
        self.metrics.retain_services(|n| names.contains(n));
        self.metrics
            .retain_backends(|n, b| backends.contains(&(n.to_owned(), b.to_owned())));
        self.health_dirty = true;
    }

    /// While some watcher hook is not attached (say the ip_vs module was not loaded when
    /// vipd started), loads the watcher again when the backoff allows; returns its ring
    /// when it attaches more than the running one, which it then replaces.
    fn retry_watcher(&mut self, now: Instant) -> Option<AsyncFd<Ring>> {
        let (at, backoff) = self.watcher_retry?;
        if now < at {
            return None;
        }
        let better = match Self::start_watcher(self.opts.probes) {
            Ok((Some(ring), mode, hooks)) if mode_rank(&mode) > mode_rank(&self.watcher_mode) => {
                info!(watcher = %mode, hooks = %hooks, "connection watcher attached on retry");
                self.watcher_mode = mode;
                self.watcher_hooks = hooks;
                self.lost_before += self.lost_events;
                self.lost_events = 0;
                self.metrics.set_watcher_mode(mode_kind(&self.watcher_mode));
                Some(ring)
            }
            Ok(_) => None,
            Err(e) => {
                debug!("retrying the connection watcher: {e:#}");
                None
            }
        };
        self.watcher_retry = if mode_rank(&self.watcher_mode) >= 2 {
            None
        } else {
            let next = (backoff * 2).min(WATCHER_RETRY_MAX);
            Some((now + next, next))
        };
        better
    }

    /// Makes the kernel programs report on exactly the configured VIPs (TCP and UDP)
    /// and fwmark services (their TCP connections).
    fn sync_watch(&mut self, ring: Option<&mut AsyncFd<Ring>>) {
        let Some(probes) = ring.and_then(|r| r.get_mut().probes()) else {
            return;
        };
        let wanted: BTreeSet<(u8, SocketAddr)> = self.services.by_vip.keys().copied().collect();
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
        let marks: BTreeSet<(u8, u32)> = self
            .services
            .by_key
            .keys()
            .filter_map(|k| match *k {
                ServiceKey::Fwmark { family, mark } => Some((family.number() as u8, mark)),
                ServiceKey::Addr { .. } => None,
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

    fn housekeeping(&mut self, ring: Option<&mut AsyncFd<Ring>>, now: Instant) {
        let lost = match (ring.as_deref().map(AsyncFd::get_ref), &self.plane) {
            (Some(Ring::Watcher(probes)), _) => {
                Some(probes.lost_events().map_err(anyhow::Error::from))
            }
            (_, Plane::Xdp(x)) => Some(x.lost_events()),
            _ => None,
        };
        if let Some(lost) = lost {
            match lost {
                Ok(n) => {
                    if n > self.lost_events {
                        warn!(
                            "{} kernel events lost (ring buffer full)",
                            n - self.lost_events
                        );
                    }
                    self.lost_events = n;
                    self.metrics.set_lost_events(self.lost_before + n);
                }
                Err(e) => debug!("reading the lost-event counter: {e}"),
            }
        }
        self.metrics
            .set_unattributed(self.correlator.counters().unattributed);
        if self.file.changed() {
            info!("{} changed: reloading", self.opts.config.display());
            self.reload(ring);
        }
        if now >= self.next_resync {
            if let Err(e) = self.reconcile(now) {
                warn!("periodic reconcile failed: {e:#}");
                self.next_resync = now + RESYNC;
            }
        }
        self.refresh_counts();
        self.publish();
    }

    /// Connection counts for `vipd status`, a bounded number of services per pass.
    fn refresh_counts(&mut self) {
        let keys: Vec<ServiceKey> = self.services.by_key.keys().copied().collect();
        if keys.is_empty() {
            return;
        }
        let mut budget = COUNTS_PER_PASS;
        let mut visited = 0;
        while budget > 0 && visited < keys.len() {
            let key = keys[self.counts_cursor % keys.len()];
            self.counts_cursor = self.counts_cursor.wrapping_add(1);
            visited += 1;
            let Plane::Ipvs(writer) = &mut self.plane else {
                return; // the XDP data plane keeps no connection counts
            };
            let Ok(dests) = writer.client().destinations(&key) else {
                continue;
            };
            if let Some(s) = self.services.by_key.get_mut(&key) {
                for d in dests {
                    if let Some(st) = s.stats.get_mut(&(d.addr, d.port)) {
                        st.active_conns = d.active_conns;
                        st.inactive_conns = d.inactive_conns;
                    }
                    budget = budget.saturating_sub(1);
                }
            }
        }
    }

    fn persist(&mut self) {
        self.health_dirty = false;
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut record = HealthRecord::default();
        for (key, s) in &self.services.by_key {
            record.insert(key, s.health.to_persisted(now, wall));
        }
        if let Err(e) = std::fs::create_dir_all(&self.opts.runtime_dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| {
                persist::store(&persist::path(&self.opts.runtime_dir), record)
                    .map_err(anyhow::Error::from)
            })
        {
            warn!("cannot write the health record: {e:#}");
        }
    }

    fn publish(&mut self) {
        let now = Instant::now();
        for s in self.services.by_key.values() {
            for v in s.health.views(now) {
                let backend = SocketAddr::from(v.dest).to_string();
                self.metrics
                    .set_backend(&s.name, &backend, v.weight, v.state.as_str());
            }
            self.metrics.set_panic(&s.name, s.health.in_panic());
        }
        let view = view_build::build(
            &self.services,
            now,
            view_build::Meta {
                config: self.opts.config.display().to_string(),
                dataplane: self.config.dataplane.name(),
                started: self.started,
                loaded: self.loaded,
                last_reload: self.last_reload.clone(),
                watcher_mode: self.watcher_mode.clone(),
                watcher_hooks: self.watcher_hooks.clone(),
                counters: self.correlator.counters(),
                lost_events: self.lost_before + self.lost_events,
                tracked: self.correlator.open() as u64,
                sysctls: match self.plane {
                    Plane::Ipvs(_) => crate::reach::sysctl::current(),
                    Plane::Xdp(_) => Vec::new(),
                },
            },
        );
        self.view_tx.send_replace(Arc::new(view));
    }
}
