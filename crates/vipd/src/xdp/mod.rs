//! The XDP data plane (`dataplane = "xdp"`): vipd balances in an XDP program on the
//! balancer's interface instead of IPVS. The kernel side is `vipd-ebpf/src/xdp_lb.rs`
//! (whose module doc records why a naive destination rewrite breaks ping and what the
//! program does instead); the shared types are `vipd_common::xdp`.
//!
//! Here: [`loader`] loads and attaches the program and sizes (optionally pins) its maps,
//! [`maps`] reads and writes them, [`maglev`] builds the consistent-hashing tables,
//! [`dataplane`] turns a desired state into the smallest set of map writes,
//! [`test_run`] runs the program on crafted [`packet`]s with BPF_PROG_TEST_RUN;
//! [`features`] says what this host's kernel lacks for the plane (`vipd check`).

pub mod batch;
pub mod dataplane;
pub mod desired;
pub mod features;
pub mod loader;
pub mod maglev;
pub mod maps;
pub mod packet;
pub mod test_run;

pub use dataplane::{BackendRef, Changes, Dataplane, XdpServiceSpec};
pub use loader::{Sizes, XdpError, XdpProgram};
pub use maps::XdpMaps;
