//! What a root's files are, to tell what installing and purging the package changed: for
//! each path its type, mode, owner, and a regular file's size and modification time or a
//! symlink's target. Directories' times are left out (adding and removing a file changes
//! them), and so are the paths only the system's own bookkeeping writes.

use std::{collections::BTreeMap, fs, os::unix::fs::MetadataExt, path::Path};

use anyhow::{Context, Result};

/// Not compared: kernel file systems mounted while a command runs; dpkg's database and
/// log; caches that man-db's trigger and apt rewrite.
const IGNORED: &[&str] = &[
    "/proc",
    "/dev",
    "/sys",
    "/tmp",
    "/var/lib/dpkg",
    "/var/log",
    "/var/cache/man",
    "/var/cache/debconf",
    "/var/cache/ldconfig",
];

pub type Snapshot = BTreeMap<String, String>;

pub fn take(root: &Path) -> Result<Snapshot> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = e?.path();
            let inside = format!("/{}", path.strip_prefix(root)?.display());
            if IGNORED.contains(&inside.as_str()) {
                continue;
            }
            let m = path.symlink_metadata()?;
            let head = format!("mode {:o} owner {}:{}", m.mode(), m.uid(), m.gid());
            let what = if m.is_dir() {
                dirs.push(path.clone());
                format!("dir {head}")
            } else if m.file_type().is_symlink() {
                format!("link {head} -> {}", fs::read_link(&path)?.display())
            } else {
                format!("file {head} size {} mtime {}", m.len(), m.mtime())
            };
            out.insert(inside, what);
        }
    }
    Ok(out)
}

/// Every difference from `before` to `after`, one line each.
pub fn diff(before: &Snapshot, after: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => out.push(format!("removed {p} ({b})")),
            Some(a) if a != b => out.push(format!("changed {p}: {b} -> {a}")),
            Some(_) => {}
        }
    }
    for (p, a) in after {
        if !before.contains_key(p) {
            out.push(format!("added {p} ({a})"));
        }
    }
    out
}
