//! `vipd run`: the daemon, and what it offers while running.
//!
//! * [`runtime`]: the event loop joining watcher, health machines, checks and reconciler.
//! * [`services`]: the per-service runtime table rebuilt on every (re)load.
//! * [`weights`]: the fast path writing single IPVS weights.
//! * [`xdp_plane`]: the XDP balancer as the data plane (`dataplane = "xdp"`).
//! * [`checks`]: active checks and probation probes (TCP connects, UDP datagrams).
//! * [`udp_watch`]: UDP replies and silent backends from the kernel's counters.
//! * [`config_file`]: loading the config and noticing changes.
//! * [`persist`]: the health record that makes restarts flap-free.
//! * [`control`] and [`view`]: the root-only status socket and what it answers.
//! * [`metrics`]: the Prometheus endpoint.

pub mod checks;
pub mod clock;
pub mod config_file;
pub mod control;
pub mod metrics;
pub mod persist;
mod reply;
pub mod runtime;
pub mod services;
pub mod udp_watch;
pub mod view;
pub mod view_build;
pub mod weights;
pub mod xdp_plane;

pub use runtime::{run, Options};
