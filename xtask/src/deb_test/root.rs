//! A fresh Debian bookworm root to install the package into, and running commands in it.
//!
//! The root is made once with mmdebstrap (variant `apt`, with systemd for the unit's
//! verification and enablement, man-db, zsh and fish) and cached as a tarball under
//! target/; every run unpacks a new copy. Commands run chrooted in a private mount
//! namespace (`unshare --mount`) where /proc and /dev are mounted, so no mount outlives
//! the command.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

use crate::cmd;

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// Beyond the `apt` variant: what the checks run.
const PACKAGES: &[&str] = &["systemd", "man-db", "zsh", "fish"];

pub struct Root {
    path: PathBuf,
}

/// The cached root tarball, made on first use. Its name holds the suite and the package
/// list, so a change of either makes a new one.
fn tarball(cache: &Path) -> Result<PathBuf> {
    let path = cache.join(format!("root-{SUITE}-apt-{}.tar", PACKAGES.join("+")));
    if path.exists() {
        return Ok(path);
    }
    fs::create_dir_all(cache)?;
    let partial = path.with_extension("tar.partial");
    eprintln!(
        "deb-test: making a {SUITE} root with mmdebstrap (once; cached as {})",
        path.display()
    );
    cmd::run(
        Command::new("mmdebstrap")
            .args(["--quiet", "--variant=apt", "--format=tar"])
            .arg(format!("--include={}", PACKAGES.join(",")))
            .arg(SUITE)
            .arg(&partial)
            .arg(MIRROR),
    )?;
    fs::rename(&partial, &path)?;
    Ok(path)
}

/// Fails if anything is mounted at or below `dir` (removing it would reach the host).
fn refuse_mounts_under(dir: &Path) -> Result<()> {
    let dir = dir.to_string_lossy();
    let mounts = fs::read_to_string("/proc/self/mountinfo")?;
    if let Some(m) = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .find(|m| *m == dir || m.starts_with(&format!("{dir}/")))
    {
        bail!("{m} is mounted inside the test root; unmount it first");
    }
    Ok(())
}

impl Root {
    /// A new root at `dir` (what was there is removed), unpacked from the cached tarball
    /// in `cache`.
    pub fn fresh(dir: &Path, cache: &Path) -> Result<Root> {
        let tar = tarball(cache)?;
        if dir.exists() {
            refuse_mounts_under(dir)?;
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir)?;
        cmd::run(
            Command::new("tar")
                .args(["--numeric-owner", "-xpf"])
                .arg(&tar)
                .arg("-C")
                .arg(dir),
        )?;
        Ok(Root {
            path: dir.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The host path of `inside` (an absolute path in the root).
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.path.join(inside.trim_start_matches('/'))
    }

    /// `inside` as it is found on disk: on a merged-/usr root, `/lib/...` is
    /// `/usr/lib/...` (the top directory is a symlink).
    pub fn merged_usr(&self, inside: &str) -> String {
        let mut parts = inside.trim_start_matches('/').splitn(2, '/');
        let (top, rest) = (parts.next().unwrap_or(""), parts.next());
        match (fs::read_link(self.path.join(top)), rest) {
            (Ok(target), Some(rest)) => format!("/{}/{rest}", target.display()),
            _ => inside.to_owned(),
        }
    }

    /// Runs `script` with sh in the root; returns its exit status and output
    /// (stdout and stderr together).
    pub fn try_sh(&self, script: &str) -> Result<(bool, String)> {
        self.enter(false, script)
    }

    /// Like [`Root::sh`], with an empty tmpfs on the root's /run for this command alone
    /// (for tools that leave stamps there).
    pub fn sh_on_scratch_run(&self, script: &str) -> Result<String> {
        match self.enter(true, script)? {
            (true, out) => Ok(out),
            (false, out) => bail!("in the test root, `{script}` failed:\n{out}"),
        }
    }

    fn enter(&self, scratch_run: bool, script: &str) -> Result<(bool, String)> {
        // $0: the root, $1: the script, $2: "run" for a scratch /run. The mounts are made
        // from outside the root, so that nothing in it records them.
        const ENTER: &str = "mount -t proc proc \"$0/proc\" && mount --bind /dev \"$0/dev\" \
                             && { [ -z \"$2\" ] || mount -t tmpfs tmpfs \"$0/run\"; } \
                             && exec chroot \"$0\" /bin/sh -c \"$1\" 2>&1";
        let out = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--fork",
                "sh",
                "-c",
                ENTER,
            ])
            .arg(&self.path)
            .arg(script)
            .arg(if scratch_run { "run" } else { "" })
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .context("running unshare (util-linux)")?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    /// Like [`Root::try_sh`]; fails with the output unless the script exits 0.
    pub fn sh(&self, script: &str) -> Result<String> {
        let (ok, out) = self.try_sh(script)?;
        if !ok {
            bail!("in the test root, `{script}` failed:\n{out}");
        }
        Ok(out)
    }
}
