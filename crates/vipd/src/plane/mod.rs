//! The data planes vipd programs, behind one interface ([`DataPlane`]): the kernel's
//! IPVS ([`ipvs`], with the eBPF connection watcher), vipd's XDP balancer ([`xdp`]) and
//! its socket-level balancer in cgroup programs ([`socket`]).
//!
//! The daemon's core decides every backend's weight; a plane makes its kernel side hold
//! those weights (a full apply with diffs, or the fast path for a few services), turns
//! what its kernel side saw of connections into [`Report`]s, and describes itself for
//! `vipd status`. A plane knows nothing of health machines, checks or the config file.

mod error;
pub mod features;
pub mod held_map;
pub mod ipvs;
pub mod socket;
pub mod syn_rto;
mod weights;
pub mod xdp;

use std::{collections::BTreeMap, io, net::SocketAddr, os::fd::OwnedFd, time::Duration};

use tokio::time::Instant;

pub use error::PlaneError;
pub use weights::{Held, WeightSink, WeightWrites, Weights, Written};

use crate::{
    config::{Config, SynRto},
    model::{BackendId, Counters, Report, ServiceKey, Vip},
};

/// What a full apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Writes to the kernel (netlink messages, XDP map entries).
    pub writes: u64,
    /// Writes by kind, as `vipd_reconcile_operations_total` counts them.
    pub ops: Vec<(&'static str, u64)>,
    /// Writes the kernel refused: the kernel is not yet as wanted (the next apply tries
    /// again).
    pub refused: u64,
    /// Messages of the kernel's answers skipped because they could not be decoded.
    pub skipped: u64,
    /// Removed backends still wait for their connections to end: apply again soon.
    pub draining: bool,
    /// What the operator should know about reachability (logged when they change).
    pub notes: Vec<String>,
}

/// A backend's connection counts, for `vipd status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnCount {
    pub backend: BackendId,
    pub active: u32,
    pub inactive: u32,
}

/// Per service with persistence (every one of them, an empty map when no client sticks
/// now), its backends that clients stick to and how many.
pub type StickyCounts = BTreeMap<ServiceKey, BTreeMap<BackendId, u32>>;

/// What one poll of a UDP backend's traffic counters found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFinding {
    pub vip: Vip,
    pub backend: BackendId,
    /// Datagrams sent to the backend and replies from it (absolute counters).
    pub sent: u64,
    pub replied: u64,
    /// Replies since the last poll: a success when above 0.
    pub new_replies: u64,
    /// The backend has been silent past its window: the report of that.
    pub silent: Option<Report>,
}

/// How often an event ring whose waiting records can wait is drained (see
/// [`Ticks::slow_drain`]): vipd wakes twice a second for it, busy or idle, and a success
/// is counted within this. A wake-up costs more than the records it reads at a few
/// thousand connections a second, and the kernel wakes vipd sooner for a failure and
/// once an eighth of the ring holds unread records.
pub const SLOW_DRAIN: Duration = Duration::from_millis(500);

/// Which timers the plane's event source wants besides its readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ticks {
    /// Take reports on a timer too (every [`Ticks::slow_drain`]): the kernel programs
    /// wake a reader at once only for failures.
    pub drain: bool,
    /// Poll the UDP traffic counters every [`ipvs::UDP_POLL`].
    pub udp: bool,
    /// Draining this seldom is enough: the records that wait for a drain can wait that
    /// long (nothing is timed from when they are read, and a record that wakes vipd has
    /// every record queued before it read first). `None`: every
    /// [`crate::watcher::RING_DRAIN`] (a plane that starts a deadline when it reads a
    /// SYN's record). A constant of the plane: read once, when the daemon starts.
    pub slow_drain: Option<Duration>,
}

/// How a plane describes itself in `vipd status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaneStatus {
    /// How passive detection runs: `full`, `partial: ...`, `degraded: ...`, `xdp: ...`.
    pub mode: String,
    /// Where its kernel programs are attached.
    pub hooks: String,
    /// Sysctls the plane depends on, with their values.
    pub sysctls: Vec<String>,
    pub counters: Counters,
    /// Connections followed now.
    pub tracked: u64,
}

/// The first word of a mode (`full`, `partial`, `degraded`, `xdp`): the
/// `vipd_watcher_mode` label.
pub fn mode_kind(mode: &str) -> &str {
    mode.split(':').next().unwrap_or(mode)
}

/// A data plane as the daemon drives it.
pub trait DataPlane {
    /// `ipvs` or `xdp`: the kind its fast-path writes are counted under.
    fn name(&self) -> &'static str;

    /// What its writes are called in messages: `netlink writes`, `XDP map writes`.
    fn write_unit(&self) -> &'static str;

    /// How passive detection runs now (see [`PlaneStatus::mode`]).
    fn mode(&self) -> &str;

    /// For `vipd status` (reads sysctls where the plane has any: call when publishing).
    fn status(&self) -> PlaneStatus;

    /// The connection counters of its event source.
    fn counters(&self) -> Counters {
        Counters::default()
    }

    /// What stays in the kernel when vipd stops.
    fn on_stop(&self) -> &'static str;

    /// Brings the kernel side to `config` with `weights` (every configured backend, as
    /// the health machines want it) on top, writing only differences.
    fn apply(&mut self, config: &Config, weights: &Weights) -> Result<Applied, PlaneError>;

    /// The fast path: writes the `weights` of the services given (all their backends)
    /// that differ from what the plane last wrote.
    fn write_weights(&mut self, weights: &Weights) -> Result<WeightWrites, PlaneError>;

    /// A plane whose writes may wait on the kernel hands its fast path and its periodic
    /// full apply out here, once, to run off the daemon's loop; what the fast path wrote
    /// comes back through [`DataPlane::weights_written`]. `None`:
    /// [`DataPlane::write_weights`] is quick (XDP map writes) and runs on the loop.
    fn weight_sink(&mut self) -> Option<Box<dyn WeightSink>> {
        None
    }

    /// What the fast path wrote off the loop, for what the plane does after a weight
    /// change (IPVS: releasing the handshakes caught on a quarantined backend).
    fn weights_written(&mut self, _written: &[Written]) {}

    /// After a reload whose apply failed: the plane is to hold `config` (the running
    /// one) with `weights` again, as far as it tracks what it wrote.
    fn restore(&mut self, config: &Config, weights: &Weights);

    /// Report on exactly these services.
    fn watch(&mut self, _services: &[ServiceKey]) {}

    /// Give clients' connections to exactly these TCP VIPs this initial SYN
    /// retransmission timeout (fixed, or adapted to the handshakes the plane sees);
    /// every other VIP keeps the kernel's default. A plane that cannot logs why, once;
    /// it is never an error.
    fn set_syn_rto(&mut self, _vips: &[(SocketAddr, SynRto)]) {}

    /// When the plane next has reports to give without a kernel event (a held SYN
    /// retransmission whose deadline passes): take them then.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// A descriptor that is readable while reports wait; `None`: no event source. A new
    /// one is needed after [`DataPlane::maintain`] returns true.
    fn event_fd(&self) -> Option<io::Result<OwnedFd>>;

    /// Takes up to `max` queued kernel records (non-blocking), adding the reports they
    /// make to `out`; returns how many records it took (fewer than `max`: none left).
    fn take_reports(&mut self, max: usize, out: &mut Vec<Report>) -> usize;

    /// Waiting on the event source failed: passive detection stops.
    fn events_failed(&mut self, error: &io::Error);

    /// Which timers to run for it.
    fn ticks(&self) -> Ticks;

    /// Reads the UDP backends' traffic counters; `window` gives each UDP VIP's
    /// `silence_window` (`None`: silence is not watched there).
    fn poll_udp(&mut self, _window: &dyn Fn(Vip) -> Option<Duration>) -> Vec<UdpFinding> {
        Vec::new()
    }

    /// Periodic upkeep (about once a second). Returns true when the event source was
    /// replaced: call [`DataPlane::event_fd`] again.
    fn maintain(&mut self, _now: Instant) -> bool {
        false
    }

    /// Kernel records lost since start (ring buffer full); `None`: not known now.
    fn lost_events(&mut self) -> Option<Result<u64, PlaneError>>;

    /// The connection counts of `service`'s backends; `None`: the plane keeps none.
    fn connection_counts(
        &mut self,
        _service: &ServiceKey,
    ) -> Option<Result<Vec<ConnCount>, PlaneError>> {
        None
    }

    /// How many clients each service with persistence keeps on each of its backends
    /// now; `None`: the plane does not count them.
    fn sticky_clients(&mut self) -> Option<StickyCounts> {
        None
    }
}
