//! What every hook of the socket plane shares: finding a VIP's service, choosing one of
//! its backends (weighted random, see `vipd_common::sock`), and the socket's records of
//! the translation in `SOCK_PEERS`.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_get_socket_cookie},
    programs::SockAddrContext,
    EbpfContext,
};
use vipd_common::{
    sock::{
        stat, SockPeer, SockPeerKey, SockService, PEER_FORWARD, PEER_REVERSE, SOCK_MAX_BACKENDS,
    },
    VipKey,
};

use crate::{
    sock_addr::Addr,
    sock_maps::{count, SOCK_BACKENDS, SOCK_PEERS, SOCK_SERVICES},
};

/// What a VIP translates to.
pub enum Choice {
    /// Not a VIP of this protocol: leave the address alone.
    NotOurs,
    /// A VIP whose service has no backend with weight: refuse.
    NoBackend,
    /// This backend (its record for the reverse map).
    Backend(Addr, SockPeer),
}

/// The socket's cookie.
#[inline(always)]
pub fn cookie(ctx: &SockAddrContext) -> u64 {
    // SAFETY: the helper takes the program's own context.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// A key of `SOCK_PEERS`.
#[inline(always)]
pub fn peer_key(cookie: u64, a: &Addr, family: u8, dir: u8) -> SockPeerKey {
    SockPeerKey {
        cookie,
        addr: a.addr,
        port: a.port,
        family,
        dir,
        _pad: 0,
    }
}

/// Chooses a backend for `dst` (a VIP of `protocol`, or not).
#[inline(always)]
pub fn choose(dst: &Addr, family: u8, protocol: u8) -> Choice {
    let key = VipKey {
        addr: dst.addr,
        port: dst.port,
        family,
        protocol,
    };
    // SAFETY: a hash map lookup; the value is not kept past this program's run.
    let Some(svc) = (unsafe { SOCK_SERVICES.get(&key) }) else {
        return Choice::NotOurs;
    };
    if svc.count == 0 || svc.total == 0 {
        return Choice::NoBackend;
    }
    // SAFETY: a plain helper call.
    let r = unsafe { bpf_get_prandom_u32() } % svc.total;
    let id = svc.ids[svc.pick(r)];
    let Some(b) = SOCK_BACKENDS.get(id) else {
        return Choice::NoBackend;
    };
    if b.gen == 0 {
        return Choice::NoBackend;
    }
    let to = Addr {
        addr: b.addr,
        port: b.port,
    };
    let back = SockPeer {
        addr: dst.addr,
        port: dst.port,
        family,
        protocol,
        backend_id: id,
        gen: b.gen,
        service_id: svc.service_id,
    };
    Choice::Backend(to, back)
}

/// Records that this socket's `backend` stands for `back` (the VIP), for `getpeername`
/// and `recvmsg`.
#[inline(always)]
pub fn remember_reverse(cookie: u64, backend: &Addr, family: u8, back: &SockPeer) {
    let key = peer_key(cookie, backend, family, PEER_REVERSE);
    if SOCK_PEERS.insert(&key, back, 0).is_err() {
        count(stat::PEER_LOST);
    }
}

/// Records that this socket's datagrams to `vip` go to `backend`.
#[inline(always)]
pub fn remember_forward(cookie: u64, vip: &Addr, family: u8, backend: &Addr, back: &SockPeer) {
    let key = peer_key(cookie, vip, family, PEER_FORWARD);
    let fwd = SockPeer {
        addr: backend.addr,
        port: backend.port,
        ..*back
    };
    if SOCK_PEERS.insert(&key, &fwd, 0).is_err() {
        count(stat::PEER_LOST);
    }
}

/// The VIP this socket's `backend` stands for, if it made that translation.
#[inline(always)]
pub fn reverse(cookie: u64, backend: &Addr, family: u8) -> Option<Addr> {
    let key = peer_key(cookie, backend, family, PEER_REVERSE);
    // SAFETY: a hash map lookup; the value is copied out at once.
    let p = unsafe { SOCK_PEERS.get(&key) }?;
    Some(Addr {
        addr: p.addr,
        port: p.port,
    })
}

/// The backend this socket's earlier datagrams to `vip` went to, while that backend
/// still holds its id (its `gen` unchanged) and is still in the service's selection
/// (a backend at weight 0, quarantined say, loses the socket at its next datagram).
#[inline(always)]
pub fn forward(cookie: u64, vip: &Addr, family: u8, protocol: u8) -> Option<Addr> {
    let key = peer_key(cookie, vip, family, PEER_FORWARD);
    // SAFETY: a hash map lookup; the value is copied out at once.
    let p = unsafe { SOCK_PEERS.get(&key) }?;
    let b = SOCK_BACKENDS.get(p.backend_id)?;
    if b.gen != p.gen {
        return None;
    }
    let svc_key = VipKey {
        addr: vip.addr,
        port: vip.port,
        family,
        protocol,
    };
    // SAFETY: a hash map lookup; the value is not kept past this program's run.
    let svc = unsafe { SOCK_SERVICES.get(&svc_key) }?;
    if !selects(svc, p.backend_id) {
        return None;
    }
    Some(Addr {
        addr: p.addr,
        port: p.port,
    })
}

/// Whether backend `id` is in the service's selection (weight above 0).
#[inline(always)]
fn selects(svc: &SockService, id: u32) -> bool {
    let count = svc.count as usize;
    let mut i = 0;
    while i < SOCK_MAX_BACKENDS {
        if i >= count {
            return false;
        }
        if svc.ids[i] == id {
            return true;
        }
        i += 1;
    }
    false
}
