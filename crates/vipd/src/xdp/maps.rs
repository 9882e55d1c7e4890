//! Typed access to the XDP data plane's maps from userspace.

use std::os::fd::AsFd;

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    Ebpf,
};
use vipd_common::{
    xdp::{stat, XdpBackend, XdpFlow, XdpHealthEvent, XdpReply, XdpService, XdpTuple, MAGLEV_M},
    VipKey,
};

use super::loader::{Sizes, XdpError};
use crate::bpf_map::removed;

pub use crate::model::health_record::{health_event, BadRecord};

pub struct XdpMaps {
    services: HashMap<MapData, VipKey, XdpService>,
    maglev: Array<MapData, u32>,
    backends: Array<MapData, XdpBackend>,
    flows: HashMap<MapData, XdpTuple, XdpFlow>,
    replies: HashMap<MapData, XdpTuple, XdpReply>,
    health: RingBuf<MapData>,
    stats: PerCpuArray<MapData, u64>,
    syn_watch: HashMap<MapData, u32, u32>,
    sizes: Sizes,
}

fn err(map: &'static str) -> impl Fn(MapError) -> XdpError {
    move |source| XdpError::Map { map, source }
}

impl XdpMaps {
    pub(super) fn take(ebpf: &mut Ebpf, sizes: Sizes) -> Result<Self, XdpError> {
        let mut take = |name: &'static str| ebpf.take_map(name).ok_or(XdpError::Missing(name));
        Ok(XdpMaps {
            services: HashMap::try_from(take("XDP_SERVICES")?).map_err(err("XDP_SERVICES"))?,
            maglev: Array::try_from(take("XDP_MAGLEV")?).map_err(err("XDP_MAGLEV"))?,
            backends: Array::try_from(take("XDP_BACKENDS")?).map_err(err("XDP_BACKENDS"))?,
            flows: HashMap::try_from(take("XDP_FLOWS")?).map_err(err("XDP_FLOWS"))?,
            replies: HashMap::try_from(take("XDP_REPLIES")?).map_err(err("XDP_REPLIES"))?,
            health: RingBuf::try_from(take("XDP_HEALTH")?).map_err(err("XDP_HEALTH"))?,
            stats: PerCpuArray::try_from(take("XDP_STATS")?).map_err(err("XDP_STATS"))?,
            syn_watch: HashMap::try_from(take("XDP_SYN_WATCH")?).map_err(err("XDP_SYN_WATCH"))?,
            sizes,
        })
    }

    pub fn sizes(&self) -> Sizes {
        self.sizes
    }

    /// The service ids whose SYNs are reported as they leave.
    pub fn syn_watch(&self) -> Result<Vec<u32>, XdpError> {
        self.syn_watch
            .keys()
            .collect::<Result<_, _>>()
            .map_err(err("XDP_SYN_WATCH"))
    }

    /// Reports the SYNs of service `id` as they leave (`watch`), or stops.
    pub fn set_syn_watch(&mut self, id: u32, watch: bool) -> Result<(), XdpError> {
        let r = if watch {
            self.syn_watch.insert(id, 1, 0)
        } else {
            removed(self.syn_watch.remove(&id)).map(drop)
        };
        r.map_err(err("XDP_SYN_WATCH"))
    }

    pub fn set_service(&mut self, key: &VipKey, svc: XdpService) -> Result<(), XdpError> {
        self.services
            .insert(key, svc, 0)
            .map_err(err("XDP_SERVICES"))
    }

    /// Removing a service that is not there is not an error.
    pub fn remove_service(&mut self, key: &VipKey) -> Result<(), XdpError> {
        removed(self.services.remove(key))
            .map(drop)
            .map_err(err("XDP_SERVICES"))
    }

    pub fn services(&self) -> Result<Vec<(VipKey, XdpService)>, XdpError> {
        self.services
            .iter()
            .collect::<Result<_, _>>()
            .map_err(err("XDP_SERVICES"))
    }

    pub fn backend(&self, id: u32) -> Result<XdpBackend, XdpError> {
        self.backends.get(&id, 0).map_err(err("XDP_BACKENDS"))
    }

    /// Sets backend `id`; `XdpBackend::default()` (gen 0) frees it.
    pub fn set_backend(&mut self, id: u32, b: XdpBackend) -> Result<(), XdpError> {
        self.backends.set(id, b, 0).map_err(err("XDP_BACKENDS"))
    }

    /// Maglev table of `slot`, as the map holds it.
    pub fn table(&self, slot: u32) -> Result<Vec<u32>, XdpError> {
        (0..MAGLEV_M)
            .map(|i| self.maglev.get(&(slot * MAGLEV_M + i), 0))
            .collect::<Result<_, _>>()
            .map_err(err("XDP_MAGLEV"))
    }

    /// Writes the entries of `slot` where `want` differs from `have`, in one batch
    /// (entry by entry where the kernel has no batch update); returns how many.
    pub fn write_table(
        &mut self,
        slot: u32,
        want: &[u32],
        have: &[u32],
    ) -> Result<usize, XdpError> {
        let (keys, values): (Vec<u32>, Vec<u32>) = want
            .iter()
            .zip(have)
            .enumerate()
            .filter(|(_, (w, h))| w != h)
            .map(|(i, (w, _))| (slot * MAGLEV_M + i as u32, *w))
            .unzip();
        if keys.is_empty() {
            return Ok(0);
        }
        let fd = aya::maps::IterableMap::map(&self.maglev).fd().as_fd();
        if let Err(e) = super::batch::update_u32(fd, &keys, &values) {
            tracing::debug!("batch update of XDP_MAGLEV failed ({e}); writing entry by entry");
            for (k, v) in keys.iter().zip(&values) {
                self.maglev.set(*k, *v, 0).map_err(err("XDP_MAGLEV"))?;
            }
        }
        Ok(keys.len())
    }

    pub fn flow(&self, t: &XdpTuple) -> Option<XdpFlow> {
        self.flows.get(t, 0).ok()
    }

    pub fn reply(&self, t: &XdpTuple) -> Option<XdpReply> {
        self.replies.get(t, 0).ok()
    }

    /// Every flow the table holds (client side).
    pub fn flows(&self) -> Vec<(XdpTuple, XdpFlow)> {
        self.flows.iter().filter_map(Result::ok).collect()
    }

    /// Forgets every flow (both directions): the next packets are scheduled afresh.
    pub fn clear_flows(&mut self) -> Result<(), XdpError> {
        let keys: Vec<XdpTuple> = self.flows.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = self.flows.remove(&k);
        }
        let keys: Vec<XdpTuple> = self.replies.keys().filter_map(Result::ok).collect();
        for k in keys {
            let _ = self.replies.remove(&k);
        }
        Ok(())
    }

    /// The counters summed over CPUs, in `stat` order.
    pub fn stats(&self) -> Result<[u64; stat::COUNT as usize], XdpError> {
        let mut out = [0u64; stat::COUNT as usize];
        for (i, o) in out.iter_mut().enumerate() {
            *o = self
                .stats
                .get(&(i as u32), 0)
                .map_err(err("XDP_STATS"))?
                .iter()
                .sum();
        }
        Ok(out)
    }

    /// The next health record, if one is queued (non-blocking).
    pub fn next_health(&mut self) -> Option<Result<XdpHealthEvent, BadRecord>> {
        let item = self.health.next()?;
        Some(health_event(&item))
    }
}

impl std::os::fd::AsFd for XdpMaps {
    /// The health ring buffer's descriptor: readable when records are queued.
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.health.as_fd()
    }
}
