//! Which pinned objects vipd may remove. The socket plane's programs stay attached
//! through links pinned in its pin directory, and its state maps are pinned beside them;
//! vipd removes a pin only when it can prove the object is its own: the pin sits in the
//! socket plane's directory under a name vipd gives, and the kernel says the object is
//! what vipd pins there (a cgroup link running one of the plane's programs, or a map of
//! the plane's name). Anything else found there is left alone and reported.

use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use super::{
    link::{link_info, map_name, obj_get, prog_name, LINK_TYPE_CGROUP},
    loader::{program_names, PINNED_MAPS, PROGRAM_PREFIX},
};

/// The pin of program `name`'s link.
pub fn link_pin(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("link_{name}"))
}

/// Whether the pinned link at `path` is a cgroup link running one of the socket plane's
/// programs (the kernel keeps 15 bytes of a program's name; the prefix fits).
pub fn is_our_link(path: &Path) -> bool {
    let Ok(fd) = obj_get(path) else {
        return false;
    };
    let Ok(info) = link_info(fd.as_fd()) else {
        return false;
    };
    info.link_type == LINK_TYPE_CGROUP
        && prog_name(info.prog_id).is_ok_and(|n| n.starts_with(PROGRAM_PREFIX))
}

/// Whether the pinned map at `path` is the socket plane's map `name`.
pub fn is_our_map(path: &Path, name: &str) -> bool {
    let Ok(fd) = obj_get(path) else {
        return false;
    };
    map_name(fd.as_fd()).is_ok_and(|n| n == name)
}

/// What [`remove_ours`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub removed: Vec<PathBuf>,
    /// Pins under our names that are not provably ours: left in place.
    pub kept: Vec<PathBuf>,
}

/// Removes the socket plane's pins from `dir`: its links (which detaches its programs
/// once nothing else holds them) and its maps, each only if provably vipd's; then the
/// directory if it is empty.
pub fn remove_ours(dir: &Path) -> std::io::Result<Removed> {
    let mut out = Removed::default();
    for name in program_names() {
        let pin = link_pin(dir, name);
        if !pin.exists() {
            continue;
        }
        if is_our_link(&pin) {
            std::fs::remove_file(&pin)?;
            out.removed.push(pin);
        } else {
            out.kept.push(pin);
        }
    }
    for name in PINNED_MAPS {
        let pin = dir.join(name);
        if !pin.exists() {
            continue;
        }
        if is_our_map(&pin, name) {
            std::fs::remove_file(&pin)?;
            out.removed.push(pin);
        } else {
            out.kept.push(pin);
        }
    }
    // Only if empty: anything else there is not ours to remove.
    let _ = std::fs::remove_dir(dir);
    Ok(out)
}
