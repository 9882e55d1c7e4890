//! The socket data plane (`dataplane = "socket"`): vipd's cgroup programs translate a
//! VIP to a backend when a socket connects (TCP, connected UDP) or sends a datagram
//! unconnected, and back when the application asks for its peer or receives; there is
//! no per-packet work and no NAT. The kernel side is `vipd-ebpf/src/sock_*.rs`; the
//! shared types are `vipd_common::sock`.
//!
//! Here: [`loader`] loads the programs and attaches them to a cgroup (through links
//! pinned so that balancing outlives vipd), [`compat`] re-creates pinned maps of another
//! layout, [`link`] holds the few bpf(2) calls aya has
//! no wrapper for, [`pins`] decides which pinned objects vipd may remove, [`reset`] sets
//! up the refusal tracepoint, [`maps`] reads
//! and writes the maps, [`selection`] builds a service's weighted selection, and
//! [`dataplane`] turns a desired state into the smallest set of map writes, and
//! [`features`] says what this host's kernel lacks for the plane (`vipd check`);
//! [`error_report`] and [`udp_err`] set up the hooks for ICMP errors on connected
//! sockets and about unconnected datagrams;
//! [`udp_destroy`] moves connected UDP sockets off backends taken out of a service;
//! [`sticky`] counts the clients that services with persistence keep on each backend.

pub mod compat;
pub mod dataplane;
mod error;
pub mod error_report;
pub mod features;
pub mod link;
pub mod loader;
pub mod maps;
pub mod pins;
pub mod reset;
pub mod selection;
pub mod sock_diag;
pub mod sticky;
pub mod udp_destroy;
pub mod udp_err;

pub use dataplane::{Changes, Dataplane, SockPersistence, SockServiceSpec};
pub use error::SockError;
pub use loader::{Sizes, SockProgram};
pub use maps::SockMaps;
