//! Prometheus metrics: the registry the daemon updates ([`Metrics`], in `registry`),
//! its rendering in the text exposition format 0.0.4 (`render`, on the encoder in
//! `text`) and a minimal HTTP/1.1 endpoint serving `GET /metrics` (`http`).
//!
//! Hand-written rather than built on a client library: the registry keeps the daemon's
//! facts once (a backend's state, the watcher's mode, the last reload) and the
//! renderer derives the series from them, one 0/1 series per possible state or mode
//! with exactly one at 1, and series of removed backends and services vanish with
//! them. A client library would hold a gauge per series, to be kept in step by hand at
//! every change and removal, and would still need the endpoint below; the encoder
//! itself (HELP, TYPE, escaped labels, cumulative histogram buckets) is short and its
//! output is checked against `promtool check metrics`.

mod backend_counts;
mod histogram;
mod http;
mod registry;
mod render;
mod request;
mod text;

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod render_tests;

pub use histogram::FAULT_TO_QUARANTINE_BUCKETS;
pub use http::{bind_metrics, serve_metrics, CONTENT_TYPE, HTTP_DEADLINE, MAX_HTTP_CONNECTIONS};
pub use registry::{Metrics, WATCHER_MODES};
pub use request::{
    parse_request_head, BadRequest, Head, HeadReader, RequestLine, MAX_REQUEST_HEAD,
};
