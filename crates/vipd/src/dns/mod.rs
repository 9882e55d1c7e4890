//! Backends from DNS: A/AAAA names with a port, and SRV records.
//!
//! Layers: [`tracker`] (pure: which names are due, what a result does to their
//! backends, the rule for empty answers), [`task`] (the resolver task: asks a
//! [`Resolve`] for the due names and sends each result to the daemon's core as a
//! [`DnsEvent`]), [`hickory`] (the real resolver: the host's resolv.conf or `[dns]
//! server`). The core turns the sets into desired state with [`expand`] and applies it
//! through the data plane like a reload: only differences are written, kept backends
//! keep their health, new ones enter through slow start, removed ones drain.

pub mod hickory;
pub mod task;
pub mod tracker;

#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, future::Future, net::SocketAddr, pin::Pin, time::Duration};

use crate::config::{BackendSpec, Config, DnsQuery};

pub use task::{DnsEvent, NameView};
pub use tracker::{NameKey, ResultKind, Tracker};

/// What to ask for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// Lower case, without the trailing dot (asked as a fully qualified name).
    pub name: String,
    pub query: DnsQuery,
    /// Which address families the service can use (A: v4, AAAA: v6).
    pub v4: bool,
    pub v6: bool,
}

/// One backend an answer gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resolved {
    pub addr: SocketAddr,
    pub weight: u16,
}

/// The result of one resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Records: the backends they give, and the smallest TTL among them.
    Answer {
        backends: Vec<Resolved>,
        ttl: Duration,
    },
    /// The name exists but has no records of the types asked.
    Empty,
    /// The name does not exist.
    NxDomain,
    /// No usable answer: timeout, SERVFAIL, refused, no route. Says which.
    Failed(String),
}

/// A resolver: the real one ([`hickory::HickoryResolver`]) or a test's fake.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self, lookup: Lookup) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>>;
}

/// `config` with the backends of each of its services' DNS names (from `sets`) added
/// after its literal ones; an address already there (written literally, or from an
/// earlier name) keeps its first settings. Names `config` does not have are ignored.
pub fn expand(config: &Config, sets: &BTreeMap<NameKey, Vec<Resolved>>) -> Config {
    let mut out = config.clone();
    for s in &mut out.services {
        for d in &s.dns {
            let key = NameKey {
                service: s.name.clone(),
                backend: d.clone(),
            };
            for r in sets.get(&key).into_iter().flatten() {
                if s.backends.iter().any(|b| b.addr == r.addr) {
                    continue;
                }
                s.backends.push(BackendSpec {
                    addr: r.addr,
                    weight: r.weight,
                    upper_threshold: 0,
                    lower_threshold: 0,
                });
            }
        }
    }
    out
}

/// Whether any service of `config` has DNS backends.
pub fn wanted(config: &Config) -> bool {
    config.services.iter().any(|s| !s.dns.is_empty())
}
