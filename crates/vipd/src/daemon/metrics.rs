//! Prometheus metrics: the registry the daemon updates ([`Metrics`]), rendered in the
//! text exposition format 0.0.4, and a minimal HTTP/1.1 endpoint serving `GET /metrics`
//! ([`serve_metrics`]). Hand-written: a handful of families need no client library.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// Upper bounds of the `vipd_fault_to_quarantine_seconds` buckets (`+Inf` is implied).
pub const FAULT_TO_QUARANTINE_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 5.0, 10.0,
];

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The longest request head (request line and headers) read.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a client has to send its request head, and to take the answer.
pub const HTTP_DEADLINE: Duration = Duration::from_secs(5);
/// Connections handled at once; more are closed at once.
pub const MAX_HTTP_CONNECTIONS: usize = 32;
/// How long to drain what a client still sends after the answer.

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [u64; FAULT_TO_QUARANTINE_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        let i = FAULT_TO_QUARANTINE_BUCKETS
            .iter()
            .position(|le| v <= *le)
            .unwrap_or(FAULT_TO_QUARANTINE_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

type ServiceBackend = (String, String);

/// The values of `vipd_watcher_mode`'s `mode` label.
const WATCHER_MODES: &[&str] = &["full", "partial", "degraded", "xdp"];
type Labelled3 = (String, String, String);

#[derive(Debug, Default)]
struct Inner {
    outcomes: BTreeMap<Labelled3, u64>,
    quarantines: BTreeMap<Labelled3, u64>,
    fault_to_quarantine: BTreeMap<String, Histogram>,
    lost_events: u64,
    unattributed: u64,
    /// `full`, `partial`, `degraded` or `xdp`; empty before the first report.
    watcher_mode: String,
    reconcile_ops: BTreeMap<String, u64>,
    reloads_ok: u64,
    reloads_rejected: u64,
    /// Effective weight and state.
    backends: BTreeMap<ServiceBackend, (u32, String)>,
    panic: BTreeMap<String, bool>,
}

/// The daemon's metrics. Cheap to update from the event loop; rendered from the HTTP task.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
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

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain counters behind: still
        // good to render.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One connection outcome (or check result) for a backend:
    /// `vipd_outcomes_total{service,backend,outcome}`.
    pub fn outcome(&self, service: &str, backend: &str, outcome: &str) {
        *self
            .lock()
            .outcomes
            .entry((service.to_owned(), backend.to_owned(), outcome.to_owned()))
            .or_default() += 1;
    }

    /// A backend taken out of rotation: `vipd_quarantines_total{service,backend,cause}`.
    pub fn quarantine(&self, service: &str, backend: &str, cause: &str) {
        *self
            .lock()
            .quarantines
            .entry((service.to_owned(), backend.to_owned(), cause.to_owned()))
            .or_default() += 1;
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

    /// `n` netlink writes of `kind` (`ipvs` or `rtnetlink`):
    /// `vipd_reconcile_operations_total{kind}`.
    pub fn reconcile_ops(&self, kind: &str, n: u64) {
        *self
            .lock()
            .reconcile_ops
            .entry(kind.to_owned())
            .or_default() += n;
    }

    /// A reload, applied or rejected: `vipd_reloads_total{result="ok"|"rejected"}`.
    pub fn reload(&self, ok: bool) {
        let mut inner = self.lock();
        if ok {
            inner.reloads_ok += 1;
        } else {
            inner.reloads_rejected += 1;
        }
    }

    /// A backend's effective weight and state: `vipd_backend_weight{service,backend}` and
    /// `vipd_backend_state{service,backend,state}` = 1 for the current state only.
    pub fn set_backend(&self, service: &str, backend: &str, weight: u32, state: &str) {
        self.lock().backends.insert(
            (service.to_owned(), backend.to_owned()),
            (weight, state.to_owned()),
        );
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
        inner.outcomes.retain(|(s, b, _), _| keep(s, b));
        inner.quarantines.retain(|(s, b, _), _| keep(s, b));
        inner.backends.retain(|(s, b), _| keep(s, b));
    }

    /// Keeps only the series of services for which `keep(service)` holds.
    pub fn retain_services(&self, keep: impl Fn(&str) -> bool) {
        self.retain_backends(|s, _| keep(s));
        self.lock().panic.retain(|s, _| keep(s));
    }

    /// Every family in the text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::with_capacity(4096);

        family(
            &mut out,
            "vipd_outcomes_total",
            "counter",
            "Connection outcomes and check results, per backend.",
        );
        for ((s, b, o), n) in &inner.outcomes {
            sample(
                &mut out,
                "vipd_outcomes_total",
                &[("service", s), ("backend", b), ("outcome", o)],
                &n.to_string(),
            );
        }

        family(
            &mut out,
            "vipd_quarantines_total",
            "counter",
            "Backends taken out of rotation, by cause.",
        );
        for ((s, b, c), n) in &inner.quarantines {
            sample(
                &mut out,
                "vipd_quarantines_total",
                &[("service", s), ("backend", b), ("cause", c)],
                &n.to_string(),
            );
        }

        family(
            &mut out,
            "vipd_fault_to_quarantine_seconds",
            "histogram",
            "Time from the kernel seeing a fault to the backend's weight-0 write.",
        );
        for (cause, h) in &inner.fault_to_quarantine {
            let mut cumulative = 0;
            let les = FAULT_TO_QUARANTINE_BUCKETS
                .iter()
                .map(|le| float(*le))
                .chain(std::iter::once("+Inf".to_owned()));
            for (le, n) in les.zip(h.buckets) {
                cumulative += n;
                sample(
                    &mut out,
                    "vipd_fault_to_quarantine_seconds_bucket",
                    &[("cause", cause), ("le", &le)],
                    &cumulative.to_string(),
                );
            }
            let labels = [("cause", cause.as_str())];
            sample(
                &mut out,
                "vipd_fault_to_quarantine_seconds_sum",
                &labels,
                &float(h.sum),
            );
            sample(
                &mut out,
                "vipd_fault_to_quarantine_seconds_count",
                &labels,
                &h.count.to_string(),
            );
        }

        family(
            &mut out,
            "vipd_events_lost_total",
            "counter",
            "Kernel events lost to a full ring buffer.",
        );
        sample(
            &mut out,
            "vipd_events_lost_total",
            &[],
            &inner.lost_events.to_string(),
        );

        family(
            &mut out,
            "vipd_watcher_mode",
            "gauge",
            "How passive detection runs: 1 for the current mode (full: every hook attached; \
             partial: TCP only; degraded: none, active checks only; xdp: the XDP program).",
        );
        for mode in WATCHER_MODES {
            let on = u8::from(inner.watcher_mode == *mode);
            sample(
                &mut out,
                "vipd_watcher_mode",
                &[("mode", mode)],
                &on.to_string(),
            );
        }
        family(
            &mut out,
            "vipd_watcher_degraded",
            "gauge",
            "1 while some kernel hook of the connection watcher is not attached.",
        );
        let degraded = u8::from(matches!(
            inner.watcher_mode.as_str(),
            "partial" | "degraded"
        ));
        sample(
            &mut out,
            "vipd_watcher_degraded",
            &[],
            &degraded.to_string(),
        );

        family(
            &mut out,
            "vipd_events_unattributed_total",
            "counter",
            "Kernel events that could not be attributed to a backend.",
        );
        sample(
            &mut out,
            "vipd_events_unattributed_total",
            &[],
            &inner.unattributed.to_string(),
        );

        family(
            &mut out,
            "vipd_reconcile_operations_total",
            "counter",
            "Netlink writes made to bring the kernel to the desired state.",
        );
        for (kind, n) in &inner.reconcile_ops {
            sample(
                &mut out,
                "vipd_reconcile_operations_total",
                &[("kind", kind)],
                &n.to_string(),
            );
        }

        family(
            &mut out,
            "vipd_reloads_total",
            "counter",
            "Config reloads, applied or rejected.",
        );
        for (result, n) in [
            ("ok", inner.reloads_ok),
            ("rejected", inner.reloads_rejected),
        ] {
            sample(
                &mut out,
                "vipd_reloads_total",
                &[("result", result)],
                &n.to_string(),
            );
        }

        family(
            &mut out,
            "vipd_backend_weight",
            "gauge",
            "A backend's effective weight, as written to IPVS.",
        );
        for ((s, b), (weight, _)) in &inner.backends {
            sample(
                &mut out,
                "vipd_backend_weight",
                &[("service", s), ("backend", b)],
                &weight.to_string(),
            );
        }

        family(
            &mut out,
            "vipd_backend_state",
            "gauge",
            "A backend's health state: 1 for the current one.",
        );
        for ((s, b), (_, state)) in &inner.backends {
            sample(
                &mut out,
                "vipd_backend_state",
                &[("service", s), ("backend", b), ("state", state)],
                "1",
            );
        }

        family(
            &mut out,
            "vipd_service_panic",
            "gauge",
            "1 while every backend of the service is out and weights are restored.",
        );
        for (s, panic) in &inner.panic {
            sample(
                &mut out,
                "vipd_service_panic",
                &[("service", s)],
                if *panic { "1" } else { "0" },
            );
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Label values escape backslash, double quote and newline.
fn escape_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float as Prometheus reads it: `1`, `0.005`, `+Inf`, `NaN`.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    }
}

/// Binds the metrics address; the error names it.
pub async fn bind_metrics(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("metrics address {addr}: {e}")))
}

/// Serves `GET /metrics` on `listener` forever, one task per connection. Accept errors
/// (e.g. out of file descriptors) are logged and retried.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "metrics: too many clients, closing one");
                    continue;
                };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = handle(stream, &metrics).await {
                        tracing::debug!(%peer, "metrics client: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum Head {
    Complete(Vec<u8>),
    TooLarge,
    /// The client closed before a full head.
    Closed,
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        let tail = &buf[from..];
        let end = tail
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| from + i + 4)
            .or_else(|| {
                tail.windows(2)
                    .position(|w| w == b"\n\n")
                    .map(|i| from + i + 2)
            });
        if let Some(end) = end.filter(|e| *e <= MAX_REQUEST_HEAD) {
            buf.truncate(end);
            return Ok(Head::Complete(buf));
        }
        if buf.len() >= MAX_REQUEST_HEAD {
            return Ok(Head::TooLarge);
        }
    }
}

fn response(status: &str, content_type: &str, extra: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

/// The answer to one request head.
fn route(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return response("400 Bad Request", PLAIN, "", "bad request\n", false);
    };
    if !version.starts_with("HTTP/1.") {
        return response("400 Bad Request", PLAIN, "", "bad request\n", false);
    }
    let path = target.split(['?', '#']).next().unwrap_or("");
    if path != "/metrics" {
        let head_only = method == "HEAD";
        return response(
            "404 Not Found",
            PLAIN,
            "",
            "not found: see /metrics\n",
            head_only,
        );
    }
    match method {
        "GET" | "HEAD" => response(
            "200 OK",
            CONTENT_TYPE,
            "",
            &metrics.render(),
            method == "HEAD",
        ),
        _ => response(
            "405 Method Not Allowed",
            PLAIN,
            "Allow: GET, HEAD\r\n",
            "method not allowed\n",
            false,
        ),
    }
}

async fn handle(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let answer = match tokio::time::timeout(HTTP_DEADLINE, read_head(&mut stream)).await {
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request head in time",
            ))
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::TooLarge)) => response(
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "",
            "request head too large\n",
            false,
        ),
        Ok(Ok(Head::Complete(head))) => route(&head, metrics),
    };
    super::reply::answer_and_close(&mut stream, &answer, HTTP_DEADLINE).await
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
