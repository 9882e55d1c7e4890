//! `vipd run`: the daemon, and what it offers while running.
//!
//! * [`shell`]: the event loop: waits on the data plane, checks, signals and timers,
//!   and does what the core decides.
//! * [`core`]: the decisions: health machines fed with reports and check results,
//!   weights to write, probes to start, reload acceptance; no I/O.
//! * [`services`]: the per-service runtime table rebuilt on every (re)load.
//! * [`checks`]: active checks and probation probes (TCP connects, UDP datagrams).
//! * [`config_file`]: loading the config and noticing changes.
//! * [`persist`]: the health record that makes restarts flap-free.
//! * [`admin`]: the operator's drains, kept across restarts and reboots.
//! * [`control`] and [`view`]: the root-only status socket and what it answers.
//! * [`metrics`]: the Prometheus endpoint.
//! * [`writer`]: the thread that writes weights off the loop.
//!
//! The data planes themselves (IPVS with the connection watcher, XDP) are in
//! [`crate::plane`].

pub mod admin;
pub mod checks;
pub mod config_file;
pub mod control;
mod control_client;
pub mod control_line;
pub mod control_proto;
pub mod core;
pub mod dns_link;
pub mod dns_record;
pub mod fault;
pub mod metrics;
pub mod notify;
pub mod persist;
mod reply;
pub mod services;
pub mod shell;
pub mod start_signals;
pub mod view;
pub mod view_build;
pub mod writer;

pub use shell::{run, ConfigInvalid, Options};
