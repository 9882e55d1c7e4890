//! The client cgroup: a child of the host's cgroup v2 root that only the lab's clients
//! run in, so that the socket plane's programs (attached to it) balance nothing else.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A child cgroup of the cgroup v2 root; the calling process may join it and leave it.
pub struct ClientCgroup {
    pub path: PathBuf,
    /// The cgroup this process was in before [`ClientCgroup::join`].
    home: Option<PathBuf>,
}

impl ClientCgroup {
    /// Creates (or reuses, if a previous run left it) `root/name`.
    pub fn create(root: &Path, name: &str) -> Result<ClientCgroup> {
        let path = root.join(name);
        if !path.exists() {
            std::fs::create_dir(&path)
                .with_context(|| format!("creating cgroup {}", path.display()))?;
        }
        Ok(ClientCgroup { path, home: None })
    }

    /// Moves this whole process (every thread) into the cgroup: sockets made from now
    /// on are balanced. Processes started earlier (the daemon) stay where they were.
    /// Nothing to do while it is in already.
    pub fn join(&mut self) -> Result<()> {
        if self.home.is_some() {
            return Ok(());
        }
        let home = own_cgroup(&self.path)?;
        move_self(&self.path)?;
        self.home = Some(home);
        Ok(())
    }

    /// Moves this process back where it was before [`ClientCgroup::join`].
    pub fn leave(&mut self) -> Result<()> {
        if let Some(home) = self.home.take() {
            move_self(&home)?;
        }
        Ok(())
    }
}

impl Drop for ClientCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.leave() {
            eprintln!("leaving {}: {e:#}", self.path.display());
        }
        remove(&self.path);
    }
}

fn move_self(dir: &Path) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .with_context(|| format!("moving this process into {}", dir.display()))
}

/// The directory of this process's cgroup in the v2 hierarchy that `sibling` is part of
/// (`0::/path` in /proc/self/cgroup, under the mount holding `sibling`).
fn own_cgroup(sibling: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").context("/proc/self/cgroup")?;
    let Some(rel) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
        bail!("this process is in no cgroup v2 (/proc/self/cgroup: {text})");
    };
    let root = sibling.parent().context("a cgroup under the root")?;
    Ok(root.join(rel.trim_start_matches('/')))
}

/// If this process is in cgroup `dir`, moves it to the cgroup root above `dir` (a
/// clean-up after a panic: where it was before is not known there).
pub fn leave_if_in(dir: &Path) {
    let Ok(own) = own_cgroup(dir) else {
        return;
    };
    if own == dir {
        if let Some(root) = dir.parent() {
            let _ = move_self(root);
        }
    }
}

/// Removes cgroup `dir` once its processes have gone (they may take a moment to leave
/// after they exit); says so if it cannot.
pub fn remove(dir: &Path) {
    for _ in 0..50 {
        if !dir.exists() || std::fs::remove_dir(dir).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("could not remove cgroup {}", dir.display());
}
