//! What the daemon tells the metrics: counts, the current state of each backend, the
//! watcher's mode, the last reload. Cheap to update from the event loop; rendered from
//! the HTTP task (see `render`).

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard},
    time::{SystemTime, UNIX_EPOCH},
};

use super::{backend_counts::BackendCounts, histogram::Histogram};
use crate::health::State;

/// The values of `vipd_watcher_mode`'s `mode` label: the first word of a plane's mode.
pub const WATCHER_MODES: [&str; 4] = ["full", "partial", "degraded", "xdp"];

type ServiceBackend = (String, String);
type Labelled3 = (String, String, String);

#[derive(Debug, Default, Clone)]
pub(super) struct Inner {
    pub outcomes: BackendCounts,
    pub quarantines: BackendCounts,
    pub fault_to_quarantine: BTreeMap<String, Histogram>,
    pub lost_events: u64,
    pub unattributed: u64,
    pub decode_failures: u64,
    pub shed: u64,
    pub udp_sockets_destroyed: u64,
    /// One of [`WATCHER_MODES`]; empty before the first report.
    pub watcher_mode: String,
    pub reconcile_ops: BTreeMap<String, u64>,
    pub reconcile_failures: u64,
    pub weight_write_failures: u64,
    pub rtnetlink_skipped: u64,
    pub reloads_ok: u64,
    pub reloads_rejected: u64,
    /// Whether the last load of the config (start or reload) was taken.
    pub last_reload_ok: bool,
    /// When the config was last taken (start or reload), Unix seconds; 0: never.
    pub last_reload_success: f64,
    /// Effective weight and state.
    pub backends: BTreeMap<ServiceBackend, (u32, State)>,
    /// Whether an operator drained the backend (`vipd drain`).
    pub drained: BTreeMap<ServiceBackend, bool>,
    /// Clients a service's persistence keeps on the backend, where the plane counts them.
    pub sticky: BTreeMap<ServiceBackend, u32>,
    pub panic: BTreeMap<String, bool>,
    /// DNS resolutions by (service, name, result).
    pub dns_resolutions: BTreeMap<Labelled3, u64>,
    /// Whether a DNS backend's set is the last good one kept after a failure or an
    /// empty answer, by (service, name).
    pub dns_stale: BTreeMap<ServiceBackend, bool>,
}

/// The daemon's metrics.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64 / 1e3)
}

impl Metrics {
    pub fn new() -> Self {
        let mut inner = Inner::default();
        for kind in ["ipvs", "rtnetlink"] {
            inner.reconcile_ops.insert(kind.to_owned(), 0);
        }
        Self {
            inner: Mutex::new(inner),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain counters behind: still
        // good to render.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One connection outcome (or check result) for a backend:
    /// `vipd_outcomes_total{service,backend,outcome}`.
    pub fn outcome(&self, service: &str, backend: &str, outcome: &str) {
        self.lock().outcomes.bump(service, backend, outcome);
    }

    /// A backend taken out of rotation: `vipd_quarantines_total{service,backend,cause}`.
    pub fn quarantine(&self, service: &str, backend: &str, cause: &str) {
        self.lock().quarantines.bump(service, backend, cause);
    }

    /// Seconds from the kernel seeing a fault to the weight-0 write taking effect:
    /// `vipd_fault_to_quarantine_seconds{cause}`. Negative values count as 0; NaN is
    /// ignored.
    pub fn fault_to_quarantine(&self, cause: &str, seconds: f64) {
        if seconds.is_nan() {
            return;
        }
        self.lock()
            .fault_to_quarantine
            .entry(cause.to_owned())
            .or_default()
            .observe(seconds.max(0.0));
    }

    /// The kernel's count of events lost to a full ring buffer: `vipd_events_lost_total`.
    pub fn set_lost_events(&self, n: u64) {
        self.lock().lost_events = n;
    }

    /// How passive detection runs: `vipd_watcher_mode{mode}` (1 for the current mode)
    /// and `vipd_watcher_degraded` (1 unless every hook is attached).
    pub fn set_watcher_mode(&self, mode: &str) {
        mode.clone_into(&mut self.lock().watcher_mode);
    }

    /// Events that could not be attributed to a backend: `vipd_events_unattributed_total`.
    pub fn set_unattributed(&self, n: u64) {
        self.lock().unattributed = n;
    }

    /// Kernel records that could not be decoded: `vipd_event_decode_failures_total`.
    pub fn set_decode_failures(&self, n: u64) {
        self.lock().decode_failures = n;
    }

    /// Records shed to keep ring room for failures: `vipd_events_shed_total`.
    pub fn set_shed(&self, n: u64) {
        self.lock().shed = n;
    }

    /// Connected UDP sockets the socket plane destroyed (their backend taken out):
    /// `vipd_udp_sockets_destroyed_total`.
    pub fn set_udp_sockets_destroyed(&self, n: u64) {
        self.lock().udp_sockets_destroyed = n;
    }

    /// `n` netlink writes of `kind` (`ipvs` or `rtnetlink`):
    /// `vipd_reconcile_operations_total{kind}`.
    pub fn reconcile_ops(&self, kind: &str, n: u64) {
        *self
            .lock()
            .reconcile_ops
            .entry(kind.to_owned())
            .or_default() += n;
    }

    /// A full apply that failed or had writes refused: `vipd_reconcile_failures_total`.
    pub fn reconcile_failure(&self) {
        self.lock().reconcile_failures += 1;
    }

    /// `n` weight writes that failed: `vipd_weight_write_failures_total`.
    pub fn weight_write_failures(&self, n: u64) {
        self.lock().weight_write_failures += n;
    }

    /// `n` rtnetlink messages skipped as undecodable:
    /// `vipd_rtnetlink_messages_skipped_total`.
    pub fn rtnetlink_skipped(&self, n: u64) {
        self.lock().rtnetlink_skipped += n;
    }

    /// The config taken at start (`at`: when):
    /// `vipd_config_last_reload_successful` 1 and its time.
    pub fn config_loaded(&self, at: SystemTime) {
        let mut inner = self.lock();
        inner.last_reload_ok = true;
        inner.last_reload_success = unix_seconds(at);
    }

    /// A DNS resolution of `name` (a DNS backend of `service`) and its result:
    /// `vipd_dns_resolutions_total{service,name,result}`; `stale`: the name's backends
    /// are the last good set kept after a failed or empty result
    /// (`vipd_dns_stale{service,name}`).
    pub fn dns_resolution(&self, service: &str, name: &str, result: &str, stale: bool) {
        let mut inner = self.lock();
        *inner
            .dns_resolutions
            .entry((service.to_owned(), name.to_owned(), result.to_owned()))
            .or_default() += 1;
        inner
            .dns_stale
            .insert((service.to_owned(), name.to_owned()), stale);
    }

    /// Drops the DNS series of names no longer configured.
    pub fn retain_dns(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut inner = self.lock();
        inner.dns_resolutions.retain(|(s, n, _), _| keep(s, n));
        inner.dns_stale.retain(|(s, n), _| keep(s, n));
    }

    /// A reload at `at`, applied or rejected: `vipd_reloads_total{result}`,
    /// `vipd_config_last_reload_successful` and, when applied,
    /// `vipd_config_last_reload_success_timestamp_seconds`.
    pub fn reload(&self, ok: bool, at: SystemTime) {
        let mut inner = self.lock();
        inner.last_reload_ok = ok;
        if ok {
            inner.reloads_ok += 1;
            inner.last_reload_success = unix_seconds(at);
        } else {
            inner.reloads_rejected += 1;
        }
    }

    /// A backend's effective weight and state: `vipd_backend_weight{service,backend}` and
    /// `vipd_backend_state{service,backend,state}`, 1 for the current state only.
    pub fn set_backend(&self, service: &str, backend: &str, weight: u32, state: State) {
        self.lock()
            .backends
            .insert((service.to_owned(), backend.to_owned()), (weight, state));
    }

    /// `vipd_backend_drained{service,backend}`: 1 while an operator's drain holds it.
    pub fn set_drained(&self, service: &str, backend: &str, drained: bool) {
        self.lock()
            .drained
            .insert((service.to_owned(), backend.to_owned()), drained);
    }

    /// `vipd_backend_sticky_clients{service,backend}`: the clients the service's
    /// persistence keeps on the backend; `None` drops the series (not counted).
    pub fn set_sticky(&self, service: &str, backend: &str, clients: Option<u32>) {
        let key = (service.to_owned(), backend.to_owned());
        let mut inner = self.lock();
        match clients {
            Some(n) => inner.sticky.insert(key, n),
            None => inner.sticky.remove(&key),
        };
    }

    /// `vipd_service_panic{service}`: 1 while every backend is out and weights are
    /// restored.
    pub fn set_panic(&self, service: &str, panic: bool) {
        self.lock().panic.insert(service.to_owned(), panic);
    }

    /// Drops every series of a backend no longer in the config.
    pub fn forget_backend(&self, service: &str, backend: &str) {
        self.retain_backends(|s, b| !(s == service && b == backend));
    }

    /// Drops every series of a service no longer in the config.
    pub fn forget_service(&self, service: &str) {
        self.retain_services(|s| s != service);
    }

    /// Keeps only the per-backend series for which `keep(service, backend)` holds.
    pub fn retain_backends(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut inner = self.lock();
        inner.outcomes.retain(&keep);
        inner.quarantines.retain(&keep);
        inner.backends.retain(|(s, b), _| keep(s, b));
        inner.drained.retain(|(s, b), _| keep(s, b));
        inner.sticky.retain(|(s, b), _| keep(s, b));
    }

    /// Keeps only the series of services for which `keep(service)` holds.
    pub fn retain_services(&self, keep: impl Fn(&str) -> bool) {
        self.retain_backends(|s, _| keep(s));
        self.retain_dns(|s, _| keep(s));
        self.lock().panic.retain(|s, _| keep(s));
    }
}
