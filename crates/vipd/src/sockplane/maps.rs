//! Typed access to the socket data plane's maps from userspace.

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    Ebpf,
};
use vipd_common::{
    health::HealthEvent,
    sock::{
        stat, SockAffinity, SockAffinityKey, SockBackend, SockPeer, SockPeerKey, SockService,
        SockSynRto, SockUdpFlowKey, SockUdpSent,
    },
    VipKey,
};

use super::{loader::Sizes, SockError};
use crate::{
    bpf_map::removed,
    model::health_record::{health_event, BadRecord},
};

/// How many records of sockets the maps hold (`default()`: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Records {
    /// Translations (`SOCK_PEERS`): each connected socket's, and both directions of
    /// each unconnected UDP socket's.
    pub translations: usize,
    /// Unconnected UDP sockets' flows (`SOCK_UDP_FLOWS`).
    pub udp_flows: usize,
    /// Unconnected UDP sockets' last VIPs (`SOCK_UDP_SENT`).
    pub udp_sent: usize,
}

pub struct SockMaps {
    services: HashMap<MapData, VipKey, SockService>,
    backends: Array<MapData, SockBackend>,
    peers: HashMap<MapData, SockPeerKey, SockPeer>,
    udp_flows: HashMap<MapData, SockUdpFlowKey, SockPeer>,
    udp_sent: HashMap<MapData, u64, SockUdpSent>,
    affinity: HashMap<MapData, SockAffinityKey, SockAffinity>,
    syn_rto: HashMap<MapData, VipKey, SockSynRto>,
    /// How many entries `syn_rto` holds, for the programs (`SOCK_SYN_RTO_VIPS`).
    syn_rto_vips: Array<MapData, u32>,
    /// What `syn_rto_vips` was last given (both maps are new with each load: empty).
    syn_rto_count: u32,
    stats: PerCpuArray<MapData, u64>,
    health: RingBuf<MapData>,
    sizes: Sizes,
}

fn err(map: &'static str) -> impl Fn(MapError) -> SockError {
    move |source| SockError::Map { map, source }
}

impl SockMaps {
    pub(super) fn take(ebpf: &mut Ebpf, sizes: Sizes) -> Result<Self, SockError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(SockError::Missing(name));
        Ok(SockMaps {
            services: HashMap::try_from(take("SOCK_SERVICES")?).map_err(err("SOCK_SERVICES"))?,
            backends: Array::try_from(take("SOCK_BACKENDS")?).map_err(err("SOCK_BACKENDS"))?,
            peers: HashMap::try_from(take("SOCK_PEERS")?).map_err(err("SOCK_PEERS"))?,
            udp_flows: HashMap::try_from(take("SOCK_UDP_FLOWS")?).map_err(err("SOCK_UDP_FLOWS"))?,
            udp_sent: HashMap::try_from(take("SOCK_UDP_SENT")?).map_err(err("SOCK_UDP_SENT"))?,
            affinity: HashMap::try_from(take("SOCK_AFFINITY")?).map_err(err("SOCK_AFFINITY"))?,
            syn_rto: HashMap::try_from(take("SOCK_SYN_RTO")?).map_err(err("SOCK_SYN_RTO"))?,
            syn_rto_vips: Array::try_from(take("SOCK_SYN_RTO_VIPS")?)
                .map_err(err("SOCK_SYN_RTO_VIPS"))?,
            syn_rto_count: 0,
            stats: PerCpuArray::try_from(take("SOCK_STATS")?).map_err(err("SOCK_STATS"))?,
            health: RingBuf::try_from(take("SOCK_HEALTH")?).map_err(err("SOCK_HEALTH"))?,
            sizes,
        })
    }

    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    pub fn set_service(&mut self, key: &VipKey, svc: &SockService) -> Result<(), SockError> {
        self.services
            .insert(key, svc, 0)
            .map_err(err("SOCK_SERVICES"))
    }

    /// Removing a service that is not there is not an error.
    pub fn remove_service(&mut self, key: &VipKey) -> Result<(), SockError> {
        removed(self.services.remove(key))
            .map(drop)
            .map_err(err("SOCK_SERVICES"))
    }

    pub fn services(&self) -> Result<Vec<(VipKey, SockService)>, SockError> {
        self.services
            .iter()
            .collect::<Result<_, _>>()
            .map_err(err("SOCK_SERVICES"))
    }

    pub fn backend(&self, id: u32) -> Result<SockBackend, SockError> {
        self.backends.get(&id, 0).map_err(err("SOCK_BACKENDS"))
    }

    /// Sets backend `id`; `SockBackend::default()` (gen 0) frees it.
    pub fn set_backend(&mut self, id: u32, b: SockBackend) -> Result<(), SockError> {
        self.backends.set(id, b, 0).map_err(err("SOCK_BACKENDS"))
    }

    /// How many records of sockets the maps hold now (one syscall per entry: for tests,
    /// not for every status).
    pub fn records(&self) -> Records {
        Records {
            translations: self.peers.keys().filter(Result::is_ok).count(),
            udp_flows: self.udp_flows.keys().filter(Result::is_ok).count(),
            udp_sent: self.udp_sent.keys().filter(Result::is_ok).count(),
        }
    }

    /// The clients of services with persistence and the backends they stick to (one
    /// syscall per entry: for tests and inspection).
    pub fn affinities(&self) -> Vec<(SockAffinityKey, SockAffinity)> {
        self.affinity.iter().filter_map(Result::ok).collect()
    }

    /// Gives connections to TCP VIP `key` the initial SYN timeout `rto`. The count the
    /// programs read (`SOCK_SYN_RTO_VIPS`) goes up once a new entry is in, and down once
    /// one is out: a connection made in between gets the kernel's own timeout.
    pub fn set_syn_rto(&mut self, key: &VipKey, rto: SockSynRto) -> Result<(), SockError> {
        let new = match self.syn_rto.get(key, 0) {
            Ok(_) => false,
            Err(MapError::KeyNotFound) => true,
            Err(e) => return Err(err("SOCK_SYN_RTO")(e)),
        };
        self.syn_rto
            .insert(key, rto, 0)
            .map_err(err("SOCK_SYN_RTO"))?;
        if new {
            self.set_syn_rto_count(self.syn_rto_count + 1)?;
        }
        Ok(())
    }

    /// The TCP VIPs with an initial SYN timeout, and theirs.
    pub fn syn_rtos(&self) -> Vec<(VipKey, SockSynRto)> {
        self.syn_rto.iter().filter_map(Result::ok).collect()
    }

    /// VIP `key` goes back to the kernel's SYN timeout (not an error if it had none).
    pub fn remove_syn_rto(&mut self, key: &VipKey) -> Result<(), SockError> {
        let was = removed(self.syn_rto.remove(key)).map_err(err("SOCK_SYN_RTO"))?;
        if was {
            self.set_syn_rto_count(self.syn_rto_count.saturating_sub(1))?;
        }
        Ok(())
    }

    /// How many VIPs the programs are told have a SYN timeout.
    pub fn syn_rto_count(&self) -> Result<u32, SockError> {
        self.syn_rto_vips
            .get(&0, 0)
            .map_err(err("SOCK_SYN_RTO_VIPS"))
    }

    fn set_syn_rto_count(&mut self, n: u32) -> Result<(), SockError> {
        self.syn_rto_vips
            .set(0, n, 0)
            .map_err(err("SOCK_SYN_RTO_VIPS"))?;
        self.syn_rto_count = n;
        Ok(())
    }

    /// The translation record under `key`, if there is one.
    pub fn peer(&self, key: &SockPeerKey) -> Result<Option<SockPeer>, SockError> {
        match self.peers.get(key, 0) {
            Ok(p) => Ok(Some(p)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(err("SOCK_PEERS")(e)),
        }
    }

    /// Removes the translation record under `key` (not an error if it is gone).
    pub fn remove_peer(&mut self, key: &SockPeerKey) -> Result<(), SockError> {
        removed(self.peers.remove(key))
            .map(drop)
            .map_err(err("SOCK_PEERS"))
    }

    /// The counters summed over CPUs, in `stat` order.
    pub fn stats(&self) -> Result<[u64; stat::COUNT as usize], SockError> {
        let mut out = [0u64; stat::COUNT as usize];
        for (i, o) in out.iter_mut().enumerate() {
            *o = self
                .stats
                .get(&(i as u32), 0)
                .map_err(err("SOCK_STATS"))?
                .iter()
                .sum();
        }
        Ok(out)
    }

    /// The next health record, if one is queued (non-blocking).
    pub fn next_health(&mut self) -> Option<Result<HealthEvent, BadRecord>> {
        let item = self.health.next()?;
        Some(health_event(&item))
    }
}

impl std::os::fd::AsFd for SockMaps {
    /// The health ring buffer's descriptor: readable when records are queued.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.health.as_fd()
    }
}
