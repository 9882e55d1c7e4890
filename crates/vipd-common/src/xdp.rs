//! Types of the XDP data plane (`dataplane = "xdp"`): the maps the `vipd_xdp_lb` program
//! reads and writes, the health record it sends to userspace, and the flow hash both
//! sides agree on.
//!
//! Maps (names as in the XDP plane's object, `vipd-xdp`, which holds no other plane's;
//! sizes in the object are placeholders, the XDP loader sets the real ones):
//!
//! | map | key | value |
//! | --- | --- | --- |
//! | `XDP_SERVICES` (hash) | [`crate::VipKey`] | [`XdpService`] |
//! | `XDP_MAGLEV` (array) | `slot * MAGLEV_M + flow_hash % MAGLEV_M` | backend id (`u32`), [`NO_BACKEND`] if none |
//! | `XDP_BACKENDS` (array) | backend id | [`XdpBackend`] |
//! | `XDP_FLOWS` (LRU hash) | [`XdpTuple`] as the client sent it | [`XdpFlow`] |
//! | `XDP_REPLIES` (LRU hash) | [`XdpTuple`] as the backend sends it | [`XdpReply`] |
//! | `XDP_HEALTH` (ring buffer) | | [`XdpHealthEvent`] |
//! | `XDP_STATS` (per-CPU array) | [`stat`] index | `u64` |
//!
//! ICMP echo is keyed like a port protocol: the echo identifier is the client's "port" and
//! the VIP's port is 0 (a VIP answers ping through the `VipKey` with protocol ICMP, port 0).

/// Size of each service's Maglev lookup table: a prime, so every skip visits every entry,
/// and large (>= 100 x backends) so shares come out close to the weights.
pub const MAGLEV_M: u32 = 65537;

/// A Maglev entry for a service that has no backend with weight: the packet is dropped.
pub const NO_BACKEND: u32 = u32::MAX;

/// IP protocol number of ICMP and ICMPv6, as in `linux/in.h` / `linux/in6.h`.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// One virtual service of the XDP data plane: `XDP_SERVICES`' value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpService {
    /// Which Maglev table in `XDP_MAGLEV` (0-based).
    pub slot: u32,
    /// Userspace's id of the service; carried in health events.
    pub service_id: u32,
}

/// A backend: `XDP_BACKENDS`' value, indexed by backend id. `gen` 0 marks a free id;
/// userspace gives every newly allocated id a new `gen`, so a flow still pointing at a
/// removed backend (whose id may have been reused) sees the mismatch and is rescheduled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpBackend {
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub family: u8,
    /// [`BACKEND_OUT`] or 0.
    pub flags: u8,
    pub gen: u32,
    /// The service (Maglev slot) it belongs to; lets a restarted vipd adopt the ids.
    pub slot: u32,
    pub _pad1: u32,
}

/// `XdpBackend::flags`: the backend takes no new flows, although its service's Maglev
/// table may still name it. Userspace sets it with one map write when the backend's
/// weight drops to 0, before it rewrites the table (tens of thousands of entries); a new
/// flow whose entry names it is hashed again, up to [`MAGLEV_REHASHES`] times, so it
/// leaves rotation at once instead of when the table write ends.
pub const BACKEND_OUT: u8 = 1;

/// How many more table entries a new flow tries when its own names a backend that is
/// out ([`maglev_rehash`]); if all of them are out too, it keeps its own.
pub const MAGLEV_REHASHES: u32 = 7;

/// A connection's addresses as one side sends them. Forward packets (client to VIP) are
/// keyed `src = client, dst = VIP`; replies `src = backend, dst = client`. IPv4 uses the
/// first four bytes of each address, the rest zero. For ICMP echo, the client's port is
/// the echo identifier and the other port 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct XdpTuple {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Host byte order.
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub protocol: u8,
    pub _pad: [u8; 2],
}

/// Flag of [`XdpFlow::flags`] and [`XdpReply::flags`]: the flow began with a TCP SYN.
pub const FLOW_SYN: u8 = 1;
/// The backend has answered (any packet back from it).
pub const FLOW_REPLIED: u8 = 2;
/// A SYN retransmission was already reported for this connection attempt.
pub const FLOW_RETRANSMIT_REPORTED: u8 = 4;

/// Where a flow goes: `XDP_FLOWS`' value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpFlow {
    pub backend: [u8; 16],
    /// Host byte order.
    pub bport: u16,
    pub family: u8,
    /// `FLOW_*` bits.
    pub flags: u8,
    pub backend_id: u32,
    /// The backend's `gen` when the flow was scheduled.
    pub gen: u32,
    pub service_id: u32,
    /// When the connection attempt's first SYN passed (`bpf_ktime_get_ns`), else 0.
    pub syn_ns: u64,
}

/// How to translate a reply back: `XDP_REPLIES`' value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct XdpReply {
    pub vip: [u8; 16],
    /// Host byte order.
    pub vport: u16,
    /// `FLOW_*` bits (only `FLOW_REPLIED` is used here).
    pub flags: u8,
    pub _pad: u8,
    pub backend_id: u32,
    pub service_id: u32,
    pub _pad1: u32,
}

pub use crate::health::{HealthEvent as XdpHealthEvent, HealthKind as XdpHealthKind};

/// Indexes of `XDP_STATS`, a per-CPU array of counters.
pub mod stat {
    /// Packets the program saw.
    pub const RX: u32 = 0;
    /// Client packets to a VIP, rewritten to a backend and sent on.
    pub const FORWARDED: u32 = 1;
    /// Backend replies rewritten back to the VIP and sent on.
    pub const REPLIED: u32 = 2;
    /// Packets neither to a VIP nor from a known flow's backend: passed untouched.
    pub const NOT_OURS: u32 = 3;
    /// New flows scheduled through Maglev.
    pub const NEW_FLOWS: u32 = 4;
    /// IPv4 fragments and IPv6 packets with a fragment header: passed to the kernel
    /// (only the first fragment carries ports, so they cannot be balanced as a flow).
    pub const FRAGMENTS: u32 = 5;
    /// Packets whose IPv4 header checksum was wrong: dropped.
    pub const BAD_CHECKSUM: u32 = 6;
    /// Packets too short for the headers they announce: passed to the kernel.
    pub const TRUNCATED: u32 = 7;
    /// Rewritten packets the FIB could not forward from XDP (no neighbour entry yet, ...):
    /// passed to the kernel, which forwards them and resolves the neighbour.
    pub const FIB_PASS: u32 = 8;
    /// Packets to a service with no backend: dropped.
    pub const NO_BACKEND: u32 = 9;
    /// Health events that did not fit into `XDP_HEALTH`.
    pub const EVENTS_LOST: u32 = 10;
    /// Packets whose TTL (hop limit) would expire here: passed, the kernel answers.
    pub const TTL_EXPIRED: u32 = 11;
    /// Health records that can fail no backend (established, SYN sent), not queued
    /// while the ring was three quarters full, to keep room for failures.
    pub const EVENTS_SHED: u32 = 12;
    /// Number of counters.
    pub const COUNT: u32 = 13;
    /// Names, in index order (for status and metrics).
    pub const NAMES: [&str; COUNT as usize] = [
        "rx",
        "forwarded",
        "replied",
        "not_ours",
        "new_flows",
        "fragments",
        "bad_checksum",
        "truncated",
        "fib_pass",
        "no_backend",
        "events_lost",
        "ttl_expired",
        "events_shed",
    ];
}

/// murmur3's 32-bit finaliser: spreads every input bit over the whole word.
#[inline(always)]
const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[inline(always)]
const fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The hash that picks a flow's Maglev entry: over the client's and the VIP's address and
/// port and the protocol. The kernel program and userspace (tests, the benchmark's
/// flows-moved count) compute the same value.
#[inline(always)]
pub const fn flow_hash(t: &XdpTuple) -> u32 {
    let mut h: u32 = 0x9e37_79b9;
    let mut i = 0;
    while i < 16 {
        h = fmix32(h ^ word(&t.src, i));
        h = fmix32(h ^ word(&t.dst, i));
        i += 4;
    }
    h = fmix32(h ^ ((t.sport as u32) << 16 | t.dport as u32));
    fmix32(h ^ ((t.family as u32) << 8 | t.protocol as u32))
}

/// The `k`-th other table entry (1-based) a new flow tries when the entry of its
/// `flow_hash` names a backend that is out: spread evenly over the table, so the flows of
/// a backend that left go to the others in proportion to their weights.
#[inline(always)]
pub const fn maglev_rehash(hash: u32, k: u32) -> u32 {
    fmix32(hash ^ k.wrapping_mul(0x9e37_79b9))
}

const _: () = assert!(core::mem::size_of::<XdpService>() == 8);
const _: () = assert!(core::mem::size_of::<XdpBackend>() == 32);
const _: () = assert!(core::mem::size_of::<XdpTuple>() == 40);
const _: () = assert!(core::mem::size_of::<XdpFlow>() == 40);
const _: () = assert!(core::mem::size_of::<XdpReply>() == 32);
