//! `cargo xtask deb-test`: the Debian package passes lintian, installs into a fresh Debian
//! bookworm root, works there (CLI, config check, man pages, completions, the systemd
//! unit), upgrades keeping the operator's config, and removes and purges leaving the root
//! as it was. Any failure fails the run; nothing is skipped.

mod installed;
mod root;
mod snapshot;

use std::{collections::BTreeSet, path::Path, process::Command};

use anyhow::{bail, ensure, Context, Result};

use crate::{build, cmd, deb};
use root::Root;

/// Paths the maintainer scripts may add besides the package's own files: the unit's
/// enablement (deb-systemd-helper's link and the state it keeps until purge).
const ENABLEMENT: &[&str] = &[
    "/etc/systemd/system/multi-user.target.wants/vipd.service",
    "/var/lib/systemd/deb-systemd-helper-enabled",
];

/// An operator's edit of the conffile, which upgrades must keep.
const EDIT: &str = "# edited by the operator";

/// Counts the checks; each failure stops the run.
#[derive(Default)]
pub struct Tally {
    passed: u32,
}

impl Tally {
    pub fn check(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        match f() {
            Ok(()) => {
                self.passed += 1;
                println!("deb-test: ok   {name}");
                Ok(())
            }
            Err(e) => {
                println!("deb-test: FAIL {name}: {e:#}");
                println!("deb-test: {} passed, 1 failed", self.passed);
                Err(e.context(format!("deb-test: {name}")))
            }
        }
    }
}

pub fn run() -> Result<()> {
    let dir = build::target_dir().join("debian/test");
    let v1 = deb::build("1", &dir)?;
    let v2 = deb::build("2", &dir)?;
    let mut t = Tally::default();
    t.check("lintian reports no error or warning", || lintian(&v1.path))?;
    t.check(
        "maintainer scripts leave IPVS and the network alone",
        || scripts_leave_kernel_alone(&v1.path, &dir),
    )?;

    let root = Root::fresh(&dir.join("root"), &dir)?;
    let before = snapshot::take(root.path())?;
    for p in [&v1, &v2] {
        let name = p.path.file_name().context("package name")?;
        std::fs::copy(&p.path, root.host_path("/tmp").join(name))?;
    }
    let deb = |p: &deb::Package| format!("/tmp/{}", p.path.file_name().unwrap().to_string_lossy());

    t.check("dpkg -i installs the package", || {
        root.sh(&format!("dpkg -i {}", deb(&v1)))?;
        expect_status(&root, &format!("install ok installed {}", v1.version))
    })?;
    t.check(
        "installing adds only the package's files and its enablement",
        || {
            let after = snapshot::take(root.path())?;
            let owned: BTreeSet<String> = root
                .sh("dpkg -L vipd")?
                .lines()
                .map(|p| root.merged_usr(p))
                .collect();
            let stray: Vec<String> = snapshot::diff(&before, &after)
                .into_iter()
                .filter(|d| {
                    let path = d.strip_prefix("added ").and_then(|r| r.split(' ').next());
                    !path.is_some_and(|p| {
                        owned.contains(p) || ENABLEMENT.iter().any(|e| p.starts_with(e))
                    })
                })
                .collect();
            ensure!(
                stray.is_empty(),
                "unexpected changes:\n{}",
                stray.join("\n")
            );
            Ok(())
        },
    )?;
    installed::checks(&mut t, &root, &v1)?;

    t.check(
        "an upgrade keeps the operator's edit of the conffile",
        || {
            root.sh(&format!("echo '{EDIT}' >> /etc/vipd/vipd.toml"))?;
            root.sh(&format!("dpkg -i {}", deb(&v2)))?;
            expect_status(&root, &format!("install ok installed {}", v2.version))?;
            expect_edit(&root)?;
            let leftovers = root.sh("ls /etc/vipd")?;
            ensure!(
                leftovers.trim() == "vipd.toml",
                "/etc/vipd after the upgrade: {leftovers}"
            );
            let enabled = root.sh("systemctl is-enabled vipd.service")?;
            ensure!(
                enabled.trim() == "enabled",
                "after the upgrade vipd.service is {enabled}"
            );
            Ok(())
        },
    )?;

    t.check("dpkg -r removes the program and keeps the config", || {
        // What a daemon that ran leaves: its ownership record and runtime directory.
        root.sh(
            "mkdir -p /var/lib/vipd /run/vipd && echo '{}' > /var/lib/vipd/state.json \
                 && echo '{}' > /run/vipd/health.json",
        )?;
        root.sh("dpkg -r vipd")?;
        expect_status(&root, &format!("deinstall ok config-files {}", v2.version))?;
        ensure!(
            !root.host_path("/usr/bin/vipd").exists(),
            "/usr/bin/vipd is still there"
        );
        ensure!(
            !root.host_path("/lib/systemd/system/vipd.service").exists(),
            "the unit is still there"
        );
        expect_edit(&root)
    })?;
    t.check(
        "dpkg -P purges everything: the root is as before the install",
        || {
            root.sh("dpkg -P vipd")?;
            let (known, out) = root.try_sh("dpkg-query -W vipd")?;
            ensure!(!known, "dpkg still knows vipd after purge: {out}");
            let left = snapshot::diff(&before, &snapshot::take(root.path())?);
            ensure!(left.is_empty(), "the purge left:\n{}", left.join("\n"));
            Ok(())
        },
    )?;
    println!("deb-test: {} passed, 0 failed", t.passed);
    Ok(())
}

fn expect_status(root: &Root, want: &str) -> Result<()> {
    let got = root.sh("dpkg-query -W -f='${Status} ${Version}' vipd")?;
    ensure!(got.trim() == want, "dpkg says {got:?}, expected {want:?}");
    Ok(())
}

fn expect_edit(root: &Root) -> Result<()> {
    let text = std::fs::read_to_string(root.host_path("/etc/vipd/vipd.toml"))
        .context("reading /etc/vipd/vipd.toml")?;
    ensure!(
        text.contains(EDIT),
        "the operator's edit of /etc/vipd/vipd.toml is gone"
    );
    Ok(())
}

/// lintian, pedantic, failing on any error or warning (overrides are in the package).
fn lintian(deb: &Path) -> Result<()> {
    cmd::run(
        Command::new("lintian")
            .args(["--pedantic", "--fail-on", "error,warning"])
            .arg(deb),
    )
}

/// Installing, upgrading and removing must not touch IPVS, the VIP interface or routes:
/// no maintainer script runs vipd, ipvsadm or ip (comments aside).
fn scripts_leave_kernel_alone(deb: &Path, dir: &Path) -> Result<()> {
    let control = dir.join("control");
    if control.exists() {
        std::fs::remove_dir_all(&control)?;
    }
    cmd::run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control))?;
    for script in ["postinst", "prerm", "postrm"] {
        let text = std::fs::read_to_string(control.join(script))?;
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = code
                .split(|c: char| c.is_whitespace() || c == ';' || c == '(' || c == '|')
                .collect();
            if let Some(w) = words.iter().find(|w| {
                matches!(
                    **w,
                    "vipd" | "/usr/bin/vipd" | "ipvsadm" | "ip" | "/sbin/ip"
                )
            }) {
                bail!("{script}:{}: runs {w}: {line}", n + 1);
            }
        }
    }
    Ok(())
}
