//! The config file as the daemon watches it: loaded and validated whole, and looked at
//! again once a second. A reload happens only when the content changed (not on a mere
//! touch), and works with editors that replace the file by renaming a new one over it.
//! A change is taken only once the file has stayed the same for one more look (a
//! second), so a file still being written is not applied half-way even if that half
//! happens to parse. (`vipd reload` and SIGHUP read it at once: the operator says it is
//! done.)

use std::{fs, path::PathBuf, time::SystemTime};

use crate::config::{self, Config};

/// What identifies a version of the file cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

pub struct ConfigFile {
    path: PathBuf,
    stamp: Option<Stamp>,
    text: Option<String>,
    /// A new version seen at the last look, waiting to be seen unchanged once more.
    settling: Option<Option<Stamp>>,
}

/// Why a load gave no config: every problem found, as `file:line:col: message` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub lines: Vec<String>,
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        let n = self.lines.len();
        write!(
            f,
            "{n} error{} in the config",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl ConfigFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            stamp: None,
            text: None,
            settling: None,
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn stamp(&self) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(&self.path).ok()?;
        Some(Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        })
    }

    /// Reads and validates the file. The text is remembered only once it is accepted
    /// (see [`ConfigFile::accept`]), so a rejected file is retried when it changes again.
    pub fn load(&mut self) -> Result<(Config, String), Rejected> {
        self.stamp = self.stamp();
        let text = config::read(&self.path).map_err(|e| Rejected {
            lines: vec![format!("{}: {e}", self.path.display())],
        })?;
        match config::parse(&self.path, &text) {
            Ok(c) => Ok((c, text)),
            Err(d) => Err(Rejected {
                lines: d.iter().map(ToString::to_string).collect(),
            }),
        }
    }

    /// The text now in force.
    pub fn accept(&mut self, text: String) {
        self.text = Some(text);
    }

    /// Whether the file's content differs from what was last loaded (cheap when the
    /// file's metadata has not changed).
    pub fn changed(&mut self) -> bool {
        let stamp = self.stamp();
        if stamp == self.stamp {
            self.settling = None;
            return false;
        }
        if self.settling != Some(stamp) {
            // New since the last look: wait until it holds still.
            self.settling = Some(stamp);
            return false;
        }
        self.settling = None;
        self.stamp = stamp;
        match config::read(&self.path) {
            Ok(t) => self.text.as_deref() != Some(t.as_str()),
            // A file being replaced may be briefly missing; look again next time.
            Err(_) => {
                self.stamp = None;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "[[service]]\nname = \"web\"\nvip = \"198.18.0.10:80\"\nbackend = [{ address = \"198.18.1.2:8080\" }]\n";

    #[test]
    fn a_change_is_taken_only_once_the_file_holds_still() {
        let dir = std::env::temp_dir().join(format!("vipd-cfgfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vipd.toml");
        fs::write(&path, "").unwrap();
        let mut f = ConfigFile::new(path.clone());
        let (_, text) = f.load().unwrap();
        f.accept(text);
        assert!(!f.changed(), "nothing changed");

        // Half of a file that still parses (empty services are valid): not yet.
        fs::write(&path, &ONE[..11]).unwrap();
        assert!(!f.changed(), "first sight waits");
        // Still being written: the wait starts over.
        fs::write(&path, ONE).unwrap();
        assert!(!f.changed(), "changed again since the last look");
        // Held still for a look: taken.
        assert!(f.changed());
        let (config, text) = f.load().unwrap();
        assert_eq!(config.services.len(), 1);
        f.accept(text);
        assert!(!f.changed());
        // A touch that keeps the content is no change.
        fs::write(&path, ONE).unwrap();
        assert!(!f.changed());
        assert!(!f.changed());
        fs::remove_dir_all(&dir).unwrap();
    }
}
