//! Programs the socket plane's maps from a desired state, writing only the differences.
//!
//! Every backend address gets an id (shared by the services that list it) and a `gen`
//! no earlier holder of that id had; every service gets an id and its selection
//! ([`super::selection`]) with its persistence, if it has any. Order of writes in [`Dataplane::apply`]: new backends, then
//! services whose selection changed (one write each, which is also all a weight change
//! costs: a backend at weight 0 leaves its service's selection in that one write), then
//! removed services, then backends no service lists any more are freed.
//!
//! [`Dataplane::adopt`] reads back what the maps hold (pinned maps of an earlier vipd),
//! so the first apply of an unchanged config writes nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use vipd_common::{
    sock::{mask_prefix, SockBackend, SockService},
    VipKey,
};

use super::{
    maps::SockMaps,
    selection::selection,
    sticky::{self, StickyClients},
    SockError,
};
use crate::model::kernel::{socket_addr, vip_key};

/// One service as the socket plane wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockServiceSpec {
    pub vip: SocketAddr,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub protocol: u8,
    /// Backends and their effective weights (0: no new sockets).
    pub backends: Vec<(SocketAddr, u32)>,
    /// Persistence (session affinity), if the service has it.
    pub persistence: Option<SockPersistence>,
}

/// A service's persistence as the kernel programs keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockPersistence {
    /// Seconds, at least 1.
    pub timeout_s: u32,
    /// Prefix length of the client's source address that counts (of an IPv4 address for
    /// an IPv4 service).
    pub prefix: u8,
}

impl SockServiceSpec {
    pub fn key(&self) -> VipKey {
        vip_key(self.vip, self.protocol)
    }
}

/// What one apply wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub services_written: usize,
    pub services_removed: usize,
    pub backends_written: usize,
    pub backends_freed: usize,
}

impl Changes {
    /// Map writes in all.
    pub fn total(&self) -> usize {
        self.services_written + self.services_removed + self.backends_written + self.backends_freed
    }
}

pub struct Dataplane {
    maps: SockMaps,
    /// What `SOCK_SERVICES` holds.
    services: BTreeMap<VipKey, SockService>,
    /// Backend address to id, and what `SOCK_BACKENDS` holds for each id in use.
    ids: BTreeMap<SocketAddr, u32>,
    entries: BTreeMap<u32, SockBackend>,
    next_gen: u32,
}

pub(super) fn backend_entry(addr: SocketAddr, gen: u32) -> SockBackend {
    let key = vip_key(addr, 0);
    SockBackend {
        addr: key.addr,
        port: addr.port(),
        family: key.family,
        _pad: 0,
        gen,
    }
}

impl Dataplane {
    /// Takes over `maps`, adopting whatever they hold.
    pub fn adopt(maps: SockMaps) -> Result<Self, SockError> {
        let mut dp = Dataplane {
            maps,
            services: BTreeMap::new(),
            ids: BTreeMap::new(),
            entries: BTreeMap::new(),
            next_gen: 1,
        };
        for (key, svc) in dp.maps.services()? {
            dp.services.insert(key, svc);
        }
        for id in 1..dp.maps.sizes().backends {
            let b = dp.maps.backend(id)?;
            if b.gen == 0 {
                continue;
            }
            // An entry of an unknown family cannot be ours: free it on the next apply.
            if let Ok(addr) = socket_addr(b.family, &b.addr, b.port) {
                dp.ids.insert(addr, id);
            }
            dp.entries.insert(id, b);
            dp.next_gen = dp.next_gen.max(b.gen.wrapping_add(1)).max(1);
        }
        Ok(dp)
    }

    pub fn maps(&self) -> &SockMaps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut SockMaps {
        &mut self.maps
    }

    /// The id of a backend address.
    pub fn backend_id(&self, addr: SocketAddr) -> Option<u32> {
        self.ids.get(&addr).copied()
    }

    /// The selection `SOCK_SERVICES` holds for `key`.
    pub fn service(&self, key: &VipKey) -> Option<&SockService> {
        self.services.get(key)
    }

    /// The clients of services with persistence that stick to each backend at `now_ns`
    /// (the kernel's monotonic clock): one syscall per entry of `SOCK_AFFINITY`.
    pub fn sticky_clients(&self, now_ns: u64) -> Vec<StickyClients> {
        sticky::count(
            &self.maps.affinities(),
            &self.services,
            &self.entries,
            now_ns,
        )
    }

    fn free_id(&self) -> Result<u32, SockError> {
        // Id 0 is never used: an unwritten selection entry reads as 0.
        (1..self.maps.sizes().backends)
            .find(|i| !self.entries.contains_key(i))
            .ok_or_else(|| {
                SockError::Limit(format!(
                    "more than {} backends in the socket data plane",
                    self.maps.sizes().backends - 1
                ))
            })
    }

    /// Service ids: kept for services the maps hold, the lowest unused for new ones.
    fn service_ids(&self, want: &BTreeMap<VipKey, &SockServiceSpec>) -> BTreeMap<VipKey, u32> {
        let mut out: BTreeMap<VipKey, u32> = BTreeMap::new();
        let mut used: BTreeSet<u32> = BTreeSet::new();
        for key in want.keys() {
            if let Some(s) = self.services.get(key) {
                if used.insert(s.service_id) {
                    out.insert(*key, s.service_id);
                }
            }
        }
        let mut next = 1;
        for key in want.keys() {
            if out.contains_key(key) {
                continue;
            }
            while used.contains(&next) {
                next += 1;
            }
            used.insert(next);
            out.insert(*key, next);
        }
        out
    }

    /// Makes the maps hold `want`, writing only what differs.
    pub fn apply(&mut self, want: &[SockServiceSpec]) -> Result<Changes, SockError> {
        let mut ch = Changes::default();
        let want: BTreeMap<VipKey, &SockServiceSpec> = want.iter().map(|s| (s.key(), s)).collect();
        if want.len() > self.maps.sizes().services as usize {
            return Err(SockError::Limit(format!(
                "{} services: the socket data plane holds {}",
                want.len(),
                self.maps.sizes().services
            )));
        }
        // New backends first, so that selections can name them.
        for spec in want.values() {
            for (addr, _) in &spec.backends {
                if self.ids.contains_key(addr) {
                    continue;
                }
                let id = self.free_id()?;
                let entry = backend_entry(*addr, self.next_gen);
                self.next_gen = self.next_gen.wrapping_add(1).max(1);
                self.maps.set_backend(id, entry)?;
                self.ids.insert(*addr, id);
                self.entries.insert(id, entry);
                ch.backends_written += 1;
            }
        }
        let service_ids = self.service_ids(&want);
        for (key, spec) in &want {
            // The selection puts them in id order, whatever order the config lists.
            let members: Vec<(u32, u32)> = spec
                .backends
                .iter()
                .map(|(a, w)| (self.ids[a], *w))
                .collect();
            let mut sel = selection(service_ids[key], &members)?;
            if let Some(p) = spec.persistence {
                sel.affinity_s = p.timeout_s.max(1);
                sel.affinity_mask = mask_prefix(&[0xff; 16], p.prefix);
            }
            if self.services.get(key) == Some(&sel) {
                continue;
            }
            self.maps.set_service(key, &sel)?;
            self.services.insert(*key, sel);
            ch.services_written += 1;
        }
        let gone: Vec<VipKey> = self
            .services
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            self.maps.remove_service(&key)?;
            self.services.remove(&key);
            ch.services_removed += 1;
        }
        let keep: BTreeSet<SocketAddr> = want
            .values()
            .flat_map(|s| s.backends.iter().map(|(a, _)| *a))
            .collect();
        let keep_ids: BTreeSet<u32> = keep
            .iter()
            .filter_map(|a| self.ids.get(a))
            .copied()
            .collect();
        let freed: Vec<u32> = self
            .entries
            .keys()
            .filter(|id| !keep_ids.contains(id))
            .copied()
            .collect();
        for id in freed {
            self.maps.set_backend(id, SockBackend::default())?;
            self.entries.remove(&id);
            ch.backends_freed += 1;
        }
        self.ids.retain(|a, _| keep.contains(a));
        Ok(ch)
    }
}
