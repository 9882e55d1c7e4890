//! The DNS record: the backends each DNS name last gave, written to
//! `<runtime dir>/dns.json` whenever a set changes and read at start-up. A restart
//! (an upgrade, a crash) while the DNS server is unreachable then keeps those backends
//! until a resolution succeeds, instead of draining them out of the kernel. Like the
//! health record it lives on the runtime tmpfs: gone after a reboot, with the kernel
//! table it describes.
//!
//! Only names the config has now, with the same query, are restored, and only
//! backends the name's query could have given (its port, its families, a weight of at
//! least 1 and the configured one if set, at most a service's backend count); anything
//! else is ignored with a warning.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    config::{Config, DnsBackend, DnsQuery, Forwarding, MAX_BACKENDS},
    dns::{NameKey, Resolved},
    record_file::{read_if_present, write_atomic, Durability},
};

const VERSION: u32 = 1;

/// The record on disk.
#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    names: Vec<Name>,
}

/// One name's last set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Name {
    service: String,
    /// `dns` (A/AAAA) or `srv`.
    kind: String,
    name: String,
    /// The configured port (`dns` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    /// The configured weight of every backend from the name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<u16>,
    backends: Vec<Backend>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Backend {
    addr: SocketAddr,
    weight: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsRecordError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a vipd DNS record: {source}")]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: DNS record version {found}, this vipd reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
}

/// `<runtime dir>/dns.json`.
pub fn path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("dns.json")
}

/// What a record gave for `config`: the sets to start from, and what was ignored (one
/// line each, for a warning).
#[derive(Debug, Default)]
pub struct Restored {
    pub sets: BTreeMap<NameKey, Vec<Resolved>>,
    pub ignored: Vec<String>,
}

/// Reads the record at `path` and keeps what `config` could have made; a missing file
/// restores nothing.
pub fn load(path: &Path, config: &Config) -> Result<Restored, DnsRecordError> {
    let text = read_if_present(path).map_err(|source| DnsRecordError::Io {
        path: path.to_owned(),
        source,
    })?;
    match text {
        None => Ok(Restored::default()),
        Some(t) => Ok(vet(parse(path, &t)?, config)),
    }
}

fn parse(path: &Path, text: &str) -> Result<File, DnsRecordError> {
    let file: File = serde_json::from_str(text).map_err(|source| DnsRecordError::Format {
        path: path.to_owned(),
        source,
    })?;
    if file.version != VERSION {
        return Err(DnsRecordError::Version {
            path: path.to_owned(),
            found: file.version,
        });
    }
    Ok(file)
}

/// The key a record entry names, if its kind is known.
fn key_of(n: &Name) -> Option<NameKey> {
    let query = match (n.kind.as_str(), n.port) {
        ("dns", Some(port)) => DnsQuery::Host { port },
        ("srv", None) => DnsQuery::Srv,
        _ => return None,
    };
    Some(NameKey {
        service: n.service.clone(),
        backend: DnsBackend {
            name: n.name.clone(),
            query,
            weight: n.weight,
        },
    })
}

fn vet(file: File, config: &Config) -> Restored {
    let mut out = Restored::default();
    for n in file.names {
        let what = format!("{} {} of service {:?}", n.kind, n.name, n.service);
        let Some(key) = key_of(&n) else {
            out.ignored
                .push(format!("{what}: not a DNS backend vipd records"));
            continue;
        };
        let Some(spec) = config
            .services
            .iter()
            .find(|s| s.name == key.service && s.dns.contains(&key.backend))
        else {
            out.ignored
                .push(format!("{what}: no longer in the config as recorded"));
            continue;
        };
        if n.backends.is_empty() || n.backends.len() > MAX_BACKENDS {
            out.ignored.push(format!(
                "{what}: {} backends (1 to {MAX_BACKENDS} expected)",
                n.backends.len()
            ));
            continue;
        }
        let any_family = matches!(spec.forwarding, Forwarding::Tunnel(_));
        let v4 = spec.key.family() == crate::config::Family::Ipv4;
        let bad = n.backends.iter().find(|b| {
            let port_ok = match key.backend.query {
                DnsQuery::Host { port } => b.addr.port() == port,
                DnsQuery::Srv => b.addr.port() != 0,
            };
            let family_ok = any_family || b.addr.is_ipv4() == v4;
            let weight_ok = b.weight >= 1 && key.backend.weight.is_none_or(|w| w == b.weight);
            let unicast = crate::config::not_unicast(b.addr.ip()).is_none();
            !(port_ok && family_ok && weight_ok && unicast)
        });
        if let Some(b) = bad {
            out.ignored.push(format!(
                "{what}: backend {} (weight {}) is not one its query could give",
                b.addr, b.weight
            ));
            continue;
        }
        let mut set: Vec<Resolved> = n
            .backends
            .iter()
            .map(|b| Resolved {
                addr: b.addr,
                weight: b.weight,
            })
            .collect();
        set.sort();
        set.dedup_by_key(|r| r.addr);
        out.sets.insert(key, set);
    }
    out
}

/// Replaces the record with `sets` atomically. Not fsynced: it lives on a tmpfs.
pub fn store(path: &Path, sets: &BTreeMap<NameKey, Vec<Resolved>>) -> Result<(), DnsRecordError> {
    let names = sets
        .iter()
        .filter(|(_, set)| !set.is_empty())
        .map(|(k, set)| {
            let (kind, port) = match k.backend.query {
                DnsQuery::Host { port } => ("dns", Some(port)),
                DnsQuery::Srv => ("srv", None),
            };
            Name {
                service: k.service.clone(),
                kind: kind.to_owned(),
                name: k.backend.name.clone(),
                port,
                weight: k.backend.weight,
                backends: set
                    .iter()
                    .map(|r| Backend {
                        addr: r.addr,
                        weight: r.weight,
                    })
                    .collect(),
            }
        })
        .collect();
    let file = File {
        version: VERSION,
        names,
    };
    let text = serde_json::to_string_pretty(&file).map_err(|source| DnsRecordError::Format {
        path: path.to_owned(),
        source,
    })?;
    write_atomic(path, text.as_bytes(), Durability::Volatile).map_err(|source| DnsRecordError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
#[path = "dns_record_tests.rs"]
mod tests;
