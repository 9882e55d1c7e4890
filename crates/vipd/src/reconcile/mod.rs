//! The reconciler: desired state (the config) against the kernel's IPVS table, to the
//! smallest ordered set of netlink writes.
//!
//! * [`desired`]: config → kernel-normal services and destinations (+ weight overrides).
//! * [`snapshot`]: the kernel's table, dumped.
//! * [`state`]: the ownership record — what vipd created and so may change or remove.
//! * [`diff`]: the pure planner (drains, the UDP rule, conflicts).
//! * [`apply`]: encoding and sending the plan as one pipelined batch.
//! * [`run`]: one whole reconcile, in the order that keeps everything safe.
//! * [`status`]: the view `vipd status` prints.
//! * [`host_check`]: `vipd check`'s read-only look at the host's interfaces and routes.
//!
//! vipd never flushes, and never changes or removes a service it did not create: on start
//! it reads what the kernel holds and touches only what its record lists.

pub mod apply;
pub mod desired;
pub mod diff;
mod error;
pub mod host_check;
pub mod op;
pub mod run;
pub mod snapshot;
pub mod state;
mod state_vet;
pub mod status;
pub mod summary;

pub use desired::{DesiredState, RemovalPolicy, RemovalRule, WeightOverrides};
pub use error::ReconcileError;
pub use host_check::{host_check, HostCheck};
pub use op::Op;
pub use run::{apply, ApplyOptions};
pub use state::{DaemonLock, Ownership, DEFAULT_STATE_FILE};
pub use summary::ApplySummary;
