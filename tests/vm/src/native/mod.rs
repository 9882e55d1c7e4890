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

/// Builds this profile's `vipd` binary (a no-op when `cargo test` built it already) and
/// puts its directory first on PATH, where [`crate::daemon::Vipd`] looks for it. Call
/// it where no other thread reads the environment meanwhile.
pub fn vipd_on_path() {
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "vipd", "--bin", "vipd"])
        .args(if cfg!(debug_assertions) {
            &[][..]
        } else {
            &["--release"][..]
        })
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building vipd failed");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    assert!(dir.join("vipd").is_file(), "no vipd in {}", dir.display());
    let path = std::env::var_os("PATH").unwrap_or_default();
    let paths = std::iter::once(dir).chain(std::env::split_paths(&path));
    std::env::set_var("PATH", std::env::join_paths(paths).unwrap());
}
