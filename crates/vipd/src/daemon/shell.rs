//! `vipd run`: the daemon's shell. One single-threaded tokio loop waits on the data
//! plane's event source, the active checks' results, signals, timers and the health
//! machines' deadlines, hands what comes to the [`Core`] and does what the core asks:
//! the plane's writes go through the core (weight writes on the writer thread, see
//! [`super::writer`], their results coming back as events), probes and periodic checks
//! are started here,
//! the health record is written and the status published here. The control socket and
//! the metrics endpoint are tasks beside it. Order of events in one loop turn: take
//! what is ready, feed the core, run the health timers, write the weights that
//! changed, then persist and publish.
//!
//! Lifecycle:
//! * start: validate the config (errors: exit, nothing touched); bind the control socket
//!   (refuses to start beside a running vipd) and the metrics address; restore health
//!   from `<runtime dir>/health.json`; start the data plane (IPVS with the eBPF
//!   connection watcher, which on failure runs in a reported degraded mode with active
//!   checks only; or the XDP balancer); apply with the health weights on top — after a
//!   restart with nothing changed this writes nothing.
//! * SIGHUP or a changed config file: reload. A bad config is rejected and the old one
//!   kept; a good one is applied (only differences are written) with every unchanged
//!   backend's health carried over.
//! * SIGTERM/SIGINT: stop. What the plane programmed stays in the kernel (IPVS: the
//!   table, VIPs and weights; XDP with `pin_maps`: the program, its link and flow
//!   table), so connections keep flowing while vipd is down or being upgraded.

use std::{
    io,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use tokio::{
    io::{
        unix::{AsyncFd, AsyncFdReadyMutGuard},
        Interest,
    },
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
    time::{sleep_until, Instant},
};
use tracing::{error, info, warn};

use super::{
    admin,
    checks::{CheckResult, Checks},
    config_file::ConfigFile,
    control::{self, Command},
    core::{Core, Restored},
    dns_link::DnsLink,
    dns_record,
    metrics::Metrics,
    notify::Notifier,
    persist,
    view::DaemonView,
    writer::{Done, Job, WriteResult, Writer},
};
use crate::{
    clock,
    config::Dataplane,
    plane::{ipvs::IpvsPlane, socket::SocketPlane, xdp::XdpPlane, DataPlane},
    reconcile::DaemonLock,
    watcher::{Flavour, Report},
};

#[path = "shell_commands.rs"]
mod commands;

/// How `vipd run` was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub state_file: PathBuf,
    pub runtime_dir: PathBuf,
    /// tp_btf/fentry or classic tracepoints/kprobes for the socket hooks.
    pub probes: Flavour,
}

/// Most kernel records handled per loop turn before other work gets a chance.
const EVENT_BATCH: usize = 4096;
/// How often counters are refreshed, the config file is looked at and status published.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How many check results may wait for the loop.
const CHECK_QUEUE: usize = 1024;
/// How many control-socket commands may wait for the loop.
const COMMAND_QUEUE: usize = 16;

/// The config given at start-up is invalid: nothing was touched. `vipd run` exits with
/// its own status for it (see the CLI), so that a service manager does not restart a
/// daemon that cannot start.
#[derive(Debug, thiserror::Error)]
#[error("{0}; nothing was applied")]
pub struct ConfigInvalid(pub String);

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> anyhow::Result<()> {
    let notifier = Notifier::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move { Shell::start(opts, notifier).await?.run().await })
}

/// The signals the daemon acts on. Their handlers are installed first thing in
/// start-up; the signals themselves are held until start-up is done (`start_signals`).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }
}

/// Waits on the plane's event source with a duplicate of its descriptor.
fn register(fd: Option<io::Result<OwnedFd>>) -> io::Result<Option<AsyncFd<OwnedFd>>> {
    let Some(fd) = fd else {
        return Ok(None);
    };
    // SAFETY: the descriptor is owned by the `AsyncFd`; it stays open and the same until
    // that is dropped.
    unsafe { AsyncFd::register_with_interest(fd?, Interest::READABLE) }
        .map(Some)
        .map_err(|e| e.into_parts().1)
}

/// The result of the job on the writer thread; never, without a writer.
async fn write_done(writer: &mut Option<Writer>) -> Done {
    match writer {
        Some(w) => w.done().await,
        None => std::future::pending().await,
    }
}

async fn readable(
    events: &mut Option<AsyncFd<OwnedFd>>,
) -> io::Result<AsyncFdReadyMutGuard<'_, OwnedFd>> {
    match events {
        Some(e) => e.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// How often the plane's event ring is drained when no kernel wake-up asks for it: as
/// seldom as its waiting records can wait ([`crate::plane::Ticks::slow_drain`]).
fn drain_period(ticks: crate::plane::Ticks) -> Duration {
    ticks.slow_drain.unwrap_or(crate::watcher::RING_DRAIN)
}

/// A timer for drains every `period`, the first one `period` from now.
fn drain_interval(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(Instant::now() + period, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    t
}

/// Takes up to [`EVENT_BATCH`] kernel records and feeds their reports to the core, all
/// at the one instant they were taken (a clock read per report costs more than the
/// report itself where the clock is slow to read); returns how many records it took.
fn drain(plane: &mut dyn DataPlane, core: &mut Core, reports: &mut Vec<Report>) -> usize {
    let n = plane.take_reports(EVENT_BATCH, reports);
    let now = Instant::now();
    for r in reports.drain(..) {
        core.on_report(&r, now);
    }
    n
}

type Answer = (
    tokio::sync::oneshot::Sender<control::CommandResult>,
    control::CommandResult,
);

struct Shell {
    opts: Options,
    file: ConfigFile,
    /// The resolver of DNS backends, and what their names gave.
    dns: DnsLink,
    core: Core,
    plane: Box<dyn DataPlane>,
    /// The plane's fast path on its own thread; `None`: its writes are quick and made on
    /// the loop.
    writer: Option<Writer>,
    /// The plane's event source; `None`: it has none (or waiting on it failed).
    events: Option<AsyncFd<OwnedFd>>,
    checks: Checks,
    check_rx: mpsc::Receiver<CheckResult>,
    view_tx: watch::Sender<Arc<DaemonView>>,
    reports: Vec<Report>,
    signals: Signals,
    commands: mpsc::Receiver<Command>,
    /// Answers to send once the weights their commands changed are written.
    answers: Vec<Answer>,
    /// Answers waiting for the batch on the writer thread.
    after_batch: Vec<Answer>,
    notifier: Notifier,
    /// Keeps `vipd apply` and other daemons off this ownership record while it runs.
    _lock: DaemonLock,
}

impl Shell {
    async fn start(opts: Options, notifier: Notifier) -> anyhow::Result<Shell> {
        let signals = Signals::install()?;
        let mut file = ConfigFile::new(opts.config.clone());
        let (config, text) = match file.load() {
            Ok(c) => c,
            Err(rejected) => return Err(ConfigInvalid(rejected.to_string()).into()),
        };
        file.accept(text);
        let started = SystemTime::now();
        // Everything vipd creates from here on (socket, records) is its own alone.
        // SAFETY: umask has no preconditions and cannot fail.
        unsafe { libc::umask(0o077) };
        let lock = DaemonLock::try_acquire(&opts.state_file)?.ok_or_else(|| {
            anyhow::anyhow!(
                "another vipd holds {}: a daemon or a `vipd apply` is running with the \
                 ownership record {}",
                DaemonLock::path(&opts.state_file).display(),
                opts.state_file.display()
            )
        })?;

        let socket = control::socket_path(&opts.runtime_dir);
        let (view_tx, view_rx) = watch::channel(Arc::new(DaemonView::default()));
        let (command_tx, commands) = mpsc::channel(COMMAND_QUEUE);
        let listener = control::bind(&socket)
            .with_context(|| format!("binding the control socket {}", socket.display()))?;
        tokio::spawn(async move {
            if let Err(e) = listener.run(view_rx, Some(command_tx)).await {
                error!("control socket: {e}");
            }
        });
        let metrics = Arc::new(Metrics::default());
        if let Some(addr) = config.daemon.metrics_address {
            let l = super::metrics::bind_metrics(addr).await?;
            info!(address = %addr, "serving metrics on http://{addr}/metrics");
            tokio::spawn(super::metrics::serve_metrics(l, metrics.clone()));
        }

        let health = match persist::load(&persist::path(&opts.runtime_dir)) {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "ignoring the health record; every backend starts healthy");
                None
            }
        };
        let drains = match admin::load(&admin::path(&opts.state_file)) {
            Ok(d) => d,
            Err(e) => {
                warn!("ignoring the drain record: {e}; no backend starts drained");
                admin::Drains::default()
            }
        };
        let seed = clock::mono_ns() ^ u64::from(std::process::id()).rotate_left(32);
        let path = opts.config.display().to_string();
        let restored = Restored { health, drains };
        // The DNS backends' first answers, so that the first apply has them; the sets
        // of the last run stand for names that get none.
        let dns_path = dns_record::path(&opts.runtime_dir);
        let dns_sets = match dns_record::load(&dns_path, &config) {
            Ok(r) => {
                for what in &r.ignored {
                    warn!("DNS record: ignoring {what}");
                }
                r.sets
            }
            Err(e) => {
                warn!("ignoring the DNS record: {e}; DNS backends start unresolved");
                Default::default()
            }
        };
        let mut dns = DnsLink::start(&config, seed, dns_sets);
        let first = dns
            .first_round(Instant::now() + config.dns.timeout + Duration::from_millis(500))
            .await;
        dns.keep_record(dns_path);
        let config = dns.expand(&config);
        let now = Instant::now();
        let mut core = Core::new(config, path, restored, metrics, now, started, seed);

        if core.config().dataplane.socket().is_none() {
            crate::plane::socket::retire_pins();
        }
        let started: Result<Box<dyn DataPlane>, _> = match &core.config().dataplane {
            Dataplane::Xdp(x) => XdpPlane::start(x).map(|p| Box::new(p) as _),
            Dataplane::Socket(s) => SocketPlane::start(s).map(|p| Box::new(p) as _),
            Dataplane::Ipvs => IpvsPlane::start(opts.state_file.clone(), opts.probes, now)
                .map(|p| Box::new(p) as _),
        };
        let mut plane =
            started.map_err(|e| lacking(e, crate::plane::features::of_config(core.config())))?;
        let events = register(plane.event_fd()).context("polling the event ring buffer")?;
        core.plane_mode(plane.mode());
        let writes = core
            .start(&mut *plane, now)
            .context("applying the config")?;
        core.on_dns(&first, None, &mut *plane, now, SystemTime::now());
        let writer = plane
            .weight_sink()
            .map(Writer::spawn)
            .transpose()
            .context("starting the weight writer thread")?;
        let status = plane.status();
        info!(
            services = core.config().services.len(),
            backends = core.config().backend_count(),
            dataplane = core.config().dataplane.name(),
            writes,
            watcher = %status.mode,
            hooks = %status.hooks,
            "vipd running"
        );
        let (checks, check_rx) = Checks::new(CHECK_QUEUE);
        let mut shell = Shell {
            opts,
            file,
            dns,
            core,
            plane,
            writer,
            events,
            checks,
            check_rx,
            view_tx,
            reports: Vec::new(),
            signals,
            commands,
            answers: Vec::new(),
            after_batch: Vec::new(),
            notifier,
            _lock: lock,
        };
        shell.effects();
        shell.persist();
        shell.publish();
        shell.notify(|n, status| n.ready(status));
        // Held since `main` (see `start_signals`): what was sent during start-up
        // reaches its handler now and is acted on by the loop.
        super::start_signals::release();
        Ok(shell)
    }

    /// What `STATUS=` says: the plane, its mode and the service count.
    fn status_line(&self) -> String {
        let n = self.core.config().services.len();
        format!(
            "{}: {n} service{}, detection {}",
            self.core.config().dataplane.name(),
            if n == 1 { "" } else { "s" },
            self.plane.mode()
        )
    }

    fn notify(&self, send: impl Fn(&Notifier, &str) -> io::Result<()>) {
        if self.notifier.enabled() {
            if let Err(e) = send(&self.notifier, &self.status_line()) {
                warn!("notifying the service manager: {e}");
            }
        }
    }

    async fn run(mut self) -> anyhow::Result<()> {
        let mut housekeeping = Instant::now() + HOUSEKEEPING;
        let mut udp_tick = tokio::time::interval(crate::plane::ipvs::UDP_POLL);
        udp_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut drain_tick = drain_interval(drain_period(self.plane.ticks()));
        loop {
            let listening = self.events.is_some();
            let ticks = self.plane.ticks();
            let wake = self
                .core
                .next_deadline()
                .map_or(housekeeping, |d| d.min(housekeeping));
            // Held reports (an early SYN retransmission) are due without a kernel event.
            let plane_due = self.plane.next_deadline().filter(|_| listening);
            let wake = plane_due.map_or(wake, |d| d.min(wake));
            tokio::select! {
                biased;
                _ = self.signals.term.recv() => { info!(signal = "SIGTERM", "stopping; {}", self.plane.on_stop()); break; }
                _ = self.signals.int.recv() => { info!(signal = "SIGINT", "stopping; {}", self.plane.on_stop()); break; }
                ready = readable(&mut self.events) => match ready {
                    Ok(mut guard) => {
                        let n = drain(&mut *self.plane, &mut self.core, &mut self.reports);
                        if n < EVENT_BATCH {
                            guard.clear_ready();
                        }
                    }
                    Err(e) => self.events_failed(&e),
                },
                done = write_done(&mut self.writer), if self.core.writing() => self.done(done),
                Some(r) = self.check_rx.recv() => self.core.on_check(r, Instant::now()),
                _ = drain_tick.tick(), if listening && ticks.drain => {
                    drain(&mut *self.plane, &mut self.core, &mut self.reports);
                }
                _ = udp_tick.tick(), if listening && ticks.udp => self.poll_udp(),
                _ = self.signals.hup.recv() => { info!(signal = "SIGHUP", "reloading the config"); self.reload().await; }
                Some(c) = self.commands.recv() => self.command(c).await,
                Some(batch) = self.dns.next_batch() => {
                    // A changed set is applied whole: not beside a job on the writer.
                    self.settle_writes().await;
                    let expanded = self.dns.on_events(&batch);
                    self.core.on_dns(&batch, expanded, &mut *self.plane, Instant::now(), SystemTime::now());
                }
                _ = sleep_until(wake) => {
                    if plane_due.is_some_and(|d| d <= Instant::now()) {
                        drain(&mut *self.plane, &mut self.core, &mut self.reports);
                    }
                }
            }
            let now = Instant::now();
            self.core.tick(now);
            let submitted = self.write(now);
            if now >= housekeeping {
                housekeeping = now + HOUSEKEEPING;
                self.housekeeping(now).await;
            }
            self.effects();
            if self.core.wants_persist() {
                self.persist();
            }
            if self.core.take_drains_dirty() {
                self.store_drains();
            }
            if self.core.wants_publish() {
                self.publish();
            }
            if submitted {
                self.after_batch.append(&mut self.answers);
            } else if !self.core.writing() {
                send(&mut self.answers);
            }
        }
        self.notify(|n, _| n.stopping());
        // A job on the writer (a weight batch, a resync) finishes first: vipd stops
        // between kernel writes, not in the middle of an apply.
        self.settle_writes().await;
        self.persist();
        Ok(())
    }

    /// Writes the weights that changed: on the writer thread (returns true when a batch
    /// went there), or on the spot for a plane without one.
    fn write(&mut self, now: Instant) -> bool {
        let Some(writer) = &self.writer else {
            self.core.flush(&mut *self.plane, now, &clock::mono_ns);
            return false;
        };
        let Some(weights) = self.core.take_write(now) else {
            return false;
        };
        match writer.submit(Job::Write(weights)) {
            Ok(()) => true,
            Err(e) => {
                self.core
                    .written(Err(e), self.plane.name(), now, &clock::mono_ns);
                false
            }
        }
    }

    /// The writer thread's result for the job in flight.
    fn done(&mut self, done: Done) {
        match done {
            Done::Written(result) => self.written(result),
            Done::Applied(result) => self.core.resynced(result, Instant::now()),
        }
    }

    /// The writer thread's result for the batch in flight; the answers waiting for it
    /// go out.
    fn written(&mut self, result: WriteResult) {
        if let Ok(w) = &result {
            self.plane.weights_written(&w.written);
        }
        self.core
            .written(result, self.plane.name(), Instant::now(), &clock::mono_ns);
        send(&mut self.after_batch);
    }

    /// Waits for the job in flight, if any: a full apply must not race it.
    async fn settle_writes(&mut self) {
        if self.core.writing() {
            let done = write_done(&mut self.writer).await;
            self.done(done);
        }
    }

    /// The periodic full apply on the writer thread, when it is due and the writer is
    /// free (without a writer, [`Core::maintain`] applies on the loop).
    fn resync(&mut self, now: Instant) {
        let Some(writer) = &self.writer else {
            return;
        };
        if let Some((config, weights)) = self.core.take_resync(now) {
            if let Err(e) = writer.submit(Job::Apply(Box::new(config), weights)) {
                self.core.resynced(Err(e), now);
            }
        }
    }

    /// Waiting on the event source failed: passive detection stops (the core logs the
    /// plane's new mode, which names the error).
    fn events_failed(&mut self, e: &io::Error) {
        self.events = None;
        self.plane.events_failed(e);
        self.core.plane_mode(self.plane.mode());
    }

    fn poll_udp(&mut self) {
        let core = &self.core;
        let findings = self.plane.poll_udp(&|vip| core.silence_window(vip));
        self.core.on_udp(findings, Instant::now());
    }

    /// Reload: the core takes the file's config or keeps the running one; returns
    /// whether it took it.
    async fn reload(&mut self) -> bool {
        self.settle_writes().await;
        self.notify(|n, _| n.reloading(clock::mono_ns() / 1_000));
        let (loaded, text) = match self.file.load() {
            Ok((config, text)) => (Ok(self.dns.expand(&config)), Some((config, text))),
            Err(rejected) => (Err(rejected), None),
        };
        let accepted =
            self.core
                .reload(loaded, &mut *self.plane, Instant::now(), SystemTime::now());
        if let (true, Some((config, text))) = (accepted, text) {
            self.file.accept(text);
            self.dns.follow(config);
        }
        self.notify(|n, status| n.ready(status));
        accepted
    }

    async fn housekeeping(&mut self, now: Instant) {
        self.core.read_counters(&mut *self.plane);
        if self.file.changed() {
            info!("the config file changed: reloading");
            self.reload().await;
        }
        self.resync(now);
        self.core.maintain(&mut *self.plane, now);
        if self.plane.maintain(now) {
            // The plane replaced its event source.
            self.events = None;
            match register(self.plane.event_fd()) {
                Ok(events) => {
                    self.events = events;
                    self.core.plane_mode(self.plane.mode());
                }
                Err(e) => self.events_failed(&e),
            }
        }
    }

    /// Starts the probes the core asked for, and makes the periodic checks follow the
    /// services.
    fn effects(&mut self) {
        for p in self.core.take_probes() {
            self.checks.probe(p.service, p.dest, p.timeout, p.udp);
        }
        if self.core.take_checks_changed() {
            self.checks.sync(self.core.services());
        }
    }

    fn store_drains(&mut self) {
        let path = admin::path(&self.opts.state_file);
        if let Err(e) = admin::store(&path, self.core.drains()) {
            warn!("cannot write the drain record: {e}");
        }
    }

    fn persist(&mut self) {
        let record = self.core.record(Instant::now(), SystemTime::now());
        let dir = &self.opts.runtime_dir;
        if let Err(e) = std::fs::create_dir_all(dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| persist::store(&persist::path(dir), record).map_err(anyhow::Error::from))
        {
            warn!(
                "cannot write the health record: {}",
                crate::error_line::line(e.chain())
            );
        }
    }

    fn publish(&mut self) {
        let view = self.core.view(Instant::now(), self.plane.status());
        self.view_tx.send_replace(Arc::new(view));
    }
}

fn send(answers: &mut Vec<Answer>) {
    for (to, answer) in answers.drain(..) {
        let _ = to.send(answer);
    }
}

/// A data plane's failure to start, with what `vipd check` would say this host lacks
/// for it, if anything: the likely reason, said first.
fn lacking(e: crate::plane::PlaneError, host: crate::plane::features::Features) -> anyhow::Error {
    let e = anyhow::Error::from(e);
    if host.errors.is_empty() {
        e
    } else {
        e.context(host.errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::lacking;
    use crate::{
        error_line::line,
        plane::{features::Features, PlaneError},
    };

    #[test]
    fn a_plane_that_cannot_start_says_first_what_this_host_lacks() {
        let host = Features {
            errors: vec!["kernel 6.1.0 has no IPVS".into()],
            notes: vec!["not said".into()],
        };
        let e = lacking(PlaneError::WriterGone, host);
        assert_eq!(
            line(e.chain()),
            "kernel 6.1.0 has no IPVS: the weight writer thread is gone"
        );
        let e = lacking(PlaneError::WriterGone, Features::default());
        assert_eq!(line(e.chain()), "the weight writer thread is gone");
    }
}
