//! The config file as the daemon watches it: loaded and validated whole, and looked at
//! again once a second. A reload happens only when the content changed (not on a mere
//! touch), and works with editors that replace the file by renaming a new one over it.

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
        let text = fs::read_to_string(&self.path).map_err(|e| Rejected {
            lines: vec![format!(
                "{}: cannot read the config: {e}",
                self.path.display()
            )],
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
            return false;
        }
        self.stamp = stamp;
        match fs::read_to_string(&self.path) {
            Ok(t) => self.text.as_deref() != Some(t.as_str()),
            // A file being replaced may be briefly missing; look again next time.
            Err(_) => {
                self.stamp = None;
                false
            }
        }
    }
}
