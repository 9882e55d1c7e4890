//! vipd: a client-side L4 load balancer control plane for Linux.
//!
//! Data flow: config → desired state → reconciler → data plane (IPVS). Kernel probes →
//! [`watcher`] (events) → correlator → health state machine → reconciler.

pub mod config;
pub mod daemon;
pub mod health;
pub mod reach;
pub mod reconcile;
pub mod watcher;
pub mod xdp;
