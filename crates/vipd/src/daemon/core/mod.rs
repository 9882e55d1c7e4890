//! The daemon's core: events in, decisions out. It owns the services with their health
//! machines and decides which weights to write, what to log, which probes to start,
//! when to persist and publish, and whether a reload stands. It does no I/O of its own:
//! the data plane is reached through [`DataPlane`], time comes in as arguments
//! ([`tokio::time::Instant`], and the kernel's clock as a function), and what needs a
//! socket or a file (probes, the health record, the status view) goes back to the shell.
//!
//! One loop turn as the shell drives it: feed what came in ([`Core::on_report`],
//! [`Core::on_check`], [`Core::on_udp`]), run the health timers ([`Core::tick`]), write
//! the weights that changed ([`Core::flush`]), start the probes asked for
//! ([`Core::take_probes`]), then persist ([`Core::record`]) and publish ([`Core::view`])
//! when wanted.

#[cfg(test)]
mod dns_tests;
mod effects;
mod events;
#[cfg(test)]
mod fake_plane;
mod operator;
#[cfg(test)]
mod operator_tests;
mod reload;
#[cfg(test)]
mod syn_rto_tests;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use effects::ProbeRequest;
pub use operator::{OperatorAction, Target};

use self::effects::Effects;
use super::{
    admin::Drains,
    metrics::Metrics,
    persist::HealthRecord,
    services::Services,
    view::{DaemonView, ReloadView},
    view_build,
};
use crate::{
    config::Config,
    model::{BackendId, ServiceKey},
    plane::{mode_kind, DataPlane, PlaneError, PlaneStatus},
};

/// A full apply repairs drift (someone changed a vipd-owned weight) this often.
pub const RESYNC: Duration = Duration::from_secs(30);
/// While removed backends drain, apply this often to delete the finished ones.
pub const DRAIN_RESYNC: Duration = Duration::from_secs(2);
/// The first retry of a failed weight write comes this soon; each further one waits
/// twice as long, up to [`WRITE_RETRY_MAX`].
pub const WRITE_RETRY_FIRST: Duration = Duration::from_millis(50);
pub const WRITE_RETRY_MAX: Duration = Duration::from_secs(5);

/// How long retry number `attempt` (1-based) of a failed weight write waits.
pub fn write_retry_delay(attempt: u32) -> Duration {
    WRITE_RETRY_FIRST
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(WRITE_RETRY_MAX)
}

/// Weight writes that failed, to be tried again.
#[derive(Debug, Clone)]
struct Retry {
    services: BTreeSet<ServiceKey>,
    attempt: u32,
    at: Instant,
}

/// Backends whose connection counts are read per [`Core::maintain`].
const COUNTS_PER_PASS: usize = 64;

/// A fault-to-quarantine time: from the kernel seeing the fault to the weight 0 write.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub service: ServiceKey,
    pub backend: BackendId,
    pub cause: &'static str,
    pub seconds: f64,
}

pub struct Core {
    config: Config,
    /// The config file, for messages and `vipd status`.
    config_path: String,
    services: Services,
    effects: Effects,
    seed: u64,
    /// Services whose weights may have changed since the last write.
    dirty: BTreeSet<ServiceKey>,
    /// Failed weight writes waiting for their next try.
    retry: Option<Retry>,
    /// Health changed since the last [`Core::record`].
    health_dirty: bool,
    /// Something `vipd status` shows changed since the last [`Core::view`].
    publish: bool,
    /// The periodic checks must follow the services again.
    checks_changed: bool,
    next_resync: Instant,
    counts_cursor: usize,
    /// Kernel records the plane lost since start, as last read.
    lost_events: u64,
    /// The last apply's reachability notes, logged when they change.
    reach_notes: Vec<String>,
    /// The plane's detection mode as last told (empty before), logged when it changes.
    watcher_mode: String,
    started: SystemTime,
    loaded: SystemTime,
    last_reload: Option<ReloadView>,
    /// The operator's drains, and whether they changed since last written.
    drains: Drains,
    drains_dirty: bool,
    /// The DNS backends' names as the resolver last reported them, by (service, kind,
    /// name).
    dns_names: std::collections::BTreeMap<(String, String, String), crate::dns::NameView>,
}

/// What a restart brings back: the health record (from the runtime directory) and the
/// operator's drains (from the state directory).
#[derive(Debug, Default)]
pub struct Restored {
    pub health: Option<HealthRecord>,
    pub drains: Drains,
}

impl Core {
    /// The services of `config`, their health restored from `restored` (a restart) or
    /// healthy, the operator's drains held. `wall` is the start time; `seed` varies
    /// quarantine jitter.
    pub fn new(
        config: Config,
        config_path: String,
        restored: Restored,
        metrics: Arc<Metrics>,
        now: Instant,
        wall: SystemTime,
        seed: u64,
    ) -> Self {
        let (services, _) = Services::build(
            &config,
            Services::default(),
            restored.health.as_ref(),
            &restored.drains,
            now,
            wall,
            seed,
        );
        metrics.config_loaded(wall);
        let mut core = Core {
            config,
            config_path,
            services,
            effects: Effects::new(metrics),
            seed,
            dirty: BTreeSet::new(),
            retry: None,
            health_dirty: true,
            publish: true,
            checks_changed: true,
            next_resync: now + RESYNC,
            counts_cursor: 0,
            lost_events: 0,
            reach_notes: Vec::new(),
            watcher_mode: String::new(),
            started: wall,
            loaded: wall,
            last_reload: None,
            drains: restored.drains,
            drains_dirty: false,
            dns_names: Default::default(),
        };
        core.prune_drains();
        core
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The earliest time a health machine needs [`Core::tick`].
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = self.retry.as_ref().map(|r| r.at);
        match (self.services.next_deadline(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn keys(&self) -> Vec<ServiceKey> {
        self.services.by_key.keys().copied().collect()
    }

    /// The TCP VIPs with a configured `syn_rto`, and their timeouts.
    fn syn_rtos(&self) -> Vec<(SocketAddr, Duration)> {
        self.services
            .by_key
            .iter()
            .filter_map(|(key, s)| Some((key.vip()?.addr, s.syn_rto?)))
            .collect()
    }

    /// The plane reports on the configured services and gives their VIPs their SYN
    /// timeouts.
    fn watch(&self, plane: &mut dyn DataPlane) {
        plane.watch(&self.keys());
        plane.set_syn_rto(&self.syn_rtos());
    }

    fn metrics(&self) -> &Metrics {
        &self.effects.metrics
    }

    /// Health changed: persist and publish.
    fn health_changed(&mut self) {
        self.health_dirty = true;
        self.publish = true;
    }

    /// The plane's detection mode changed (or is first known): `vipd_watcher_mode`, and
    /// a log event when it changed from a known one (the first is in the start line).
    pub fn plane_mode(&mut self, mode: &str) {
        if mode == self.watcher_mode {
            return;
        }
        let kind = mode_kind(mode);
        if !self.watcher_mode.is_empty() {
            let previous = mode_kind(&self.watcher_mode);
            if matches!(kind, "full" | "xdp") {
                info!(mode = kind, previous, detail = mode, "watcher mode changed");
            } else {
                warn!(mode = kind, previous, detail = mode, "watcher mode changed");
            }
        }
        self.metrics().set_watcher_mode(kind);
        mode.clone_into(&mut self.watcher_mode);
        self.publish = true;
    }

    /// Start-up: the plane reports on the services and holds the config with the
    /// restored health on top (after a restart with nothing changed: no writes).
    pub fn start(&mut self, plane: &mut dyn DataPlane, now: Instant) -> Result<u64, PlaneError> {
        self.watch(plane);
        let writes = self.apply(plane, now)?;
        self.checks_changed = true;
        Ok(writes)
    }

    /// A full apply of the config with the health weights on top; returns the writes.
    /// A failure, or writes the kernel refused, count in `vipd_reconcile_failures_total`.
    pub fn apply(&mut self, plane: &mut dyn DataPlane, now: Instant) -> Result<u64, PlaneError> {
        let weights = self.services.weights(now, None);
        let applied = plane
            .apply(&self.config, &weights)
            .inspect_err(|_| self.metrics().reconcile_failure())?;
        if applied.refused > 0 {
            self.metrics().reconcile_failure();
        }
        if applied.notes != self.reach_notes {
            for n in &applied.notes {
                warn!("reachability: {n}");
            }
            self.reach_notes = applied.notes;
        }
        for (kind, n) in &applied.ops {
            self.metrics().reconcile_ops(kind, *n);
        }
        self.next_resync = now
            + if applied.draining {
                DRAIN_RESYNC
            } else {
                RESYNC
            };
        Ok(applied.writes)
    }

    /// The fast path: writes the weights of the services whose health changed, then
    /// measures fault-to-quarantine for every weight 0 written, against `kernel_now`
    /// (the kernel's clock, read once the write is done). A plane error brings the next
    /// full apply forward to now.
    pub fn flush(
        &mut self,
        plane: &mut dyn DataPlane,
        now: Instant,
        kernel_now: &dyn Fn() -> u64,
    ) -> Vec<Measured> {
        let retrying = self.retry.as_ref().is_some_and(|r| now >= r.at);
        if retrying {
            let services = self.retry.as_ref().map(|r| r.services.clone());
            self.dirty.extend(services.unwrap_or_default());
        }
        if self.dirty.is_empty() {
            return Vec::new();
        }
        let dirty = std::mem::take(&mut self.dirty);
        let weights = self.services.weights(now, Some(&dirty));
        let (written, failed) = match plane.write_weights(&weights) {
            Ok(w) => {
                self.metrics().reconcile_ops(plane.name(), w.ops);
                self.metrics().weight_write_failures(w.failed);
                if w.failed > 0 {
                    // A refused write (ENOENT: someone deleted the destination; ENOMEM)
                    // is retried below, and the next full apply repairs what it can.
                    self.next_resync = now;
                }
                (w.written, w.failed > 0)
            }
            Err(e) => {
                // Tried again soon (below), and the next full apply repairs the rest.
                warn!(error = %e.chain(), "writing weights failed");
                self.metrics().weight_write_failures(1);
                self.next_resync = now;
                (Vec::new(), true)
            }
        };
        if failed {
            let (mut services, attempt) = match self.retry.take() {
                Some(r) => (r.services, r.attempt + 1),
                None => (BTreeSet::new(), 1),
            };
            services.extend(dirty.iter().copied());
            let delay = write_retry_delay(attempt);
            debug!(
                attempt,
                retry_in_ms = delay.as_millis() as u64,
                "weight write failed"
            );
            self.retry = Some(Retry {
                services,
                attempt,
                at: now + delay,
            });
        } else if retrying {
            self.retry = None;
        }
        let mut measured = Vec::new();
        for w in &written {
            let service = self.services.name(&w.service);
            let backend = SocketAddr::from(w.dest);
            let fault = (w.to == 0)
                .then(|| self.effects.faults.remove(&(w.service, w.dest)))
                .flatten();
            let Some((fault_ns, cause)) = fault else {
                debug!(service, %backend, from = w.from, weight = w.to, "weight written");
                continue;
            };
            let seconds = kernel_now().saturating_sub(fault_ns) as f64 / 1e9;
            self.effects.metrics.fault_to_quarantine(cause, seconds);
            info!(
                service,
                %backend,
                cause,
                from = w.from,
                weight = 0,
                fault_to_weight_ms = (seconds * 1e4).round() / 10.0,
                "quarantine written"
            );
            measured.push(Measured {
                service: w.service,
                backend: w.dest,
                cause,
                seconds,
            });
        }
        // A quarantine that wrote nothing (panic, or already at 0) measures nothing; one
        // whose write failed is measured when the retry writes it.
        if !failed {
            self.effects.faults.retain(|(k, _), _| !dirty.contains(k));
        }
        measured
    }

    /// The probes asked for since the last call.
    pub fn take_probes(&mut self) -> Vec<ProbeRequest> {
        std::mem::take(&mut self.effects.probes)
    }

    /// Whether the periodic checks must follow [`Core::services`] again.
    pub fn take_checks_changed(&mut self) -> bool {
        std::mem::take(&mut self.checks_changed)
    }

    /// The plane's counters for the metrics: lost records, unattributed events.
    pub fn read_counters(&mut self, plane: &mut dyn DataPlane) {
        match plane.lost_events() {
            Some(Ok(n)) => {
                if n > self.lost_events {
                    warn!(
                        lost = n - self.lost_events,
                        lost_total = n,
                        "kernel events lost (ring buffer full)"
                    );
                }
                self.lost_events = n;
                self.metrics().set_lost_events(n);
            }
            Some(Err(e)) => debug!("reading the lost-event counter: {}", e.chain()),
            None => {}
        }
        let counters = plane.counters();
        self.metrics().set_unattributed(counters.unattributed);
        self.metrics().set_decode_failures(counters.decode_failures);
        self.metrics().set_shed(counters.shed);
    }

    /// Housekeeping: the full apply when due, and some connection counts.
    pub fn maintain(&mut self, plane: &mut dyn DataPlane, now: Instant) {
        if now >= self.next_resync {
            if let Err(e) = self.apply(plane, now) {
                warn!(error = %e.chain(), "periodic reconcile failed");
                self.next_resync = now + RESYNC;
            }
        }
        self.refresh_counts(plane);
        self.publish = true;
    }

    /// Connection counts for `vipd status`, a bounded number of backends per pass.
    fn refresh_counts(&mut self, plane: &mut dyn DataPlane) {
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        let mut budget = COUNTS_PER_PASS;
        let mut visited = 0;
        while budget > 0 && visited < keys.len() {
            let key = keys[self.counts_cursor % keys.len()];
            self.counts_cursor = self.counts_cursor.wrapping_add(1);
            visited += 1;
            let counts = match plane.connection_counts(&key) {
                None => return, // the plane keeps no connection counts
                Some(Err(_)) => continue,
                Some(Ok(c)) => c,
            };
            if let Some(s) = self.services.by_key.get_mut(&key) {
                for c in counts {
                    if let Some(st) = s.stats.get_mut(&c.backend) {
                        st.active_conns = c.active;
                        st.inactive_conns = c.inactive;
                    }
                    budget = budget.saturating_sub(1);
                }
            }
        }
    }

    /// Whether health changed since the last [`Core::record`].
    pub fn wants_persist(&self) -> bool {
        self.health_dirty
    }

    /// Whether status changed since the last [`Core::view`].
    pub fn wants_publish(&self) -> bool {
        self.publish
    }

    /// The health record to write now.
    pub fn record(&mut self, now: Instant, wall: SystemTime) -> HealthRecord {
        self.health_dirty = false;
        let mut record = HealthRecord::default();
        for (key, s) in &self.services.by_key {
            record.insert(key, s.health.to_persisted(now, wall));
        }
        record
    }

    /// The status to publish, with what `plane` says of itself; the per-backend metrics
    /// follow it.
    pub fn view(&mut self, now: Instant, plane: PlaneStatus) -> DaemonView {
        self.publish = false;
        let metrics = &self.effects.metrics;
        for s in self.services.by_key.values() {
            for v in s.health.views(now) {
                let backend = SocketAddr::from(v.dest).to_string();
                metrics.set_backend(&s.name, &backend, v.weight, v.state);
                metrics.set_drained(&s.name, &backend, s.drained.contains(&v.dest));
            }
            metrics.set_panic(&s.name, s.health.in_panic());
        }
        let mut view = view_build::build(
            &self.services,
            now,
            view_build::Meta {
                config: self.config_path.clone(),
                drains: &self.drains,
                dataplane: self.config.dataplane.name(),
                started: self.started,
                loaded: self.loaded,
                last_reload: self.last_reload.clone(),
                watcher_mode: plane.mode,
                watcher_hooks: plane.hooks,
                counters: plane.counters,
                lost_events: self.lost_events,
                tracked: plane.tracked,
                sysctls: plane.sysctls,
            },
        );
        view.dns = self.dns_names.values().cloned().collect();
        view
    }
}
