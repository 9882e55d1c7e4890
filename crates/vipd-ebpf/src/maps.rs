//! Maps of the connection watcher's object (`vipd-watch`), shared by all its hooks.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use vipd_common::{Backend, DestKey, FlowKey, UdpTraffic, VipKey};

/// Connection events for userspace. 4 MiB holds about 52,000 records.
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per CPU: entry 0, events that did not fit into `EVENTS` (lost); entry 1, events that
/// can fail no backend, not queued so that those that can always find room (shed).
/// Userspace sums and reports both.
#[map(name = "LOST")]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// The virtual services vipd manages; only connections to these produce events.
/// Userspace keeps it in step with its config; the value is a service id.
#[map(name = "VIPS")]
pub static VIPS: HashMap<VipKey, u32> = HashMap::with_max_entries(4096, 0);

/// Which destination ports some VIP in `VIPS` uses (1) or none does (0), indexed by
/// port: the socket hooks' first test, an array lookup the verifier inlines, so that a
/// connection to any other port costs no hash lookup. Userspace keeps it in step with
/// `VIPS`.
#[map(name = "VIP_PORTS")]
pub static VIP_PORTS: Array<u8> = Array::with_max_entries(1 << 16, 0);

/// How many fwmark services `VIPS` holds (entry 0). While there are none the hooks skip
/// the `CONNS` lookup that follows fwmark-scheduled connections.
#[map(name = "FWMARK_SERVICES")]
pub static FWMARK_SERVICES: Array<u32> = Array::with_max_entries(1, 0);

/// The real backend IPVS chose for each connection, written by `ip_vs_conn_new` and read
/// by every later event of that connection. An entry is NOT dropped when the client
/// socket closes: IPVS's own connection entry outlives the socket, and a new connection
/// from the same client address and port can ride that old entry to the same backend
/// without another `ip_vs_conn_new` (seen on 6.12 under port reuse). So an entry lives
/// until IPVS reschedules that tuple (`ip_vs_conn_new` overwrites it) or the LRU evicts
/// it; the LRU bounds the map.
#[map(name = "CONNS")]
pub static CONNS: LruHashMap<FlowKey, Backend> = LruHashMap::with_max_entries(65536, 0);

/// UDP flows as the backend sees them: (client, backend) in the key's `client`/`vip`
/// fields, the VIP the client sent to as the value. Written by `ip_vs_conn_new`, read
/// where only the translated packet is at hand (an ICMPv6 error IPVS is about to drop).
#[map(name = "NAT_FLOWS")]
pub static NAT_FLOWS: LruHashMap<FlowKey, VipKey> = LruHashMap::with_max_entries(65536, 0);

/// Per UDP backend (of each watched UDP VIP): datagrams sent, replies seen, and since
/// when a datagram waits for any reply. Userspace reads it to find silent backends and
/// resets `pending_since_ns` once it has acted. Entries exist only for watched VIPs; the
/// LRU bounds the map if backends come and go.
#[map(name = "UDP_TRAFFIC")]
pub static UDP_TRAFFIC: LruHashMap<DestKey, UdpTraffic> = LruHashMap::with_max_entries(16384, 0);

/// IPv6 UDP flows (client → VIP) whose ICMPv6 error `ip_vs_out_icmp_v6` reported, with
/// when: `udpv6_err` skips the same error if IPVS lets it through (kernels with the
/// ICMPv6 checksum fix), so that one error is one event.
#[map(name = "ICMP6_SEEN")]
pub static ICMP6_SEEN: LruHashMap<FlowKey, u64> = LruHashMap::with_max_entries(4096, 0);

/// The initial SYN retransmission timeout, in jiffies, of each TCP VIP that has one
/// configured; read by the `sock_ops` program when a connection to the VIP starts.
/// A VIP without an entry keeps the kernel's default (1 s).
#[map(name = "SYN_RTO")]
pub static SYN_RTO: HashMap<VipKey, u32> = HashMap::with_max_entries(4096, 0);
