//! Programs the XDP maps from a desired state, writing only the differences: the
//! reconciler of the XDP data plane.
//!
//! Each service gets a slot (its Maglev table) for as long as it exists. Each of its
//! backends gets an id, a `gen` that no earlier holder of that id had, and an entry in
//! `XDP_BACKENDS`. Order of writes in [`Dataplane::apply`]: new backends, then the Maglev
//! entries that change, then new or changed services, then removed backends are freed
//! (their flows move on their next packet) and removed services deleted. A backend
//! whose weight drops to 0 (drained or quarantined) keeps its id: its table entries go to
//! others, its existing flows stay, as with IPVS. Before its table entries are rewritten
//! (tens of thousands of them), one write marks its entry out (`BACKEND_OUT`), which the
//! program already obeys for new flows: the backend leaves rotation at that write, and
//! [`Changes::out_at_ns`] says when it landed.
//!
//! ICMP echo to a VIP address is balanced with the first service (in key order) on that
//! address: a `VipKey` with protocol ICMP (ICMPv6 for IPv6) and port 0 points at that
//! service's slot.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use vipd_common::{
    xdp::{XdpBackend, XdpService, BACKEND_OUT, IPPROTO_ICMP, IPPROTO_ICMPV6, MAGLEV_M},
    VipKey, AF_INET6,
};

use super::{
    loader::XdpError,
    maglev::{self, Member},
    maps::XdpMaps,
};

/// One service as the XDP data plane wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpServiceSpec {
    pub vip: SocketAddr,
    /// IPPROTO_TCP or IPPROTO_UDP.
    pub protocol: u8,
    /// Backends and their effective weights (0: no new flows).
    pub backends: Vec<(SocketAddr, u32)>,
}

impl XdpServiceSpec {
    pub fn key(&self) -> VipKey {
        crate::model::kernel::vip_key(self.vip, self.protocol)
    }
}

/// What one apply wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub services_written: usize,
    pub services_removed: usize,
    pub backends_written: usize,
    pub backends_freed: usize,
    /// Backends marked out or back in (one write each).
    pub backends_flagged: usize,
    pub maglev_entries: usize,
    /// `CLOCK_MONOTONIC` (ns) when the last backend marked out was marked: from then on
    /// it took no new flow, whenever the table write after it ended.
    pub out_at_ns: Option<u64>,
}

impl Changes {
    /// Map writes in all.
    pub fn total(&self) -> usize {
        self.services_written
            + self.services_removed
            + self.backends_written
            + self.backends_freed
            + self.backends_flagged
            + self.maglev_entries
    }
}

/// A backend id in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendRef {
    pub service: VipKey,
    pub addr: SocketAddr,
}

pub struct Dataplane {
    maps: XdpMaps,
    /// Service key to slot.
    slots: BTreeMap<VipKey, u32>,
    /// What each slot's table holds.
    tables: BTreeMap<u32, Vec<u32>>,
    /// The backends and weights each service's table was last built from: an unchanged
    /// service's table is not rebuilt (65,537 entries each), so an apply costs what
    /// changed, not the number of services.
    built: BTreeMap<VipKey, Vec<(SocketAddr, u32)>>,
    /// (slot, backend) to id.
    ids: BTreeMap<(u32, SocketAddr), u32>,
    /// What `XDP_BACKENDS` holds for each id in use.
    entries: BTreeMap<u32, XdpBackend>,
    /// ICMP keys and the slot they point at.
    icmp: BTreeMap<VipKey, u32>,
    next_gen: u32,
}

fn backend_entry(addr: SocketAddr, slot: u32, gen: u32, out: bool) -> XdpBackend {
    let key = crate::model::kernel::vip_key(addr, 0);
    XdpBackend {
        addr: key.addr,
        port: addr.port(),
        family: key.family,
        flags: if out { BACKEND_OUT } else { 0 },
        gen,
        slot,
        _pad1: 0,
    }
}

fn addr_of(b: &XdpBackend) -> SocketAddr {
    let ip: std::net::IpAddr = if u16::from(b.family) == vipd_common::AF_INET {
        std::net::Ipv4Addr::new(b.addr[0], b.addr[1], b.addr[2], b.addr[3]).into()
    } else {
        std::net::Ipv6Addr::from(b.addr).into()
    };
    SocketAddr::new(ip, b.port)
}

impl Dataplane {
    /// Takes over `maps`, adopting whatever they hold (pinned maps of an earlier vipd):
    /// services, backend ids and tables are read back, so the first apply of an
    /// unchanged config writes nothing.
    pub fn adopt(maps: XdpMaps) -> Result<Self, XdpError> {
        let mut dp = Dataplane {
            maps,
            slots: BTreeMap::new(),
            tables: BTreeMap::new(),
            built: BTreeMap::new(),
            ids: BTreeMap::new(),
            entries: BTreeMap::new(),
            icmp: BTreeMap::new(),
            next_gen: 1,
        };
        for (key, svc) in dp.maps.services()? {
            if key.protocol == IPPROTO_ICMP || key.protocol == IPPROTO_ICMPV6 {
                dp.icmp.insert(key, svc.slot);
            } else {
                dp.slots.insert(key, svc.slot);
            }
        }
        for id in 1..dp.maps.sizes().backends {
            let b = dp.maps.backend(id)?;
            if b.gen != 0 {
                dp.ids.insert((b.slot, addr_of(&b)), id);
                dp.entries.insert(id, b);
                dp.next_gen = dp.next_gen.max(b.gen.wrapping_add(1)).max(1);
            }
        }
        for slot in dp.slots.values().copied().collect::<Vec<_>>() {
            let t = dp.maps.table(slot)?;
            dp.tables.insert(slot, t);
        }
        Ok(dp)
    }

    pub fn maps(&self) -> &XdpMaps {
        &self.maps
    }

    pub fn maps_mut(&mut self) -> &mut XdpMaps {
        &mut self.maps
    }

    /// The service and backend an id stands for (to name a health event's backend).
    pub fn backend(&self, id: u32) -> Option<BackendRef> {
        let (&(slot, addr), _) = self.ids.iter().find(|(_, &i)| i == id)?;
        let (&service, _) = self.slots.iter().find(|(_, &s)| s == slot)?;
        Some(BackendRef { service, addr })
    }

    /// The slot (and health-record service id) of a service.
    pub fn slot(&self, service: &VipKey) -> Option<u32> {
        self.slots.get(service).copied()
    }

    /// The id of a backend of a service.
    pub fn backend_id(&self, service: &VipKey, addr: SocketAddr) -> Option<u32> {
        let slot = self.slots.get(service)?;
        self.ids.get(&(*slot, addr)).copied()
    }

    fn free_slot(&self) -> Result<u32, XdpError> {
        let used: BTreeSet<u32> = self.slots.values().copied().collect();
        (0..self.maps.sizes().services)
            .find(|s| !used.contains(s))
            .ok_or_else(|| {
                XdpError::Limit(format!(
                    "more than {} XDP services",
                    self.maps.sizes().services
                ))
            })
    }

    fn free_id(&self) -> Result<u32, XdpError> {
        let used: BTreeSet<u32> = self.ids.values().copied().collect();
        // Id 0 is never used: unwritten table entries read as 0 and must find no backend.
        (1..self.maps.sizes().backends)
            .find(|i| !used.contains(i))
            .ok_or_else(|| {
                XdpError::Limit(format!(
                    "more than {} XDP backends",
                    self.maps.sizes().backends - 1
                ))
            })
    }

    /// Makes the maps hold `want`, writing only what differs.
    pub fn apply(&mut self, want: &[XdpServiceSpec]) -> Result<Changes, XdpError> {
        let mut ch = Changes::default();
        let want_keys: BTreeMap<VipKey, &XdpServiceSpec> =
            want.iter().map(|s| (s.key(), s)).collect();

        // Slots for new services.
        let mut new_services = Vec::new();
        for key in want_keys.keys() {
            if !self.slots.contains_key(key) {
                let slot = self.free_slot()?;
                self.slots.insert(*key, slot);
                new_services.push(*key);
            }
        }
        // Backends: new ids first, so the tables can point at them.
        for (key, spec) in &want_keys {
            let slot = self.slots[key];
            for (addr, weight) in &spec.backends {
                if !self.ids.contains_key(&(slot, *addr)) {
                    let id = self.free_id()?;
                    let gen = self.next_gen;
                    self.next_gen = self.next_gen.wrapping_add(1).max(1);
                    let entry = backend_entry(*addr, slot, gen, *weight == 0);
                    self.maps.set_backend(id, entry)?;
                    self.ids.insert((slot, *addr), id);
                    self.entries.insert(id, entry);
                    ch.backends_written += 1;
                }
            }
        }
        // Backends whose weight went to 0 leave rotation now, one write each; those back
        // above 0 are marked in before their table names them again. A service as it was
        // last built has its marks right already.
        for (key, spec) in &want_keys {
            if self.built.get(key) == Some(&spec.backends) {
                continue;
            }
            let slot = self.slots[key];
            for (addr, weight) in &spec.backends {
                let id = self.ids[&(slot, *addr)];
                let Some(entry) = self.entries.get_mut(&id) else {
                    continue;
                };
                let out = *weight == 0;
                if (entry.flags & BACKEND_OUT != 0) == out {
                    continue;
                }
                entry.flags = if out { BACKEND_OUT } else { 0 };
                self.maps.set_backend(id, *entry)?;
                ch.backends_flagged += 1;
                if out {
                    ch.out_at_ns = Some(crate::clock::mono_ns());
                }
            }
        }
        // Tables.
        for (key, spec) in &want_keys {
            let slot = self.slots[key];
            if self.tables.contains_key(&slot) && self.built.get(key) == Some(&spec.backends) {
                continue;
            }
            let members: Vec<Member> = spec
                .backends
                .iter()
                .map(|(addr, w)| Member {
                    id: self.ids[&(slot, *addr)],
                    identity: maglev::identity(*addr),
                    weight: *w,
                })
                .collect();
            let table = maglev::table(&members, MAGLEV_M);
            let have = match self.tables.remove(&slot) {
                Some(t) => t,
                // A new slot may hold a removed service's table.
                None => self.maps.table(slot)?,
            };
            ch.maglev_entries += self.maps.write_table(slot, &table, &have)?;
            self.tables.insert(slot, table);
            self.built.insert(*key, spec.backends.clone());
        }
        // Services (new ones only now that their table is complete), and ICMP.
        for key in &new_services {
            let slot = self.slots[key];
            self.maps.set_service(
                key,
                XdpService {
                    slot,
                    service_id: slot,
                },
            )?;
            ch.services_written += 1;
        }
        let mut want_icmp: BTreeMap<VipKey, u32> = BTreeMap::new();
        for key in want_keys.keys() {
            let icmp = VipKey {
                port: 0,
                protocol: if u16::from(key.family) == AF_INET6 {
                    IPPROTO_ICMPV6
                } else {
                    IPPROTO_ICMP
                },
                ..*key
            };
            want_icmp.entry(icmp).or_insert(self.slots[key]);
        }
        for (key, slot) in &want_icmp {
            if self.icmp.get(key) != Some(slot) {
                self.maps.set_service(
                    key,
                    XdpService {
                        slot: *slot,
                        service_id: *slot,
                    },
                )?;
                ch.services_written += 1;
            }
        }
        // Removals: ICMP keys, services, then their backends.
        for key in self.icmp.keys() {
            if !want_icmp.contains_key(key) {
                self.maps.remove_service(key)?;
                ch.services_removed += 1;
            }
        }
        self.icmp = want_icmp;
        let gone: Vec<VipKey> = self
            .slots
            .keys()
            .filter(|k| !want_keys.contains_key(k))
            .copied()
            .collect();
        for key in gone {
            self.maps.remove_service(&key)?;
            ch.services_removed += 1;
            let slot = self.slots.remove(&key).unwrap_or_default();
            self.tables.remove(&slot);
            self.built.remove(&key);
        }
        let keep: BTreeSet<(u32, SocketAddr)> = want_keys
            .iter()
            .flat_map(|(k, s)| {
                let slot = self.slots[k];
                s.backends.iter().map(move |(a, _)| (slot, *a))
            })
            .collect();
        let freed: Vec<((u32, SocketAddr), u32)> = self
            .ids
            .iter()
            .filter(|(k, _)| !keep.contains(k))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (k, id) in freed {
            self.maps.set_backend(id, XdpBackend::default())?;
            self.ids.remove(&k);
            self.entries.remove(&id);
            ch.backends_freed += 1;
        }
        Ok(ch)
    }
}
