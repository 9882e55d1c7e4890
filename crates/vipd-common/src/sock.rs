//! Types of the socket data plane (`dataplane = "socket"`): the maps its cgroup
//! programs read and write. The programs translate a socket's destination once, when it
//! connects (or sends a datagram unconnected), instead of rewriting packets.
//!
//! Maps (names as in the socket plane's object, `vipd-sock`; sizes there are
//! placeholders, the socket loader sets the real ones):
//!
//! | map | key | value |
//! | --- | --- | --- |
//! | `SOCK_SERVICES` (hash) | [`crate::VipKey`] | [`SockService`]: the service's weighted selection |
//! | `SOCK_BACKENDS` (array) | backend id | [`SockBackend`] |
//! | `SOCK_PEERS` (LRU hash) | [`SockPeerKey`] | [`SockPeer`] |
//! | `SOCK_STATS` (per-CPU array) | [`stat`] index | `u64` |
//! | `SOCK_HEALTH` (ring buffer) | | [`crate::health::HealthEvent`] |
//! | `SOCK_AFFINITY` (LRU hash) | [`SockAffinityKey`] | [`SockAffinity`]: the backend a client sticks to (services with persistence) |
//! | `SOCK_STICKY_TCP` (LRU hash) | socket cookie | [`SockStickyConn`]: the client entry a TCP connection of a service with persistence holds open |
//! | `SOCK_SYN_RTO` (hash) | [`crate::VipKey`] | [`SockSynRto`]: the VIP's initial SYN timeout |
//! | `SOCK_SYN_RTO_VIPS` (array, 1 entry) | 0 | `u32`: how many entries `SOCK_SYN_RTO` holds (0: no program looks it up) |
//! | `SOCK_CONNECT_NEXT` (per-CPU array, 1 entry) | 0 | [`SockConnectNext`]: what one step of a TCP connect leaves for the next (kernel only) |
//!
//! Backend choice: each service holds the ids of its backends with weight above 0 and
//! their cumulative weights; a new socket draws a random number below the total and takes
//! the backend whose stretch holds it (a binary search). One socket makes one choice, so
//! no flow table is needed to keep its packets together: the kernel's own socket does.
//! A backend whose weight drops to 0 leaves the selection with the one write of its
//! service's value.

/// Most backends with weight above 0 in one service.
pub const SOCK_MAX_BACKENDS: usize = 256;

/// Binary search steps over [`SOCK_MAX_BACKENDS`] entries (its log2).
pub const SOCK_SEARCH_STEPS: u32 = 8;

const _: () = assert!(1 << SOCK_SEARCH_STEPS == SOCK_MAX_BACKENDS);

/// One virtual service: `SOCK_SERVICES`' value. Entries `0..count` of `ids` and `cum`
/// are used: `cum[i]` is the sum of the weights of backends `0..=i`, so `cum[count - 1]`
/// is `total`. `ids[0..count]` ascend, so that whether a backend is in the selection is
/// a binary search ([`SockService::has`]), not a scan the verifier walks 256 times. `count` 0: no backend takes connections, and a connect to the VIP fails
/// at once (`EPERM`) instead of going to the VIP's own address.
///
/// `affinity_s` above 0: the service has persistence (session affinity) with that
/// timeout in seconds; the client (network namespace and the socket's bound source
/// address, masked with `affinity_mask`) keeps its backend in `SOCK_AFFINITY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SockService {
    /// Userspace's id of the service.
    pub service_id: u32,
    pub count: u32,
    pub total: u32,
    /// Persistence timeout, seconds; 0: no persistence.
    pub affinity_s: u32,
    /// Persistence netmask: the bits of the client's source address that count (IPv4
    /// in the first four bytes). A mask, not a prefix length, so that the programs mask
    /// with one AND a byte: no branches for the verifier to follow.
    pub affinity_mask: [u8; 16],
    pub cum: [u32; SOCK_MAX_BACKENDS],
    pub ids: [u32; SOCK_MAX_BACKENDS],
}

impl Default for SockService {
    fn default() -> Self {
        SockService {
            service_id: 0,
            count: 0,
            total: 0,
            affinity_s: 0,
            affinity_mask: [0; 16],
            cum: [0; SOCK_MAX_BACKENDS],
            ids: [0; SOCK_MAX_BACKENDS],
        }
    }
}

impl SockService {
    /// The entry whose stretch of the cumulative weights holds `r` (`r < total`):
    /// the first `i` with `r < cum[i]`. The kernel program and userspace's tests share
    /// this search; its loop has a fixed number of steps, as the verifier wants.
    #[inline(always)]
    pub fn pick(&self, r: u32) -> usize {
        let count = self.count as usize;
        // Search [lo, hi) for the first entry above r.
        let mut lo = 0usize;
        let mut hi = if count > SOCK_MAX_BACKENDS {
            SOCK_MAX_BACKENDS
        } else {
            count
        };
        let mut step = 0;
        while step <= SOCK_SEARCH_STEPS {
            if lo < hi {
                let mid = (lo + hi) / 2;
                if r < self.cum[mid & (SOCK_MAX_BACKENDS - 1)] {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            step += 1;
        }
        lo & (SOCK_MAX_BACKENDS - 1)
    }

    /// Whether backend `id` is in the selection (weight above 0): a binary search of
    /// `ids[0..count]`, which ascend; the same fixed number of steps as [`Self::pick`].
    #[inline(always)]
    pub fn has(&self, id: u32) -> bool {
        let count = if (self.count as usize) > SOCK_MAX_BACKENDS {
            SOCK_MAX_BACKENDS
        } else {
            self.count as usize
        };
        // The first entry at or above id, in [lo, hi). If id is there, the search reads
        // it: the step that brings hi down to its index reads that entry. So the answer
        // is found inside the loop, and no entry is read after it, at an index the
        // compiler would pass unmasked (it knows lo < count <= 255; verifiers before
        // Linux 6.8 do not learn that from comparing two registers).
        let mut lo = 0usize;
        let mut hi = count;
        let mut found = false;
        let mut step = 0;
        while step <= SOCK_SEARCH_STEPS {
            if lo < hi {
                let mid = (lo + hi) / 2;
                let at = self.ids[mid & (SOCK_MAX_BACKENDS - 1)];
                found |= at == id;
                if at < id {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            step += 1;
        }
        found
    }
}

/// A backend: `SOCK_BACKENDS`' value, indexed by backend id (id 0 is never used). `gen`
/// 0 marks a free id; every newly allocated id gets a new `gen`, so a socket's record of
/// a removed backend (whose id may have been reused) is seen to be stale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockBackend {
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
    pub gen: u32,
}

/// [`SockPeerKey::dir`]: the record maps a VIP the socket sent to onto its backend
/// (unconnected UDP: later datagrams to the VIP go to the same backend).
pub const PEER_FORWARD: u8 = 1;
/// The record maps a backend back to the VIP (what `getpeername` and `recvmsg` show).
pub const PEER_REVERSE: u8 = 2;

/// One socket's translation: `SOCK_PEERS`' key. `addr`/`port` are the VIP for
/// [`PEER_FORWARD`], the backend for [`PEER_REVERSE`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct SockPeerKey {
    /// `bpf_get_socket_cookie`: unique per socket for the kernel's uptime.
    pub cookie: u64,
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub family: u8,
    pub dir: u8,
    pub _pad: u32,
}

/// `SOCK_PEERS`' value: the other side of the translation (the backend for
/// [`PEER_FORWARD`], the VIP for [`PEER_REVERSE`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockPeer {
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub family: u8,
    pub protocol: u8,
    pub backend_id: u32,
    /// The backend's `gen` when it was chosen.
    pub gen: u32,
    pub service_id: u32,
}

/// A client of a service with persistence: `SOCK_AFFINITY`'s key. On a client host the
/// client is the host itself, told apart by network namespace and source address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct SockAffinityKey {
    /// `bpf_get_netns_cookie` of the socket's network namespace.
    pub netns: u64,
    /// The socket's bound source address masked to the service's prefix (all zero if
    /// the socket is not bound to an address). IPv4 in the first four bytes.
    pub addr: [u8; 16],
    pub service_id: u32,
    pub _pad: u32,
}

/// `SOCK_AFFINITY`'s value: the backend the client was last given and when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockAffinity {
    /// `bpf_ktime_get_ns` of the last connect or datagram that used this entry, or of
    /// the end of the last TCP connection it held open.
    pub last_ns: u64,
    pub backend_id: u32,
    /// The backend's `gen` when it was chosen: a reused id is not the same backend.
    pub gen: u32,
    /// The backend's address (IPv4 in the first four bytes) and port (host order).
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
    /// TCP connections to this entry's backend open now: counted when their SYN leaves,
    /// uncounted when they close (atomic adds). While any is open the entry does not
    /// expire, as an IPVS template outlives its timeout while it controls connections.
    /// Read as signed: closes raced below zero count as none.
    pub open: u32,
}

impl SockAffinity {
    /// Whether the entry still holds its client at `now_ns`: a connection of it is
    /// open, or it was used within `timeout_ns`.
    #[inline(always)]
    pub fn holds(&self, now_ns: u64, timeout_ns: u64) -> bool {
        (self.open as i32) > 0 || now_ns.saturating_sub(self.last_ns) <= timeout_ns
    }
}

/// `SOCK_STICKY_TCP`' value, by socket cookie: the client entry a TCP connection of a
/// service with persistence counts in [`SockAffinity::open`], and the backend it went
/// to (an entry that names another one since is not the one it counted in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockStickyConn {
    pub client: SockAffinityKey,
    pub backend_id: u32,
    pub gen: u32,
}

/// A datagram an unconnected UDP socket sent through a VIP, as an ICMP error about it
/// quotes it: `SOCK_UDP_FLOWS`' key (the value is the [`SockPeer`] that names the VIP,
/// as [`PEER_REVERSE`]'s does). The client's address is not in the key: an unbound
/// socket's source is chosen by routing, after the send hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct SockUdpFlowKey {
    pub backend: [u8; 16],
    /// Host byte order.
    pub backend_port: u16,
    /// The sending socket's port, host byte order.
    pub client_port: u16,
    /// The family of the datagram on the wire (`AF_INET` for an IPv4 VIP reached
    /// through a dual-stack socket).
    pub family: u8,
    pub _pad: [u8; 3],
}

/// `SOCK_UDP_SENT`'s value, by socket cookie: the VIP an unconnected UDP socket's
/// datagrams were last translated from, and the socket's port then. When the socket is
/// released, `sock_release` finds its records by it (the forward one under the VIP, and
/// through it the reverse one and the flow) and removes them, so that the LRU maps hold
/// live sockets rather than crowding them out with closed ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockUdpSent {
    pub vip: [u8; 16],
    /// Host byte order.
    pub vip_port: u16,
    /// The socket's own port, host byte order (the release hook cannot read it).
    pub client_port: u16,
    /// The family of the records' keys (`AF_INET` for an IPv4 VIP reached through a
    /// dual-stack socket).
    pub family: u8,
    pub _pad: [u8; 3],
}

/// `SOCK_SYN_RTO`'s value: a TCP VIP's initial SYN timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockSynRto {
    /// The timeout, jiffies (at least 1).
    pub jiffies: u32,
    /// Not 0: `sock_ops` reports each translated connection's SYN as it leaves
    /// (`HealthKind::SynSent`), so that userspace learns the handshake times of an
    /// adaptive timeout.
    pub report_syn: u32,
}

/// `SOCK_CONNECT_NEXT`'s value: what one step of a TCP connect leaves for the next, on
/// the same CPU, so that the next need not look it up. Within one `connect()` the
/// connect hook translates the VIP, then `sock_ops` sees `TCP_CONNECT_CB` and then
/// `TIMEOUT_INIT`. The connect hook says that it translated the socket and what its
/// VIP asks of the SYN ([`CONNECT_TRANSLATED`]); `TCP_CONNECT_CB` takes that instead of
/// looking up the socket's records, and leaves the SYN timeout ([`CONNECT_TIMED`]) for
/// `TIMEOUT_INIT`.
///
/// A slot is used only if it names the reader's socket, holds the step the reader
/// expects and carries its own digest ([`SockConnectNext::new`] seals it). So a slot of
/// another socket (the task moved CPU in between) is not used, nor one that two writes
/// overlapped in (programs can be preempted, though not moved off their CPU): the
/// reader then looks up what it needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockConnectNext {
    /// The socket's cookie.
    pub cookie: u64,
    /// The initial SYN timeout, jiffies; 0: the kernel's own.
    pub jiffies: u32,
    /// Which step left the slot: [`CONNECT_TRANSLATED`] or [`CONNECT_TIMED`].
    pub step: u8,
    /// [`CONNECT_STICKY`], [`CONNECT_REPORT_SYN`].
    pub flags: u8,
    pub _pad: u16,
    /// A digest of the other fields.
    pub seal: u64,
}

impl SockConnectNext {
    /// What `step` leaves for socket `cookie`, sealed with its digest.
    #[inline(always)]
    pub fn new(cookie: u64, step: u8, jiffies: u32, flags: u8) -> Self {
        let mut slot = SockConnectNext {
            cookie,
            jiffies,
            step,
            flags,
            _pad: 0,
            seal: 0,
        };
        slot.seal = slot.digest();
        slot
    }

    /// What the reader of socket `cookie` at `step` may use: the slot if it names that
    /// socket and step and carries its own digest, and not a mix of two writes.
    #[inline(always)]
    pub fn for_step(&self, cookie: u64, step: u8) -> Option<&Self> {
        (self.cookie == cookie && self.step == step && self.seal == self.digest()).then_some(self)
    }

    /// Whether `flag` is set.
    #[inline(always)]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The fields but `seal`, mixed (multiply by an odd constant, fold the high bits
    /// down), so that a slot two writes overlapped in, one part each, is as good as
    /// certain to miss its digest.
    #[inline(always)]
    fn digest(&self) -> u64 {
        let word = u64::from(self.jiffies)
            | u64::from(self.step) << 32
            | u64::from(self.flags) << 40
            | u64::from(self._pad) << 48;
        mix(mix(0x243f_6a88_85a3_08d3, self.cookie), word)
    }
}

/// One word into digest `h`.
#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    let h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ h >> 32
}

/// [`SockConnectNext::step`]: left by the connect hook.
pub const CONNECT_TRANSLATED: u8 = 1;
/// [`SockConnectNext::step`]: left by `sock_ops` at `TCP_CONNECT_CB`.
pub const CONNECT_TIMED: u8 = 2;
/// [`SockConnectNext::flags`]: the connect hook recorded the socket in
/// `SOCK_STICKY_TCP` (its service has persistence).
pub const CONNECT_STICKY: u8 = 1;
/// [`SockConnectNext::flags`]: the VIP's SYN timeout is adaptive; its SYN is reported
/// as it leaves.
pub const CONNECT_REPORT_SYN: u8 = 2;

/// `addr` with every bit past the first `prefix` cleared (a prefix of 128 or more keeps
/// all); `mask_prefix(&[0xff; 16], p)` is the mask of prefix length `p`.
#[inline(always)]
pub fn mask_prefix(addr: &[u8; 16], prefix: u8) -> [u8; 16] {
    let mut out = [0u8; 16];
    let p = prefix as usize;
    let mut i = 0;
    while i < 16 {
        let bit = i * 8;
        out[i] = if p >= bit + 8 {
            addr[i]
        } else if p <= bit {
            0
        } else {
            addr[i] & (0xffu8 << (8 - (p - bit)))
        };
        i += 1;
    }
    out
}

/// Where the `tcp/tcp_receive_reset` record's fields are, from this kernel's format
/// file, and where the socket the record points to keeps its state, from BTF: the
/// global `SOCK_RESET_TP` of the socket plane's object. `valid` 0: not set, the program
/// does nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SockResetOffsets {
    pub valid: u16,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub saddr: u16,
    pub daddr: u16,
    pub saddr_v6: u16,
    pub daddr_v6: u16,
    pub sock_cookie: u16,
    /// The record's `skaddr` (the `struct sock *`).
    pub skaddr: u16,
    /// `skc_state` in `struct sock_common`.
    pub state: u16,
}

impl SockResetOffsets {
    pub const UNSET: Self = Self {
        valid: 0,
        sport: 0,
        dport: 0,
        family: 0,
        saddr: 0,
        daddr: 0,
        saddr_v6: 0,
        daddr_v6: 0,
        sock_cookie: 0,
        skaddr: 0,
        state: 0,
    };
}

/// Where `vipd_sock_error` finds what it reads of the socket it is handed (`struct
/// sock` offsets from BTF, and `sk_err`): the global `SOCK_ERROR_SK` of the socket
/// plane's object. `sock.valid` 0: not set, the program does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SockErrorOffsets {
    pub sock: crate::SockOffsets,
    /// `int sk_err` of `struct sock`.
    pub err: u16,
}

impl SockErrorOffsets {
    pub const UNSET: Self = Self {
        sock: crate::SockOffsets::UNSET,
        err: 0,
    };
}

/// Indexes of `SOCK_STATS`, a per-CPU array of counters.
pub mod stat {
    /// Connects to a VIP sent to a backend.
    pub const CONNECTS: u32 = 0;
    /// Unconnected datagrams to a VIP sent to a backend.
    pub const DATAGRAMS: u32 = 1;
    /// `getpeername` answers changed from a backend to its VIP.
    pub const PEERNAMES: u32 = 2;
    /// Received datagrams whose source changed from a backend to its VIP.
    pub const REPLIES: u32 = 3;
    /// Connects and datagrams to a VIP refused: the service has no backend with weight.
    pub const NO_BACKEND: u32 = 4;
    /// Translations not recorded (`SOCK_PEERS` update failed): that socket's
    /// `getpeername` shows the backend.
    pub const PEER_LOST: u32 = 5;
    /// Health events that did not fit into `SOCK_HEALTH`.
    pub const EVENTS_LOST: u32 = 6;
    /// Health records that can fail no backend (established, SYN sent), not queued
    /// while the ring was three quarters full, to keep room for failures.
    pub const EVENTS_SHED: u32 = 7;
    /// Number of counters.
    pub const COUNT: u32 = 8;
    /// Names, in index order (for status and metrics).
    pub const NAMES: [&str; COUNT as usize] = [
        "connects",
        "datagrams",
        "peernames",
        "replies",
        "no_backend",
        "peer_lost",
        "events_lost",
        "events_shed",
    ];
}

const _: () = assert!(core::mem::size_of::<SockService>() == 32 + 8 * SOCK_MAX_BACKENDS);
const _: () = assert!(core::mem::size_of::<SockAffinityKey>() == 32);
const _: () = assert!(core::mem::size_of::<SockAffinity>() == 40);
const _: () = assert!(core::mem::size_of::<SockStickyConn>() == 40);
const _: () = assert!(core::mem::size_of::<SockSynRto>() == 8);
const _: () = assert!(core::mem::size_of::<SockConnectNext>() == 24);
const _: () = assert!(core::mem::size_of::<SockBackend>() == 24);
const _: () = assert!(core::mem::size_of::<SockPeerKey>() == 32);
const _: () = assert!(core::mem::size_of::<SockPeer>() == 32);
const _: () = assert!(core::mem::size_of::<SockUdpSent>() == 24);

#[cfg(test)]
mod tests {
    use super::{
        mask_prefix, SockConnectNext, SockService, CONNECT_REPORT_SYN, CONNECT_STICKY,
        CONNECT_TIMED, CONNECT_TRANSLATED, SOCK_MAX_BACKENDS,
    };

    #[test]
    fn has_finds_exactly_the_ids_of_the_selection() {
        for count in [0usize, 1, 2, 3, 7, 100, 255, 256] {
            let mut s = SockService {
                count: count as u32,
                ..SockService::default()
            };
            for i in 0..SOCK_MAX_BACKENDS {
                // Ascending odd ids; past count, junk that must not count.
                s.ids[i] = if i < count { 2 * i as u32 + 1 } else { 3 };
            }
            for id in 0..(2 * SOCK_MAX_BACKENDS as u32 + 4) {
                let want = id % 2 == 1 && ((id - 1) / 2) < count as u32;
                assert_eq!(s.has(id), want, "count {count}, id {id}");
            }
        }
    }

    #[test]
    fn a_prefix_keeps_its_bits_and_clears_the_rest() {
        let a = [
            10, 1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(mask_prefix(&a, 24)[..4], [10, 1, 2, 0]);
        assert_eq!(mask_prefix(&a, 24)[4..], [0; 12]);
        assert_eq!(mask_prefix(&a, 28)[..4], [10, 1, 2, 0xf0]);
        assert_eq!(mask_prefix(&a, 32)[..4], [10, 1, 2, 0xff]);
        assert_eq!(mask_prefix(&a, 0), [0; 16]);
        assert_eq!(mask_prefix(&a, 128), a);
        assert_eq!(mask_prefix(&a, 200), a);
        assert_eq!(mask_prefix(&a, 9)[..2], [10, 0]);
    }

    fn slot(cookie: u64, jiffies: u32, flags: u8) -> SockConnectNext {
        SockConnectNext::new(cookie, CONNECT_TRANSLATED, jiffies, flags)
    }

    #[test]
    fn a_connect_slot_serves_only_its_socket_and_step() {
        let s = slot(42, 50, CONNECT_STICKY);
        assert_eq!(s.for_step(42, CONNECT_TRANSLATED), Some(&s));
        assert!(s.has(CONNECT_STICKY) && !s.has(CONNECT_REPORT_SYN));
        assert_eq!(s.for_step(43, CONNECT_TRANSLATED), None);
        assert_eq!(s.for_step(42, CONNECT_TIMED), None);
        let unsealed = SockConnectNext { seal: 0, ..s };
        assert_eq!(unsealed.for_step(42, CONNECT_TRANSLATED), None);
    }

    #[test]
    fn a_connect_slot_two_writes_overlapped_in_is_not_used() {
        let a = slot(42, 50, 0);
        // Each part of one write with the rest of another's, as a write preempted by
        // another (or a read preempted by a write) can leave it.
        let others = [
            slot(41, 50, 0),
            slot(42, 51, 0),
            slot(42, 50, CONNECT_STICKY),
            slot(42, 50, CONNECT_REPORT_SYN),
            slot(42, 0, 0),
        ];
        for (i, b) in others.iter().enumerate() {
            assert_ne!(a.seal, b.seal, "{i}");
            let mixes = [
                SockConnectNext {
                    cookie: b.cookie,
                    ..a
                },
                SockConnectNext {
                    jiffies: b.jiffies,
                    flags: b.flags,
                    ..a
                },
                SockConnectNext { seal: b.seal, ..a },
            ];
            for (j, m) in mixes.iter().enumerate() {
                if *m != a {
                    assert_eq!(m.for_step(m.cookie, m.step), None, "{i}, mix {j}");
                }
            }
        }
    }
}
