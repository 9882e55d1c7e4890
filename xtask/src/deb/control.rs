//! The package's DEBIAN directory: control (with the shared libraries' Depends from
//! dpkg-shlibdeps and Installed-Size counted as dpkg-gencontrol does), conffiles,
//! md5sums and the maintainer scripts of `dist/debian/`.

use std::{fs, path::Path, process::Command};

use anyhow::{Context, Result};

use super::layout::{self, Stage};
use crate::cmd;

pub const MAINTAINER: &str = "vipd developers <vipd@example.invalid>";

const DESCRIPTION: &str = "\
client-side L4 load balancer with eBPF outlier detection
 vipd balances the connections a host opens to a virtual IP (VIP) over a set
 of backends. It programs the kernel's IPVS (or its own XDP data plane) from
 a TOML file, watches every connection in the kernel with eBPF, and
 quarantines a backend that refuses or ignores connections, then re-admits it
 with a probe and a slow start.
 .
 The daemon runs under systemd (vipd.service) and does nothing until
 /etc/vipd/vipd.toml declares a service. `vipd check` validates a config,
 `vipd status` shows services, backends and their health, `vipd trace`
 follows connections live.";

const SCRIPTS: &[&str] = &["postinst", "prerm", "postrm"];

/// Writes DEBIAN into the stage, which is `<work>/debian/vipd`.
pub fn write(stage: &Stage, version: &str, arch: &str, work: &Path) -> Result<()> {
    let repo = super::repo_root();
    // Counted before DEBIAN exists: it is not installed.
    let size = installed_size(stage.root())?;
    // dpkg-shlibdeps finds the package's root by its DEBIAN directory.
    fs::create_dir_all(stage.path("DEBIAN"))?;
    let depends = shlib_depends(work)?;
    let control = format!(
        "Package: vipd\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: {MAINTAINER}\n\
         Installed-Size: {size}\n\
         Depends: {depends}\n\
         Section: net\n\
         Priority: optional\n\
         Description: {DESCRIPTION}\n"
    );
    stage.write("DEBIAN/control", control.as_bytes(), 0o644)?;
    let conffiles = layout::conffiles();
    stage.write(
        "DEBIAN/conffiles",
        (conffiles.join("\n") + "\n").as_bytes(),
        0o644,
    )?;
    md5sums(stage, &conffiles)?;
    for script in SCRIPTS {
        stage.copy(
            &repo.join("dist/debian").join(script),
            &format!("DEBIAN/{script}"),
            0o755,
        )?;
    }
    Ok(())
}

/// The Depends of vipd's shared libraries (`libc6 (>= 2.34), ...`), from
/// dpkg-shlibdeps, which runs in `work`, beside a minimal `debian/control`.
fn shlib_depends(work: &Path) -> Result<String> {
    fs::write(
        work.join("debian/control"),
        "Source: vipd\n\nPackage: vipd\nArchitecture: any\n",
    )?;
    let out = cmd::stdout(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg("-edebian/vipd/usr/bin/vipd")
            .current_dir(work),
    )?;
    out.lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends: {out:?}"))
}

/// Installed-Size in KiB: each regular file rounded up to a KiB, anything else 1 KiB.
fn installed_size(root: &Path) -> Result<u64> {
    let mut kib = 0;
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let e = e?;
            let meta = e.path().symlink_metadata()?;
            if meta.is_file() {
                kib += meta.len().div_ceil(1024);
            } else {
                kib += 1;
                if meta.is_dir() {
                    dirs.push(e.path());
                }
            }
        }
    }
    Ok(kib)
}

/// DEBIAN/md5sums of every installed file but the conffiles (dpkg records those itself).
fn md5sums(stage: &Stage, conffiles: &[String]) -> Result<()> {
    let mut files = Vec::new();
    let mut dirs = vec![stage.root().to_owned()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let rel = e
                .path()
                .strip_prefix(stage.root())?
                .to_string_lossy()
                .into_owned();
            if rel == "DEBIAN" {
                continue;
            }
            if e.file_type()?.is_dir() {
                dirs.push(e.path());
            } else if !conffiles.contains(&format!("/{rel}")) {
                files.push(rel);
            }
        }
    }
    files.sort();
    let sums = cmd::stdout(
        Command::new("md5sum")
            .arg("--")
            .args(&files)
            .current_dir(stage.root()),
    )?;
    stage
        .write("DEBIAN/md5sums", sums.as_bytes(), 0o644)
        .map(drop)
}
