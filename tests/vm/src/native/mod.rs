//! The lab outside the VM, on a development host whose kernel has the socket data
//! plane's features (cgroup v2, the cgroup BPF hooks) but perhaps no IPVS: every host of
//! the lab is a namespace ([`crate::lab::Lab::namespaced`]), clients run in the client
//! host's namespace and in a cgroup of their own ([`ClientCgroup`]), and vipd runs
//! there too with `dataplane = "socket"`, its pins in a directory of the caller's
//! ([`PinDir`]). Nothing of the host's own networking changes; [`cleanup`] removes what
//! such a lab made even after the process that made it died.

mod cgroup;
mod host;
mod session;
mod weights;

pub use cgroup::ClientCgroup;
pub use host::{require_socket_host, PinDir};
pub use session::{Names, Session};
pub use weights::status_weights;

use std::path::Path;

use crate::lab::{remove_network, Place};

/// Removes what a native lab of `backends` backends with namespace prefix `prefix` made,
/// whatever exists of it: the daemon whose process id `pid_file` holds (if it still
/// runs `vipd`), the client cgroup `cgroup` once empty, the pins in `pins`, the
/// namespaces (with the firewalls and tables inside them). Best effort: reports what it
/// could not remove.
pub fn cleanup(prefix: &str, backends: u8, pid_file: &Path, cgroup: &Path, pins: &Path) {
    host::stop_daemon(pid_file);
    cgroup::leave_if_in(cgroup);
    cgroup::remove(cgroup);
    PinDir::remove(pins);
    remove_network(&Place::namespaced(prefix), backends);
}
