//! The config as the daemon watches it: the main file and its drop-ins
//! (`conf.d/*.toml` beside it), loaded and validated whole, and looked at again once a
//! second. A reload happens only when the content of the set changed (not on a mere
//! touch): a file edited, added to or removed from `conf.d`. It works with editors that
//! replace a file by renaming a new one over it. A change is taken only once the set has
//! stayed the same for one more look (a second), so a file still being written is not
//! applied half-way even if that half happens to parse. (`vipd reload` and SIGHUP read
//! it at once: the operator says it is done.)

use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::config::{self, Config, Source};

/// What identifies a version of one file cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamps of the main file and of each drop-in, by path (`None`: unreadable).
type SetStamp = Vec<(PathBuf, Option<Stamp>)>;

pub struct ConfigFile {
    path: PathBuf,
    stamp: Option<SetStamp>,
    text: Option<Vec<Source>>,
    /// A new version seen at the last look, waiting to be seen unchanged once more.
    settling: Option<Option<SetStamp>>,
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

fn rejected(d: config::Diagnostics) -> Rejected {
    Rejected {
        lines: d.iter().map(ToString::to_string).collect(),
    }
}

fn file_stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stamps of the set; `None` if the drop-in directory cannot be listed.
    fn stamp(&self) -> Option<SetStamp> {
        let drop_ins = config::drop_ins(&self.path).ok()?;
        Some(
            std::iter::once(self.path.clone())
                .chain(drop_ins)
                .map(|p| {
                    let s = file_stamp(&p);
                    (p, s)
                })
                .collect(),
        )
    }

    /// Reads and validates the set. The text is remembered only once it is accepted
    /// (see [`ConfigFile::accept`]), so a rejected set is retried when it changes again.
    pub fn load(&mut self) -> Result<(Config, Vec<Source>), Rejected> {
        self.stamp = self.stamp();
        let sources = config::read_set(&self.path).map_err(rejected)?;
        let config = config::parse_set(&sources).map_err(rejected)?;
        Ok((config, sources))
    }

    /// The text now in force.
    pub fn accept(&mut self, text: Vec<Source>) {
        self.text = Some(text);
    }

    /// Whether the content of the set differs from what was last loaded (cheap when no
    /// file's metadata and no drop-in's name has changed).
    pub fn changed(&mut self) -> bool {
        let stamp = self.stamp();
        if stamp == self.stamp {
            self.settling = None;
            return false;
        }
        if self.settling.as_ref() != Some(&stamp) {
            // New since the last look: wait until it holds still.
            self.settling = Some(stamp);
            return false;
        }
        self.settling = None;
        self.stamp = stamp;
        match config::read_set(&self.path) {
            Ok(t) => self.text.as_ref() != Some(&t),
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

    #[test]
    fn adding_changing_and_removing_a_drop_in_is_a_change_of_the_set() {
        let dir = std::env::temp_dir().join(format!("vipd-cfgset-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("conf.d")).unwrap();
        let path = dir.join("vipd.toml");
        fs::write(&path, ONE).unwrap();
        let mut f = ConfigFile::new(path.clone());
        let (_, text) = f.load().unwrap();
        f.accept(text);
        assert!(!f.changed());

        // A file that is not a drop-in (no .toml, or hidden) changes nothing.
        fs::write(dir.join("conf.d/api.toml.tmp"), "junk").unwrap();
        fs::write(dir.join("conf.d/.api.toml"), "junk").unwrap();
        assert!(!f.changed());
        assert!(!f.changed());

        let api = ONE
            .replace("\"web\"", "\"api\"")
            .replace("198.18.0.10", "198.18.0.11");
        fs::write(dir.join("conf.d/api.toml"), &api).unwrap();
        assert!(!f.changed(), "first sight waits");
        assert!(f.changed(), "an added drop-in");
        let (config, text) = f.load().unwrap();
        let names: Vec<_> = config.services.iter().map(|s| s.name.clone()).collect();
        assert_eq!(names, ["web", "api"]);
        f.accept(text);
        assert!(!f.changed());

        fs::write(dir.join("conf.d/api.toml"), api.replace("8080", "8081")).unwrap();
        assert!(!f.changed());
        assert!(f.changed(), "a changed drop-in");
        let (config, text) = f.load().unwrap();
        assert_eq!(config.services[1].backends[0].addr.port(), 8081);
        f.accept(text);

        fs::remove_file(dir.join("conf.d/api.toml")).unwrap();
        assert!(!f.changed());
        assert!(f.changed(), "a removed drop-in");
        let (config, _) = f.load().unwrap();
        assert_eq!(config.services.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
