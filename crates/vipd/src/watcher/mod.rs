//! The connection watcher: loads vipd's kernel programs, configures them with offsets
//! discovered on the running kernel, and decodes the events they send.

pub mod attach;
pub mod correlator;
pub mod event;
pub mod loader;
pub mod syn_rto;
mod vip_ports;

pub use attach::{Attachment, Flavour, HookKind};
pub use correlator::{Correlator, Outcome, Report};
pub use event::{DecodeError, Event, IcmpCode, TcpState};
pub use loader::{dest_addrs, dest_key, Hooks, Probes, ProgramStats, WatcherError};

/// How often a reader that wants its records soon drains the event ring buffer itself:
/// `vipd trace`, which prints them as they come, and a plane that times deadlines from
/// when it reads a record (XDP); `vipd run`'s other planes drain every
/// [`crate::plane::SLOW_DRAIN`]. The kernel programs wake a reader at once only for
/// events that can fail a backend (an RST or a SYN retransmit in SYN_SENT, an ICMP
/// error, a close in SYN_SENT) or when much is pending; the rest (connects, IPVS
/// choices, established, closes) wait for the next drain, which spares a wakeup per
/// event.
pub const RING_DRAIN: std::time::Duration = std::time::Duration::from_millis(20);
