//! The connection watcher: loads vipd's kernel programs, configures them with offsets
//! discovered on the running kernel, and decodes the events they send.

pub mod attach;
pub mod btf;
pub mod correlator;
pub mod event;
pub mod loader;
pub mod offsets;
pub mod tracefs;

pub use attach::{Attachment, Flavour, HookKind};
pub use correlator::{Correlator, Counters, Outcome, Report};
pub use event::{DecodeError, Event, IcmpCode, TcpState};
pub use loader::{dest_addrs, dest_key, Hooks, Probes, WatcherError};
