//! Every family, with its HELP and TYPE even when it has no series yet, so that a
//! scrape (and the tests that check the dashboard against it) always sees every name.

use std::collections::BTreeMap;

use super::{
    registry::{Inner, Metrics, WATCHER_MODES},
    text::{Exposition, Kind, Value},
};
use crate::health::State;

impl Metrics {
    /// Every family in the text exposition format 0.0.4. The registry is locked only
    /// to copy it: the daemon's loop never waits on a rendering in progress.
    pub fn render(&self) -> String {
        let inner = self.lock().clone();
        let mut x = Exposition::default();
        build_info(&mut x);
        config(&mut x, &inner);
        backends(&mut x, &inner);
        detection(&mut x, &inner);
        watcher(&mut x, &inner);
        writes(&mut x, &inner);
        dns(&mut x, &inner);
        x.finish()
    }
}

fn build_info(x: &mut Exposition) {
    x.family(
        "vipd_build_info",
        Kind::Gauge,
        "Always 1; the labels say which vipd this is.",
    )
    .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u64);
}

fn config(x: &mut Exposition, inner: &Inner) {
    x.single(
        "vipd_config_last_reload_successful",
        Kind::Gauge,
        "1 if the last load of the config (at start or on reload) was taken, 0 if rejected.",
        inner.last_reload_ok,
    );
    x.single(
        "vipd_config_last_reload_success_timestamp_seconds",
        Kind::Gauge,
        "When the running config was taken (at start or on reload), Unix time.",
        inner.last_reload_success,
    );
    x.by_label(
        "vipd_reloads_total",
        Kind::Counter,
        "Config reloads, applied or rejected.",
        "result",
        [
            ("ok", inner.reloads_ok),
            ("rejected", inner.reloads_rejected),
        ],
    );
}

fn backends(x: &mut Exposition, inner: &Inner) {
    let mut f = x.family(
        "vipd_backend_state",
        Kind::Gauge,
        "A backend's health state: one series per state, 1 for the current one.",
    );
    for ((s, b), (_, current)) in &inner.backends {
        for state in State::ALL {
            let labels = [
                ("service", s.as_str()),
                ("backend", b),
                ("state", state.as_str()),
            ];
            f.sample(&labels, state == *current);
        }
    }
    let mut f = x.family(
        "vipd_backend_weight",
        Kind::Gauge,
        "A backend's effective weight, as written to the data plane.",
    );
    for ((s, b), (weight, _)) in &inner.backends {
        f.sample(&[("service", s), ("backend", b)], *weight);
    }
    per_backend(
        x,
        "vipd_backend_drained",
        "1 while an operator's drain (vipd drain) holds the backend at weight 0.",
        &inner.drained,
    );
    per_backend(
        x,
        "vipd_backend_sticky_clients",
        "Clients the service's persistence keeps on the backend now (socket data plane).",
        &inner.sticky,
    );
    x.by_label(
        "vipd_service_panic",
        Kind::Gauge,
        "1 while every backend of the service is out and weights are restored.",
        "service",
        &inner.panic,
    );
}

/// A gauge with one series per (service, backend).
fn per_backend<T: Value + Copy>(
    x: &mut Exposition,
    name: &'static str,
    help: &'static str,
    series: &BTreeMap<(String, String), T>,
) {
    let mut f = x.family(name, Kind::Gauge, help);
    for ((s, b), v) in series {
        f.sample(&[("service", s), ("backend", b)], *v);
    }
}

fn detection(x: &mut Exposition, inner: &Inner) {
    let per_backend = [
        (
            "vipd_outcomes_total",
            "Connection outcomes and check results, per backend.",
            "outcome",
            &inner.outcomes,
        ),
        (
            "vipd_quarantines_total",
            "Backends taken out of rotation, by cause.",
            "cause",
            &inner.quarantines,
        ),
    ];
    for (name, help, label, counts) in per_backend {
        let mut f = x.family(name, Kind::Counter, help);
        for ((s, b, v), n) in counts.iter() {
            f.sample(&[("service", s), ("backend", b), (label, v)], n);
        }
    }
    let mut f = x.family(
        "vipd_fault_to_quarantine_seconds",
        Kind::Histogram,
        "Time from the kernel seeing a fault to the backend's weight-0 write.",
    );
    for (cause, h) in &inner.fault_to_quarantine {
        for (le, n) in h.cumulative() {
            let le = super::text::float(le);
            f.suffixed("_bucket", &[("cause", cause), ("le", &le)], n);
        }
        f.suffixed("_sum", &[("cause", cause)], h.sum);
        f.suffixed("_count", &[("cause", cause)], h.count);
    }
}

fn watcher(x: &mut Exposition, inner: &Inner) {
    let mut f = x.family(
        "vipd_watcher_mode",
        Kind::Gauge,
        "How passive detection runs: 1 for the current mode (full: every hook attached; \
         partial: TCP only; degraded: none, active checks only; xdp: the XDP program).",
    );
    for mode in WATCHER_MODES {
        f.sample(&[("mode", mode)], inner.watcher_mode == mode);
    }
    let degraded = matches!(inner.watcher_mode.as_str(), "partial" | "degraded");
    x.single(
        "vipd_watcher_degraded",
        Kind::Gauge,
        "1 while some kernel hook of the connection watcher is not attached.",
        degraded,
    );
    let counters = [
        (
            "vipd_events_lost_total",
            "Kernel events lost to a full ring buffer.",
            inner.lost_events,
        ),
        (
            "vipd_events_unattributed_total",
            "Kernel events that could not be attributed to a backend.",
            inner.unattributed,
        ),
        (
            "vipd_event_decode_failures_total",
            "Kernel records that could not be decoded (and were dropped).",
            inner.decode_failures,
        ),
        (
            "vipd_events_shed_total",
            "Success and close records not queued while the ring was nearly full, to keep room for failures.",
            inner.shed,
        ),
        (
            "vipd_udp_sockets_destroyed_total",
            "Connected UDP sockets the socket plane destroyed because their backend was taken out of its service.",
            inner.udp_sockets_destroyed,
        ),
    ];
    for (name, help, n) in counters {
        x.single(name, Kind::Counter, help, n);
    }
}

fn writes(x: &mut Exposition, inner: &Inner) {
    x.by_label(
        "vipd_reconcile_operations_total",
        Kind::Counter,
        "Writes made to bring the kernel to the desired state, by kind.",
        "kind",
        &inner.reconcile_ops,
    );
    x.single(
        "vipd_reconcile_failures_total",
        Kind::Counter,
        "Full applies of the config that failed or had writes refused by the kernel.",
        inner.reconcile_failures,
    );
    x.single(
        "vipd_weight_write_failures_total",
        Kind::Counter,
        "Backend weight writes that failed (each is tried again).",
        inner.weight_write_failures,
    );
    x.single(
        "vipd_rtnetlink_messages_skipped_total",
        Kind::Counter,
        "Rtnetlink messages in the kernel's answers that could not be decoded and were skipped.",
        inner.rtnetlink_skipped,
    );
}

fn dns(x: &mut Exposition, inner: &Inner) {
    let mut f = x.family(
        "vipd_dns_resolutions_total",
        Kind::Counter,
        "Resolutions of DNS backends' names, by result: ok, empty, nxdomain, failed.",
    );
    for ((s, n, r), count) in &inner.dns_resolutions {
        f.sample(
            &[("service", s.as_str()), ("name", n), ("result", r)],
            *count,
        );
    }
    let mut f = x.family(
        "vipd_dns_stale",
        Kind::Gauge,
        "1 while a DNS backend's set is the last good one, kept because the last resolution failed or was empty.",
    );
    for ((s, n), stale) in &inner.dns_stale {
        f.sample(&[("service", s.as_str()), ("name", n)], *stale);
    }
}
