//! Maps of the XDP data plane's object (`vipd-xdp`; see `vipd_common::xdp` for what
//! each holds). Sizes here are placeholders: the XDP loader sets the real ones before
//! loading.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use vipd_common::{
    xdp::{stat, XdpBackend, XdpFlow, XdpReply, XdpService, XdpTuple, MAGLEV_M},
    VipKey,
};

/// VIP (address, port, protocol) to its service. ICMP echo uses port 0.
#[map(name = "XDP_SERVICES")]
pub static XDP_SERVICES: HashMap<VipKey, XdpService> = HashMap::with_max_entries(64, 0);

/// The Maglev lookup tables, one `MAGLEV_M`-entry stretch per service slot.
#[map(name = "XDP_MAGLEV")]
pub static XDP_MAGLEV: Array<u32> = Array::with_max_entries(MAGLEV_M, 0);

/// Backends by id.
#[map(name = "XDP_BACKENDS")]
pub static XDP_BACKENDS: Array<XdpBackend> = Array::with_max_entries(64, 0);

/// Client-side tuple to the flow's backend: keeps a flow on its backend.
#[map(name = "XDP_FLOWS")]
pub static XDP_FLOWS: LruHashMap<XdpTuple, XdpFlow> = LruHashMap::with_max_entries(1024, 0);

/// Backend-side tuple to the VIP the reply must come from.
#[map(name = "XDP_REPLIES")]
pub static XDP_REPLIES: LruHashMap<XdpTuple, XdpReply> = LruHashMap::with_max_entries(1024, 0);

/// Service ids whose SYNs are reported as they leave (`XdpHealthKind::SynSent`), for
/// userspace's handshake deadlines; the value is unused.
#[map(name = "XDP_SYN_WATCH")]
pub static XDP_SYN_WATCH: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);

/// Health events for userspace.
#[map(name = "XDP_HEALTH")]
pub static XDP_HEALTH: RingBuf = RingBuf::with_byte_size(4096, 0);

/// Counters, per CPU; indexes in `vipd_common::xdp::stat`.
#[map(name = "XDP_STATS")]
pub static XDP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Adds one to a counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = XDP_STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; XDP runs with preemption disabled on this CPU.
        unsafe { *c += 1 };
    }
}
