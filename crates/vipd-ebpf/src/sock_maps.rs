//! Maps of the socket data plane's object (`vipd-sock`; see `vipd_common::sock` for
//! what each holds). Sizes here are placeholders: the socket loader sets the real ones.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use vipd_common::{
    sock::{
        stat, SockAffinity, SockAffinityKey, SockBackend, SockConnectNext, SockPeer, SockPeerKey,
        SockService, SockStickyConn, SockSynRto, SockUdpFlowKey, SockUdpSent,
    },
    VipKey,
};

/// `BPF_F_NO_PREALLOC`: entries are allocated as services are added (a service's value
/// is 2 KiB; the map is sized for the config's limit, most of it unused).
const NO_PREALLOC: u32 = 1;

/// VIP (address, port, protocol) to its service and weighted selection.
#[map(name = "SOCK_SERVICES")]
pub static SOCK_SERVICES: HashMap<VipKey, SockService> = HashMap::with_max_entries(64, NO_PREALLOC);

/// Backends by id.
#[map(name = "SOCK_BACKENDS")]
pub static SOCK_BACKENDS: Array<SockBackend> = Array::with_max_entries(64, 0);

/// Each socket's translations, both ways.
#[map(name = "SOCK_PEERS")]
pub static SOCK_PEERS: LruHashMap<SockPeerKey, SockPeer> = LruHashMap::with_max_entries(1024, 0);

/// Counters, per CPU; indexes in `vipd_common::sock::stat`.
#[map(name = "SOCK_STATS")]
pub static SOCK_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// The backend each client of a service with persistence sticks to, and when it last
/// used it.
#[map(name = "SOCK_AFFINITY")]
pub static SOCK_AFFINITY: LruHashMap<SockAffinityKey, SockAffinity> =
    LruHashMap::with_max_entries(1024, 0);

/// The client entry each TCP connection of a service with persistence holds open, by
/// socket cookie (from its connect to its close).
#[map(name = "SOCK_STICKY_TCP")]
pub static SOCK_STICKY_TCP: LruHashMap<u64, SockStickyConn> = LruHashMap::with_max_entries(1024, 0);

/// The datagrams unconnected UDP sockets sent through a VIP, by what an ICMP error
/// quotes of them (client port, backend), to the VIP's record: for `sock_udp_err`.
#[map(name = "SOCK_UDP_FLOWS")]
pub static SOCK_UDP_FLOWS: LruHashMap<SockUdpFlowKey, SockPeer> =
    LruHashMap::with_max_entries(1024, 0);

/// The VIP each unconnected UDP socket's datagrams were last translated from, by socket
/// cookie: how `sock_release` finds that socket's records.
#[map(name = "SOCK_UDP_SENT")]
pub static SOCK_UDP_SENT: LruHashMap<u64, SockUdpSent> = LruHashMap::with_max_entries(1024, 0);

/// TCP VIPs with an initial SYN timeout (`sock_syn_rto`).
#[map(name = "SOCK_SYN_RTO")]
pub static SOCK_SYN_RTO: HashMap<VipKey, SockSynRto> = HashMap::with_max_entries(64, 0);

/// How many entries `SOCK_SYN_RTO` holds (slot 0): with none, no program looks it up.
#[map(name = "SOCK_SYN_RTO_VIPS")]
pub static SOCK_SYN_RTO_VIPS: Array<u32> = Array::with_max_entries(1, 0);

/// What one step of a TCP connect leaves for the next on this CPU.
#[map(name = "SOCK_CONNECT_NEXT")]
pub static SOCK_CONNECT_NEXT: PerCpuArray<SockConnectNext> = PerCpuArray::with_max_entries(1, 0);

/// Health events for userspace.
#[map(name = "SOCK_HEALTH")]
pub static SOCK_HEALTH: RingBuf = RingBuf::with_byte_size(4096, 0);

/// Adds one to a counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = SOCK_STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; cgroup programs run with migration disabled.
        unsafe { *c += 1 };
    }
}
