//! Writing vipd's small record files (ownership, health, operator drains) safely: the
//! new content goes to a fresh temporary file beside the target, created exclusively
//! (`O_EXCL`, never following a symlink planted under its name) with mode 0600, then
//! renamed over the target in one step, so a reader sees the old record or the new
//! one, never half of one. And the advisory locks that keep two vipd processes from
//! writing the same records at once ([`try_lock`]), and the check of the directories
//! they live in ([`secure_dir`]).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

/// Whether the record must survive a power cut once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its directory (records under /var/lib).
    Synced,
    /// No fsync (records on a tmpfs under /run, gone after a reboot anyway).
    Volatile,
}

/// Replaces `path` with `content` atomically. Errors say which step failed; the
/// temporary file is removed on failure.
pub fn write_atomic(path: &Path, content: &[u8], durability: Durability) -> io::Result<()> {
    let (tmp, mut f) = create_temp(path)?;
    let written = f
        .write_all(content)
        .and_then(|()| match durability {
            Durability::Synced => f.sync_all(),
            Durability::Volatile => Ok(()),
        })
        .map_err(|e| step("writing", &tmp, e));
    drop(f);
    let renamed = written
        .and_then(|()| fs::rename(&tmp, path).map_err(|e| step("renaming over it", &tmp, e)));
    if let Err(e) = renamed {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if durability == Durability::Synced {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| step("syncing the directory of", path, e))?;
    }
    Ok(())
}

/// The text of the record at `path`; `Ok(None)` when there is none (a first start, or a
/// record never written).
pub fn read_if_present(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes an exclusive `flock` on `path` (created 0600 if missing, never through a
/// symlink) without waiting: `Ok(None)` when another process holds it. The lock lasts
/// as long as the returned file is open.
pub fn try_lock(path: &Path) -> io::Result<Option<File>> {
    use std::os::fd::AsRawFd;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| step("opening the lock file", path, e))?;
    // SAFETY: a valid open descriptor owned by `file`.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(Some(file));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(step("locking", path, e))
    }
}

/// Makes sure `dir` is a directory only root (or the user vipd runs as) can change:
/// created with mode 0700 (parents as needed) when missing; refused when it is a
/// symlink, not a directory, owned by another user, or group- or world-writable. What
/// vipd keeps there (its socket, its records) decides what it does to the kernel, so a
/// directory someone else controls is an error, not a warning.
pub fn secure_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let refuse = |why: String| {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("directory {}: {why}; refusing to use it", dir.display()),
        )
    };
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| step("creating the directory", dir, e))?;
            fs::symlink_metadata(dir).map_err(|e| step("checking", dir, e))?
        }
        Err(e) => return Err(step("checking", dir, e)),
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(refuse(format!("is owned by uid {}, not root", meta.uid())));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "is group- or world-writable (mode {mode:04o})"
        )));
    }
    Ok(())
}

fn step(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// A new file `<path>.tmp.<pid>.<n>`, created exclusively with mode 0600; a name taken
/// (a leftover, or something planted) is skipped, not reused.
fn create_temp(path: &Path) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for n in 0..16u32 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".tmp.{}.{n}", std::process::id()));
        let tmp = PathBuf::from(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(step("creating", &tmp, e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("no name left"));
    Err(step("creating a temporary file beside", path, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vipd-record-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_the_file_with_mode_0600_and_leaves_no_temporary() {
        let d = dir("replace");
        let p = d.join("r.json");
        fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new", Durability::Synced).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlink_planted_at_the_temporary_name_is_not_followed() {
        let d = dir("symlink");
        let p = d.join("r.json");
        let victim = d.join("victim");
        fs::write(&victim, "untouched").unwrap();
        let planted = d.join(format!("r.json.tmp.{}.0", std::process::id()));
        symlink(&victim, &planted).unwrap();
        write_atomic(&p, b"record", Durability::Volatile).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(fs::read_to_string(&p).unwrap(), "record");
        // The planted link is left alone (it is not vipd's).
        assert!(fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_lock_is_exclusive_until_dropped() {
        let d = dir("lock");
        let p = d.join("x.lock");
        let held = try_lock(&p).unwrap().expect("free");
        assert!(try_lock(&p).unwrap().is_none());
        drop(held);
        assert!(try_lock(&p).unwrap().is_some());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn directories_others_control_are_refused() {
        let d = dir("secure");
        let fresh = d.join("a/b");
        secure_dir(&fresh).unwrap();
        let mode = fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Idempotent.
        secure_dir(&fresh).unwrap();

        let open = d.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = secure_dir(&open).unwrap_err().to_string();
        assert!(e.contains("group- or world-writable (mode 0777)"), "{e}");

        let link = d.join("link");
        symlink(&fresh, &link).unwrap();
        let e = secure_dir(&link).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");

        let file = d.join("file");
        fs::write(&file, "").unwrap();
        assert!(secure_dir(&file)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));

        // Owned by somebody else (the tests run as root, which can give it away).
        let theirs = d.join("theirs");
        fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = secure_dir(&theirs).unwrap_err().to_string();
        assert!(e.contains("owned by uid 65534"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_write_names_the_file() {
        let p = Path::new("/nonexistent-vipd-dir/r.json");
        let e = write_atomic(p, b"x", Durability::Volatile).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent-vipd-dir/r.json.tmp."),
            "{e}"
        );
    }
}
