//! What the host must have for the native lab, the daemon's pin directory, and stopping
//! a daemon an interrupted run left behind.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use vipd::{config::SocketSettings, sockplane::features};

/// Fails, saying what is missing, unless this host can run the socket data plane with
/// clients in a child of cgroup v2 root `cgroup_root`: root, a kernel with the cgroup
/// hooks, cgroup v2 mounted there.
pub fn require_socket_host(cgroup_root: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the native lab needs root (namespaces, cgroups, BPF programs): run it as root");
    }
    let found = features::check(&SocketSettings {
        cgroup: cgroup_root.to_path_buf(),
    });
    if !found.errors.is_empty() {
        bail!(
            "this host cannot run vipd's socket data plane: {}\n\
             (the native lab needs it; use the VM lab instead: scripts/demo.sh --vm)",
            found.errors.join("; ")
        );
    }
    for tool in ["ip", "nft", "nsenter"] {
        if !on_path(tool) {
            bail!("the native lab needs `{tool}` (scripts/setup.sh installs it)");
        }
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A pin directory for the socket plane's links and maps (the daemon's
/// `VIPD_SOCKET_PIN_DIR`), under /sys/fs/bpf; its pins are removed on drop, which
/// detaches the programs.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new(name: &str) -> PinDir {
        let dir = PathBuf::from("/sys/fs/bpf").join(name);
        PinDir::remove(&dir);
        PinDir(dir)
    }

    /// Removes the socket plane's pins in `dir` (only what is provably vipd's), then
    /// the directory.
    pub fn remove(dir: &Path) {
        if !dir.exists() {
            return;
        }
        match vipd::sockplane::pins::remove_ours(dir) {
            Ok(r) if !r.kept.is_empty() => eprintln!("left in place, not vipd's: {:?}", r.kept),
            Ok(_) => {}
            Err(e) => eprintln!("removing the pins in {}: {e}", dir.display()),
        }
        let _ = std::fs::remove_dir(dir);
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        PinDir::remove(&self.0);
    }
}

/// Stops (SIGTERM, then SIGKILL after 5 s) the process whose id `pid_file` holds, if it
/// is still a `vipd`; removes the file.
pub fn stop_daemon(pid_file: &Path) {
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<libc::pid_t>().ok())
    else {
        return;
    };
    let _ = std::fs::remove_file(pid_file);
    let is_vipd =
        || std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "vipd");
    for (sig, tries) in [(libc::SIGTERM, 50), (libc::SIGKILL, 20)] {
        if !is_vipd() {
            return;
        }
        // SAFETY: kill with a pid read from our own pid file, checked to be vipd.
        unsafe { libc::kill(pid, sig) };
        for _ in 0..tries {
            if !is_vipd() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
