//! `cargo xtask deb`: the Debian package of vipd, `target/debian/vipd_<version>_<arch>.deb`,
//! built with dpkg-deb from a release build of the `vipd` binary (its eBPF objects are
//! embedded by its build script) and the files under `dist/`. No Debian source package,
//! no debhelper: the layout, control fields and maintainer scripts are here and in
//! `dist/debian/`.

mod control;
mod generated;
mod layout;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::{build, cmd};

#[derive(clap::Args)]
pub struct Args {
    /// Debian revision: the package's version is `<vipd's version>-<revision>`.
    #[arg(long, default_value = "1")]
    revision: String,
    /// Where to write the package. Default: target/debian.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

/// A built package.
pub struct Package {
    pub path: PathBuf,
    pub version: String,
}

pub fn run(args: Args) -> Result<()> {
    let out_dir = args
        .out_dir
        .unwrap_or_else(|| build::target_dir().join("debian"));
    let package = build(&args.revision, &out_dir)?;
    println!("{}", package.path.display());
    Ok(())
}

/// Builds vipd (release) and packs it into `out_dir`; returns the package.
pub fn build(revision: &str, out_dir: &Path) -> Result<Package> {
    let binary = build::vipd_binary()?;
    let version = debian_version(&binary, revision)?;
    let arch = cmd::stdout(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    std::fs::create_dir_all(out_dir)?;
    let out_dir = out_dir.canonicalize()?;
    // The layout dpkg-shlibdeps expects: <work>/debian/control, <work>/debian/vipd/.
    let work = out_dir.join(format!("build-{version}"));
    let stage = layout::Stage::new(&work.join("debian/vipd"))?;
    layout::files(&stage, &repo_root())?;
    generated::files(&stage, &binary, &version)?;
    control::write(&stage, &version, &arch, &work)?;
    stage.normalize_dirs()?;
    let path = out_dir.join(format!("vipd_{version}_{arch}.deb"));
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(stage.root())
            .arg(&path),
    )?;
    Ok(Package { path, version })
}

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `<upstream>-<revision>`, the upstream version as the binary reports it (`vipd X.Y.Z`).
/// A pre-release (`0.2.0-rc.1`) sorts before its release in Debian as `0.2.0~rc.1`.
fn debian_version(binary: &Path, revision: &str) -> Result<String> {
    let out = cmd::stdout(Command::new(binary).arg("--version"))?;
    let upstream = out
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("unexpected `vipd --version` output: {out:?}"))?;
    Ok(format!("{}-{revision}", upstream.replace('-', "~")))
}
