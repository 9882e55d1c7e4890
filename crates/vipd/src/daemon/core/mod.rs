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
mod flush;
#[cfg(test)]
mod offloop_tests;
mod operator;
#[cfg(test)]
mod operator_tests;
mod reload;
#[cfg(test)]
mod report_bench;
mod sticky;
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
    plane::{mode_kind, Applied, DataPlane, PlaneError, PlaneStatus, Weights},
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
    /// The batch of weights being written off the loop, if one is.
    in_flight: Option<flush::InFlight>,
    /// Health changed since the last [`Core::record`].
    health_dirty: bool,
    /// Something `vipd status` shows changed since the last [`Core::view`].
    publish: bool,
    /// The periodic checks must follow the services again.
    checks_changed: bool,
    next_resync: Instant,
    counts_cursor: usize,
    /// When the sticky clients are counted next.
    next_sticky: Instant,
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
        for entry in restored
            .health
            .as_ref()
            .map(|h| h.unmatched(&config))
            .unwrap_or_default()
        {
            warn!("health record: ignoring {entry}: not in the config");
        }
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
            in_flight: None,
            health_dirty: true,
            publish: true,
            checks_changed: true,
            next_resync: now + RESYNC,
            counts_cursor: 0,
            next_sticky: now,
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
        // While a batch is in flight its result wakes the loop, not the retry's time.
        let retry = self
            .retry
            .as_ref()
            .filter(|_| self.in_flight.is_none())
            .map(|r| r.at);
        match (self.services.next_deadline(), retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn keys(&self) -> Vec<ServiceKey> {
        self.services.by_key.keys().copied().collect()
    }

    /// The TCP VIPs with a configured `syn_rto`, and their timeouts.
    fn syn_rtos(&self) -> Vec<(SocketAddr, crate::config::SynRto)> {
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
        let result = plane.apply(&self.config, &weights);
        self.applied(result, now)
    }

    /// The periodic full apply, to run off the loop, when it is due and nothing else is
    /// in flight: the config and every weight as the health machines want them now. Its
    /// result goes to [`Core::resynced`]; until then no weight batch is handed out.
    pub fn take_resync(&mut self, now: Instant) -> Option<(Config, Weights)> {
        if self.in_flight.is_some() || now < self.next_resync {
            return None;
        }
        self.in_flight = Some(flush::InFlight::Apply);
        Some((self.config.clone(), self.services.weights(now, None)))
    }

    /// The result of the apply from [`Core::take_resync`].
    pub fn resynced(&mut self, result: Result<Applied, PlaneError>, now: Instant) {
        match self.in_flight.take() {
            Some(flush::InFlight::Apply) => {}
            other => {
                self.in_flight = other;
                return;
            }
        }
        let result = self.applied(result, now);
        self.resync_result(result, now);
    }

    /// A failed periodic apply is logged and tried again after [`RESYNC`].
    fn resync_result(&mut self, result: Result<u64, PlaneError>, now: Instant) {
        if let Err(e) = result {
            warn!(error = %e.chain(), "periodic reconcile failed");
            self.next_resync = now + RESYNC;
        }
    }

    /// What a full apply's result does: metrics, reachability notes, the next resync;
    /// returns the writes.
    fn applied(
        &mut self,
        result: Result<Applied, PlaneError>,
        now: Instant,
    ) -> Result<u64, PlaneError> {
        let applied = result.inspect_err(|_| self.metrics().reconcile_failure())?;
        if applied.refused > 0 {
            self.metrics().reconcile_failure();
        }
        self.metrics().rtnetlink_skipped(applied.skipped);
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
        self.metrics()
            .set_udp_sockets_destroyed(counters.udp_sockets_destroyed);
    }

    /// Housekeeping: the full apply when due, and some connection counts.
    pub fn maintain(&mut self, plane: &mut dyn DataPlane, now: Instant) {
        // Not while something is in flight (a weight batch would race it; a resync on
        // the writer thread is this one): it waits for the next housekeeping.
        if now >= self.next_resync && self.in_flight.is_none() {
            let result = self.apply(plane, now);
            self.resync_result(result, now);
        }
        self.refresh_counts(plane);
        self.refresh_sticky(plane, now);
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
