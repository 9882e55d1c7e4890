//! vipd: a client-side L4 load balancer control plane for Linux.
//!
//! Data flow: config → the daemon's core ([`daemon::core`], health machines) → a data
//! plane ([`plane`]: IPVS through the [`reconcile`]r, or the [`xdp`] balancer). Back:
//! kernel events → the plane ([`watcher`] and correlator, or XDP health records) →
//! reports → health machines → weights. Identities no plane owns are in [`model`].

mod bpf_map;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dns;
pub mod error_line;
pub mod fs_type;
pub mod health;
pub mod kernel;
pub mod model;
pub mod plane;
pub mod reach;
pub mod reconcile;
pub mod record_file;
pub mod sockplane;
pub mod watcher;
pub mod xdp;

#[cfg(test)]
mod kernel_objects_tests;
