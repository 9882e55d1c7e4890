//! The ownership record: which kernel objects vipd created and so may change or remove.
//!
//! A JSON file (default [`DEFAULT_STATE_FILE`]) holding the IPVS services vipd created
//! (with the config name and removal policy they had), the backends it is draining (with
//! the wall-clock time the drain began, so a drain survives a restart), and the VIP
//! routes and interface it added (and VIP addresses from the earlier layout, until they
//! are converted). The record says what vipd may remove; the kernel must agree (see
//! [`crate::reach`]): a record naming anything vipd could not have made is ignored. It is replaced atomically (temporary file, fsync,
//! rename, fsync of the directory) and written *before* any kernel change that creates
//! something (intent), then again after deletions. A kernel object that is not in the record
//! is never changed or removed by vipd. Concurrent writers are kept apart by an exclusive
//! `flock` on `<file>.lock`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::{self, File},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use vipd_ipvs::{AddressFamily, Protocol, ServiceKey};

use super::desired::{DestId, RemovalPolicy, RemovalRule};
use crate::{
    reach::ReachRecord,
    record_file::{read_if_present, secure_dir, try_lock, write_atomic, Durability},
};

/// Where `vipd apply` keeps its ownership record unless told otherwise.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/vipd/state.json";

const VERSION: u32 = 1;
const COMMENT: &str = "vipd's ownership record: the IPVS services, VIP routes and \
interface vipd created. vipd changes or removes nothing that is not listed here. Do not \
edit while vipd runs.";

/// A service vipd created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedService {
    /// The config name it was last applied with.
    pub name: String,
    /// How its backends leave, kept so that a service removed from the config still
    /// drains by its own rule.
    pub removal: RemovalPolicy,
}

/// Everything vipd owns, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    pub services: BTreeMap<ServiceKey, OwnedService>,
    /// Backends at weight 0 waiting for deletion, with when their drain began.
    pub drains: BTreeMap<(ServiceKey, DestId), SystemTime>,
    pub reach: ReachRecord,
}

impl Ownership {
    pub fn owns(&self, key: &ServiceKey) -> bool {
        self.services.contains_key(key)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("state file {path} is not a valid vipd ownership record: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("state file {path} has version {found}; this vipd reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("state file {path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("state file {path} is locked by another vipd (lock file {path}.lock)")]
    Locked { path: PathBuf },
}

/// The record file, held under an exclusive lock for as long as this value lives.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    _lock: File,
}

impl StateFile {
    /// Takes the lock (creating the directory if needed). Fails at once if another
    /// process holds it.
    pub fn lock(path: &Path) -> Result<StateFile, StateError> {
        let io = |action| {
            move |source| StateError::Io {
                path: path.to_owned(),
                action,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io("create its directory"))?;
        }
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = try_lock(Path::new(&lock_path))
            .map_err(io("lock it"))?
            .ok_or_else(|| StateError::Locked {
                path: path.to_owned(),
            })?;
        Ok(StateFile {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the record; a missing file is an empty record (vipd owns nothing yet).
    pub fn load(&self) -> Result<Ownership, StateError> {
        read(&self.path)
    }

    /// Replaces the record atomically.
    pub fn store(&self, o: &Ownership) -> Result<(), StateError> {
        let io = |action| {
            move |source| StateError::Io {
                path: self.path.clone(),
                action,
                source,
            }
        };
        write_atomic(&self.path, to_json(o).as_bytes(), Durability::Synced)
            .map_err(io("replace it"))
    }
}

/// Held by a running daemon for its whole life (`<state file>.daemon.lock`): while it
/// is, `vipd apply` with the same record refuses, and so does a second daemon.
#[derive(Debug)]
pub struct DaemonLock {
    _lock: File,
}

impl DaemonLock {
    /// The lock file beside `state_file`.
    pub fn path(state_file: &Path) -> PathBuf {
        let mut p = state_file.as_os_str().to_owned();
        p.push(".daemon.lock");
        PathBuf::from(p)
    }

    /// Takes the lock (creating the directory, 0700, if needed, and refusing one that
    /// others control: see [`secure_dir`]); `Ok(None)` when another process holds it.
    pub fn try_acquire(state_file: &Path) -> Result<Option<DaemonLock>, StateError> {
        let path = Self::path(state_file);
        let io = |action| {
            let path = state_file.to_owned();
            move |source| StateError::Io {
                path,
                action,
                source,
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            secure_dir(dir).map_err(io("check its directory"))?;
        }
        Ok(try_lock(&path)
            .map_err(io("take the daemon lock"))?
            .map(|f| DaemonLock { _lock: f }))
    }
}

/// Reads a record without taking the lock (for `vipd status`). Missing file: empty record.
pub fn read(path: &Path) -> Result<Ownership, StateError> {
    let text = read_if_present(path).map_err(|source| StateError::Io {
        path: path.to_owned(),
        action: "read it",
        source,
    })?;
    text.map_or_else(|| Ok(Ownership::default()), |t| from_json(path, &t))
}

// ---- the file format ----

#[derive(Serialize, Deserialize)]
struct FileV1 {
    version: u32,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    services: Vec<ServiceRecord>,
    #[serde(default)]
    drains: Vec<DrainRecord>,
    #[serde(default)]
    interfaces: Vec<String>,
    #[serde(default)]
    routes: Vec<RouteRecord>,
    /// VIP addresses of the earlier layout; new records leave it out when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<AddressRecord>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRecord {
    interface: String,
    vip: IpAddr,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceRecord {
    key: KeyRecord,
    name: String,
    removal: RemovalRule,
    drain_timeout_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrainRecord {
    service: KeyRecord,
    backend: SocketAddr,
    since_unix_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressRecord {
    interface: String,
    address: IpAddr,
}

/// A service key as JSON: `{"tcp": "198.18.0.10:80"}`, `{"fwmark": {"family": "ipv4",
/// "mark": 5}}`.
#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum KeyRecord {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    Sctp(SocketAddr),
    Protocol { number: u16, addr: SocketAddr },
    Fwmark { family: FamilyRecord, mark: u32 },
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FamilyRecord {
    Ipv4,
    Ipv6,
}

impl From<&ServiceKey> for KeyRecord {
    fn from(k: &ServiceKey) -> Self {
        match *k {
            ServiceKey::Addr {
                addr,
                protocol,
                port,
            } => {
                let sa = SocketAddr::new(addr, port);
                match protocol {
                    Protocol::Tcp => KeyRecord::Tcp(sa),
                    Protocol::Udp => KeyRecord::Udp(sa),
                    Protocol::Sctp => KeyRecord::Sctp(sa),
                    Protocol::Other(number) => KeyRecord::Protocol { number, addr: sa },
                }
            }
            ServiceKey::Fwmark { family, mark } => KeyRecord::Fwmark {
                family: match family {
                    AddressFamily::Inet => FamilyRecord::Ipv4,
                    AddressFamily::Inet6 => FamilyRecord::Ipv6,
                },
                mark,
            },
        }
    }
}

impl From<KeyRecord> for ServiceKey {
    fn from(k: KeyRecord) -> Self {
        let addr = |protocol, sa: SocketAddr| ServiceKey::Addr {
            addr: sa.ip(),
            protocol,
            port: sa.port(),
        };
        match k {
            KeyRecord::Tcp(sa) => addr(Protocol::Tcp, sa),
            KeyRecord::Udp(sa) => addr(Protocol::Udp, sa),
            KeyRecord::Sctp(sa) => addr(Protocol::Sctp, sa),
            KeyRecord::Protocol { number, addr: sa } => addr(Protocol::from_number(number), sa),
            KeyRecord::Fwmark { family, mark } => ServiceKey::Fwmark {
                family: match family {
                    FamilyRecord::Ipv4 => AddressFamily::Inet,
                    FamilyRecord::Ipv6 => AddressFamily::Inet6,
                },
                mark,
            },
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The record as pretty JSON, in a stable order (the maps are ordered).
pub fn to_json(o: &Ownership) -> String {
    let file = FileV1 {
        version: VERSION,
        comment: COMMENT.to_owned(),
        services: o
            .services
            .iter()
            .map(|(k, s)| ServiceRecord {
                key: k.into(),
                name: s.name.clone(),
                removal: s.removal.rule,
                drain_timeout_ms: duration_ms(s.removal.drain_timeout),
            })
            .collect(),
        drains: o
            .drains
            .iter()
            .map(|((k, id), since)| DrainRecord {
                service: k.into(),
                backend: id.socket_addr(),
                since_unix_ms: unix_ms(*since),
            })
            .collect(),
        interfaces: o.reach.created_interfaces.iter().cloned().collect(),
        routes: o
            .reach
            .routes
            .iter()
            .map(|(interface, vip)| RouteRecord {
                interface: interface.clone(),
                vip: *vip,
            })
            .collect(),
        addresses: o
            .reach
            .addresses
            .iter()
            .map(|(interface, address)| AddressRecord {
                interface: interface.clone(),
                address: *address,
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses a record; `path` is only used in messages.
pub fn from_json(path: &Path, text: &str) -> Result<Ownership, StateError> {
    let file: FileV1 = serde_json::from_str(text).map_err(|source| StateError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if file.version != VERSION {
        return Err(StateError::Version {
            path: path.to_owned(),
            found: file.version,
        });
    }
    let invalid = |problem: String| StateError::Invalid {
        path: path.to_owned(),
        problem,
    };
    let mut o = Ownership::default();
    for s in file.services {
        let key = ServiceKey::from(s.key);
        let owned = OwnedService {
            name: s.name,
            removal: RemovalPolicy {
                rule: s.removal,
                drain_timeout: Duration::from_millis(s.drain_timeout_ms),
            },
        };
        if o.services.insert(key, owned).is_some() {
            return Err(invalid(format!("service {key} is listed twice")));
        }
    }
    for d in file.drains {
        let key = ServiceKey::from(d.service);
        let since = SystemTime::UNIX_EPOCH + Duration::from_millis(d.since_unix_ms);
        let id = DestId::from(d.backend);
        if o.drains.insert((key, id), since).is_some() {
            return Err(invalid(format!(
                "drain of backend {} of service {key} is listed twice",
                d.backend
            )));
        }
    }
    o.reach.created_interfaces = file.interfaces.into_iter().collect::<BTreeSet<_>>();
    o.reach.routes = file
        .routes
        .into_iter()
        .map(|r| (r.interface, r.vip))
        .collect();
    o.reach.addresses = file
        .addresses
        .into_iter()
        .map(|a| (a.interface, a.address))
        .collect();
    super::state_vet::vet(&mut o, path);
    Ok(o)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
