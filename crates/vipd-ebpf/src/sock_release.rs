//! `vipd_sock_release` (cgroup `sock_release`): a UDP socket is closed, and the records
//! the plane made for it go with it, so that the LRU maps hold live sockets. Without
//! this, every short-lived UDP socket (a resolver's socket per query, say) would leave
//! its records until newer ones evicted them, and with enough of those a long-lived
//! socket's own records would be evicted in their place.
//!
//! A connected socket's peer is the backend its connect was sent to: its reverse record
//! is keyed by that. An unconnected socket's records are found through `SOCK_UDP_SENT`
//! (the VIP it last sent to): the forward record, the reverse one of the backend it
//! names, and the flow of that backend and the socket's port. Records of other VIPs
//! the same socket sent to are left to the LRU maps. A TCP socket's record goes when
//! the connection closes (`sock_ops`), so TCP stops at the protocol test.

use aya_ebpf::{
    bindings::bpf_sock, helpers::bpf_get_socket_cookie, macros::cgroup_sock, programs::SockContext,
    EbpfContext,
};
use vipd_common::{
    sock::{SockPeer, SockUdpSent, PEER_FORWARD, PEER_REVERSE},
    AF_INET, AF_INET6, IPPROTO_UDP,
};

use crate::{
    sock_addr::{read_addr, remote_port, Addr},
    sock_maps::{SOCK_PEERS, SOCK_UDP_FLOWS, SOCK_UDP_SENT},
    sock_select::{flow_key, peer_key},
};

/// The verdict of a `sock_release` program (its value is not acted on).
const ALLOW: i32 = 1;

#[cgroup_sock(sock_release)]
pub fn vipd_sock_release(ctx: SockContext) -> i32 {
    let sk = ctx.sock;
    // SAFETY: the context is the socket being released; its fields are read with one
    // 4-byte load each, as the verifier allows.
    let (protocol, family) = unsafe {
        (
            core::ptr::read_volatile(&(*sk).protocol),
            core::ptr::read_volatile(&(*sk).family),
        )
    };
    if protocol != u32::from(IPPROTO_UDP) {
        return ALLOW;
    }
    let v6 = family == u32::from(AF_INET6);
    if !v6 && family != u32::from(AF_INET) {
        return ALLOW;
    }
    // SAFETY: the helper takes the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if let Some(peer) = connected_peer(sk, v6) {
        let _ = SOCK_PEERS.remove(&peer_key(cookie, &peer, family as u8, PEER_REVERSE));
    }
    // SAFETY: a hash map lookup; the value is copied out at once.
    let Some(sent): Option<SockUdpSent> = (unsafe { SOCK_UDP_SENT.get(&cookie) }).copied() else {
        return ALLOW;
    };
    let vip = Addr {
        addr: sent.vip,
        port: sent.vip_port,
    };
    let forward = peer_key(cookie, &vip, sent.family, PEER_FORWARD);
    // SAFETY: as above.
    if let Some(to) = (unsafe { SOCK_PEERS.get(&forward) }).copied() {
        let backend = backend_of(&to);
        let _ = SOCK_PEERS.remove(&peer_key(cookie, &backend, sent.family, PEER_REVERSE));
        let _ = SOCK_UDP_FLOWS.remove(&flow_key(&backend, sent.client_port, sent.family));
    }
    let _ = SOCK_PEERS.remove(&forward);
    let _ = SOCK_UDP_SENT.remove(&cookie);
    ALLOW
}

/// The backend a forward record sends to.
#[inline(always)]
fn backend_of(to: &SockPeer) -> Addr {
    Addr {
        addr: to.addr,
        port: to.port,
    }
}

/// The socket's peer if it is connected (a port is set), in the socket's own form (an
/// IPv4 peer of an IPv6 socket as `::ffff:a.b.c.d`), as its connect was recorded.
#[inline(always)]
fn connected_peer(sk: *mut bpf_sock, v6: bool) -> Option<Addr> {
    // SAFETY: the context is the socket being released; each field is read with one
    // 4-byte load, as the verifier allows.
    let (addr, raw) = unsafe {
        (
            read_addr(v6, &(*sk).dst_ip4, &(*sk).dst_ip6),
            core::ptr::read_volatile(core::ptr::addr_of!((*sk).dst_port).cast::<u32>()),
        )
    };
    let port = remote_port(raw);
    (port != 0).then_some(Addr { addr, port })
}
