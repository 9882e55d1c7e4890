//! The operator's drains: backends taken out of rotation by hand (`vipd drain`) until
//! put back (`vipd undrain`). A drained backend keeps its connections and gets no new
//! ones (weight 0), whatever its health; the record outlives reloads, restarts and
//! reboots, so a backend under maintenance does not come back by surprise. It lives in
//! the state directory beside the ownership record, as `admin.json`.
//!
//! Drains are kept by service name and backend address, as the operator named them. A
//! drain whose service or backend is no longer configured is dropped at the next
//! (re)load, with a log line.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::record_file::{read_if_present, secure_dir, write_atomic, Durability};

const VERSION: u32 = 1;
/// The record's file name in the state directory.
pub const FILE_NAME: &str = "admin.json";

/// Every drain: by service name, the drained backends with the Unix time (ms) each
/// drain began.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drains {
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub drained: BTreeMap<String, BTreeMap<SocketAddr, u64>>,
}

impl Drains {
    pub fn contains(&self, service: &str, backend: SocketAddr) -> bool {
        self.drained
            .get(service)
            .is_some_and(|b| b.contains_key(&backend))
    }

    /// The drained backends of `service`.
    pub fn of(&self, service: &str) -> BTreeSet<SocketAddr> {
        self.drained
            .get(service)
            .map(|b| b.keys().copied().collect())
            .unwrap_or_default()
    }

    /// When the drain of `backend` began (Unix ms), if it is drained.
    pub fn since(&self, service: &str, backend: SocketAddr) -> Option<u64> {
        self.drained.get(service)?.get(&backend).copied()
    }

    /// Adds a drain; false if it was drained already.
    pub fn add(&mut self, service: &str, backend: SocketAddr, unix_ms: u64) -> bool {
        let backends = self.drained.entry(service.to_owned()).or_default();
        if backends.contains_key(&backend) {
            return false;
        }
        backends.insert(backend, unix_ms);
        true
    }

    /// Removes a drain; false if it was not drained.
    pub fn remove(&mut self, service: &str, backend: SocketAddr) -> bool {
        let Some(backends) = self.drained.get_mut(service) else {
            return false;
        };
        let removed = backends.remove(&backend).is_some();
        if backends.is_empty() {
            self.drained.remove(service);
        }
        removed
    }

    /// Keeps only the drains `configured(service, backend)` accepts; returns the ones
    /// dropped.
    pub fn retain(
        &mut self,
        configured: impl Fn(&str, SocketAddr) -> bool,
    ) -> Vec<(String, SocketAddr)> {
        let mut dropped = Vec::new();
        for (service, backends) in &mut self.drained {
            backends.retain(|b, _| {
                let keep = configured(service, *b);
                if !keep {
                    dropped.push((service.clone(), *b));
                }
                keep
            });
        }
        self.drained.retain(|_, b| !b.is_empty());
        dropped
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DrainsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a vipd drain record: {source}", path.display())]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: drain record version {found}, this vipd reads version {VERSION}", path.display())]
    Version { path: PathBuf, found: u32 },
}

/// `<state dir>/admin.json`, the state directory being the ownership record's.
pub fn path(state_file: &Path) -> PathBuf {
    state_file.with_file_name(FILE_NAME)
}

/// Reads the record; a missing file is no drain.
pub fn load(path: &Path) -> Result<Drains, DrainsError> {
    let text = read_if_present(path).map_err(|source| DrainsError::Io {
        path: path.to_owned(),
        source,
    })?;
    text.map_or_else(|| Ok(Drains::default()), |t| from_json(path, &t))
}

/// Parses a record; `path` is only used in messages.
pub fn from_json(path: &Path, text: &str) -> Result<Drains, DrainsError> {
    let d: Drains = serde_json::from_str(text).map_err(|source| DrainsError::Format {
        path: path.to_owned(),
        source,
    })?;
    if d.version != VERSION {
        return Err(DrainsError::Version {
            path: path.to_owned(),
            found: d.version,
        });
    }
    Ok(d)
}

/// Replaces the record atomically and durably, creating its directory (0700) if needed
/// and refusing one that others control ([`secure_dir`]).
pub fn store(path: &Path, drains: &Drains) -> Result<(), DrainsError> {
    let io = |source| DrainsError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        secure_dir(dir).map_err(io)?;
    }
    let mut d = drains.clone();
    d.version = VERSION;
    let text = serde_json::to_string_pretty(&d).expect("drains serialize");
    write_atomic(path, text.as_bytes(), Durability::Synced).map_err(io)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn drains_round_trip_and_bad_files_are_named_errors() {
        let dir = std::env::temp_dir().join(format!("vipd-admin-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let p = path(&dir.join("state.json"));
        assert_eq!(load(&p).unwrap(), Drains::default());
        let mut d = Drains::default();
        assert!(d.add("web", a("198.18.1.2:80"), 5));
        assert!(!d.add("web", a("198.18.1.2:80"), 6));
        store(&p, &d).unwrap();
        let back = load(&p).unwrap();
        assert!(back.contains("web", a("198.18.1.2:80")));
        assert_eq!(back.since("web", a("198.18.1.2:80")), Some(5));
        fs::write(&p, "{oops").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("admin.json: not a vipd drain record"), "{e}");
        fs::write(&p, r#"{"version": 9}"#).unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("version 9"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn retain_drops_what_is_no_longer_configured() {
        let mut d = Drains::default();
        d.add("web", a("198.18.1.2:80"), 1);
        d.add("web", a("198.18.1.3:80"), 1);
        d.add("gone", a("198.18.1.4:80"), 1);
        let dropped = d.retain(|s, b| s == "web" && b == a("198.18.1.2:80"));
        assert_eq!(
            dropped,
            vec![
                ("gone".to_owned(), a("198.18.1.4:80")),
                ("web".to_owned(), a("198.18.1.3:80"))
            ]
        );
        assert_eq!(d.of("web"), BTreeSet::from([a("198.18.1.2:80")]));
        assert!(!d.drained.contains_key("gone"));
        assert!(d.remove("web", a("198.18.1.2:80")));
        assert!(!d.remove("web", a("198.18.1.2:80")));
        assert!(d.drained.is_empty());
    }
}
