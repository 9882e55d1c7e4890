//! The health record: each service's health state (quarantines with their deadlines,
//! slow starts in progress, ejection counts), written to `<runtime dir>/health.json`
//! whenever a backend changes state, and read at start-up. It is what lets a restarted
//! vipd (an upgrade, a crash, `kill -9`) adopt the kernel's weights as they are instead
//! of flapping a quarantined backend back to full weight (what kube-proxy and
//! keepalived do to a backend after their own restarts). It lives in the runtime
//! directory (a tmpfs under /run), so it is gone after a reboot, as is the kernel's IPVS
//! table it describes.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use crate::{
    config::Config,
    health::PersistedService,
    model::{BackendId, ServiceKey},
    record_file::{read_if_present, write_atomic, Durability},
};
use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

/// Every service's persisted health, by service key (as `vipd status` prints it).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HealthRecord {
    pub version: u32,
    pub services: BTreeMap<String, PersistedService>,
}

impl HealthRecord {
    pub fn service(&self, key: &ServiceKey) -> Option<&PersistedService> {
        self.services.get(&key.to_string())
    }

    pub fn insert(&mut self, key: &ServiceKey, p: PersistedService) {
        self.services.insert(key.to_string(), p);
    }

    /// The entries no configured service or backend matches (a record of an older
    /// config, or a planted one). Only configured backends are ever restored: these are
    /// never acted on, and the caller warns of them.
    pub fn unmatched(&self, config: &Config) -> Vec<String> {
        let mut out = Vec::new();
        for (key, saved) in &self.services {
            let Some(spec) = config
                .services
                .iter()
                .find(|s| ServiceKey::from(s.key).to_string() == *key)
            else {
                out.push(format!("service {key}"));
                continue;
            };
            for b in &saved.backends {
                let dest = b.dest();
                if !spec
                    .backends
                    .iter()
                    .any(|c| BackendId::from(c.addr) == dest)
                {
                    out.push(format!(
                        "backend {} of service {key}",
                        SocketAddr::from(dest)
                    ));
                }
            }
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a vipd health record: {source}")]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: health record version {found}, this vipd reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
}

/// `<runtime dir>/health.json`.
pub fn path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("health.json")
}

/// Reads the record; a missing file is `Ok(None)` (first start, or after a reboot).
pub fn load(path: &Path) -> Result<Option<HealthRecord>, PersistError> {
    let text = read_if_present(path).map_err(|source| PersistError::Io {
        path: path.to_owned(),
        source,
    })?;
    text.map(|t| from_json(path, &t)).transpose()
}

/// Parses a record; `path` is only used in messages.
pub fn from_json(path: &Path, text: &str) -> Result<HealthRecord, PersistError> {
    let record: HealthRecord =
        serde_json::from_str(text).map_err(|source| PersistError::Format {
            path: path.to_owned(),
            source,
        })?;
    if record.version != VERSION {
        return Err(PersistError::Version {
            path: path.to_owned(),
            found: record.version,
        });
    }
    Ok(record)
}

/// Replaces the record atomically ([`write_atomic`]). Not fsynced: it lives on a
/// tmpfs, and losing it in a power cut loses the IPVS table it describes too.
pub fn store(path: &Path, mut record: HealthRecord) -> Result<(), PersistError> {
    record.version = VERSION;
    let io = |source| PersistError::Io {
        path: path.to_owned(),
        source,
    };
    let text = serde_json::to_string_pretty(&record).map_err(|source| PersistError::Format {
        path: path.to_owned(),
        source,
    })?;
    write_atomic(path, text.as_bytes(), Durability::Volatile).map_err(io)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn missing_file_is_none_and_garbage_is_a_named_error() {
        let dir = std::env::temp_dir().join(format!("vipd-persist-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = path(&dir);
        let _ = fs::remove_file(&p);
        assert!(load(&p).unwrap().is_none());
        fs::write(&p, "{not json").unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("health.json: not a vipd health record"), "{e}");
        fs::write(&p, r#"{"version": 7, "services": {}}"#).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("version 7"), "{e}");
        store(&p, HealthRecord::default()).unwrap();
        let r = load(&p).unwrap().unwrap();
        assert_eq!(r.version, VERSION);
        assert!(r.services.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }
}
