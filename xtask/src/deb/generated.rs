//! The package's files that are made, not copied: the stripped binary, and from it the
//! man pages and shell completions (`vipd manpages`, `vipd completions`); the Debian
//! changelog. Compressed files are gzip -9n, as Debian's tools make them (no name or
//! time stamp inside, so the same input gives the same bytes).

use std::{fs, os::unix::fs::PermissionsExt, path::Path, process::Command};

use anyhow::{Context, Result};

use super::{control::MAINTAINER, layout::Stage};
use crate::cmd;

/// Where each shell looks for vendor completions, and the name it expects there.
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "usr/share/bash-completion/completions/vipd"),
    ("zsh", "usr/share/zsh/vendor-completions/_vipd"),
    ("fish", "usr/share/fish/vendor_completions.d/vipd.fish"),
];

const MAN1: &str = "usr/share/man/man1";

pub fn files(stage: &Stage, binary: &Path, version: &str) -> Result<()> {
    let vipd = stage.path("usr/bin/vipd");
    fs::create_dir_all(vipd.parent().context("usr/bin")?)?;
    // What dh_strip does: symbols and notes out; the embedded eBPF objects are data.
    cmd::run(
        Command::new("strip")
            .args([
                "--strip-unneeded",
                "--remove-section=.comment",
                "--remove-section=.note",
                "-o",
            ])
            .arg(&vipd)
            .arg(binary),
    )?;
    man_pages(stage, &vipd)?;
    for (shell, inside) in COMPLETIONS {
        let path = stage.write(inside, b"", 0o644)?;
        cmd::to_file(Command::new(&vipd).args(["completions", shell]), &path)?;
    }
    let changelog = stage.write(
        "usr/share/doc/vipd/changelog.Debian",
        &changelog(version)?,
        0o644,
    )?;
    gzip(&changelog)
}

/// `vipd.1` and one page per subcommand, gzipped into man1.
fn man_pages(stage: &Stage, vipd: &Path) -> Result<()> {
    let dir = stage.path(MAN1);
    cmd::stdout(Command::new(vipd).arg("manpages").arg(&dir))?;
    let mut pages = 0;
    for e in fs::read_dir(&dir)? {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "1") {
            gzip(&path)?;
            pages += 1;
        }
    }
    anyhow::ensure!(pages > 1, "vipd manpages wrote {pages} page(s)");
    Ok(())
}

/// Replaces `path` with `path.gz`, mode 0644.
fn gzip(path: &Path) -> Result<()> {
    cmd::run(Command::new("gzip").args(["-9nf"]).arg(path))?;
    let mut gz = path.as_os_str().to_owned();
    gz.push(".gz");
    let gz = std::path::PathBuf::from(gz);
    fs::set_permissions(&gz, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("{} after gzip", gz.display()))
}

/// The Debian changelog: one entry for this version, dated by the last commit (or by
/// SOURCE_DATE_EPOCH when set), so that a rebuild gives the same package.
fn changelog(version: &str) -> Result<Vec<u8>> {
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(e) => e,
        Err(_) => cmd::stdout(
            Command::new("git")
                .args(["log", "-1", "--format=%ct"])
                .current_dir(super::repo_root()),
        )?
        .trim()
        .to_owned(),
    };
    let date = cmd::stdout(
        Command::new("date")
            .args(["-R", "-u", "-d"])
            .arg(format!("@{epoch}")),
    )?;
    Ok(format!(
        "vipd ({version}) bookworm; urgency=medium\n\n  \
         * Package of vipd {version}, built from its source tree with\n    \
         `cargo xtask deb`.\n\n -- {MAINTAINER}  {}\n",
        date.trim()
    )
    .into_bytes())
}
