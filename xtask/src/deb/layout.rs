//! The package's file tree: which file of the repository goes where, with Debian's modes
//! (directories and programs 0755, everything else 0644), in a staging directory that
//! dpkg-deb packs.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// Files of the repository and where the package installs them (paths under `/`). Those
/// under `etc/` are conffiles.
const FILES: &[(&str, &str)] = &[
    ("dist/vipd.service", "lib/systemd/system/vipd.service"),
    ("dist/vipd.toml", "etc/vipd/vipd.toml"),
    (
        "dist/modules-load.d/vipd.conf",
        "usr/lib/modules-load.d/vipd.conf",
    ),
    // Bookworm's iproute2 (6.1) reads protocol names from /etc/iproute2 only.
    (
        "dist/iproute2/rt_protos.d/vipd.conf",
        "etc/iproute2/rt_protos.d/vipd.conf",
    ),
    ("dist/debian/copyright", "usr/share/doc/vipd/copyright"),
    (
        "dist/debian/lintian-overrides",
        "usr/share/lintian/overrides/vipd",
    ),
    ("README.md", "usr/share/doc/vipd/README.md"),
    ("docs/install.md", "usr/share/doc/vipd/install.md"),
];

/// The conffiles, as DEBIAN/conffiles lists them.
pub fn conffiles() -> Vec<String> {
    FILES
        .iter()
        .filter(|(_, to)| to.starts_with("etc/"))
        .map(|(_, to)| format!("/{to}"))
        .collect()
}

/// The staging directory: the package's `/`.
pub struct Stage {
    root: PathBuf,
}

impl Stage {
    /// An empty staging directory at `root` (anything there before is removed).
    pub fn new(root: &Path) -> Result<Stage> {
        if root.exists() {
            fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))?;
        }
        fs::create_dir_all(root)?;
        Ok(Stage {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `inside` (a path under the package's `/`, without the leading slash) is.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root.join(inside)
    }

    /// Writes `contents` to `inside` with `mode`, creating its directory.
    pub fn write(&self, inside: &str, contents: &[u8], mode: u32) -> Result<PathBuf> {
        let path = self.path(inside);
        fs::create_dir_all(path.parent().context("a file at the root")?)?;
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        Ok(path)
    }

    /// Copies the repository's `src` to `inside` with `mode`.
    pub fn copy(&self, src: &Path, inside: &str, mode: u32) -> Result<()> {
        let contents = fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        self.write(inside, &contents, mode).map(drop)
    }

    /// Gives every directory mode 0755, whatever the umask made of it.
    pub fn normalize_dirs(&self) -> Result<()> {
        let mut dirs = vec![self.root.clone()];
        while let Some(d) = dirs.pop() {
            fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
            for e in fs::read_dir(&d)? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    dirs.push(e.path());
                }
            }
        }
        Ok(())
    }
}

/// Copies the repository's files (see [`FILES`]) into the stage.
pub fn files(stage: &Stage, repo: &Path) -> Result<()> {
    for (from, to) in FILES {
        stage.copy(&repo.join(from), to, 0o644)?;
    }
    Ok(())
}
