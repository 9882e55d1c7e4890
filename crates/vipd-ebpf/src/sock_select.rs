//! What every hook of the socket plane shares: finding a VIP's service, choosing one of
//! its backends (weighted random, see `vipd_common::sock`, or the client's backend for a
//! service with persistence, see `sock_affinity`), and the socket's records of the
//! translation in `SOCK_PEERS` (and an unconnected UDP socket's flows in
//! `SOCK_UDP_FLOWS`, and its last VIP in `SOCK_UDP_SENT`).

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_get_socket_cookie},
    programs::SockAddrContext,
    EbpfContext,
};
use vipd_common::{
    sock::{
        stat, SockPeer, SockPeerKey, SockService, SockUdpFlowKey, SockUdpSent, PEER_FORWARD,
        PEER_REVERSE,
    },
    VipKey, AF_INET, AF_INET6, IPPROTO_TCP,
};

use crate::{
    sock_addr::{sock, Addr},
    sock_affinity::{client, remember, stick, sticky, touch},
    sock_maps::{count, SOCK_BACKENDS, SOCK_PEERS, SOCK_SERVICES, SOCK_UDP_FLOWS, SOCK_UDP_SENT},
};

/// What a VIP translates to.
pub enum Choice {
    /// Not a VIP of this protocol: leave the address alone.
    NotOurs,
    /// A VIP whose service has no backend with weight: refuse.
    NoBackend,
    /// This backend.
    Backend {
        /// The backend's address, in the form the socket uses.
        to: Addr,
        /// The socket's record of the translation, for the reverse map.
        back: SockPeer,
        /// The socket is a TCP connection of a service with persistence, recorded in
        /// `SOCK_STICKY_TCP`.
        sticky: bool,
    },
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

/// The service key of `vip` as a socket of `family` names it, and whether it was an
/// IPv4 address in IPv6 form (`::ffff:a.b.c.d`, a dual-stack socket reaching IPv4):
/// that is balanced as the IPv4 VIP.
#[inline(always)]
pub fn service_key(vip: &Addr, family: u8, protocol: u8) -> (VipKey, bool) {
    let a = &vip.addr;
    let mapped =
        u16::from(family) == AF_INET6 && a[..10] == [0u8; 10] && a[10] == 0xff && a[11] == 0xff;
    let key = if mapped {
        VipKey {
            addr: [
                a[12], a[13], a[14], a[15], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
            port: vip.port,
            family: AF_INET as u8,
            protocol,
        }
    } else {
        VipKey {
            addr: *a,
            port: vip.port,
            family,
            protocol,
        }
    };
    (key, mapped)
}

/// Chooses a backend for `dst` (a VIP of `protocol`, or not), in the form the socket
/// uses (an IPv4 backend as `::ffff:a.b.c.d` for an IPv4 VIP reached that way). `v6`:
/// the hook is an IPv6 one.
#[inline(always)]
pub fn choose(ctx: &SockAddrContext, v6: bool, dst: &Addr, family: u8, protocol: u8) -> Choice {
    let (key, mapped) = service_key(dst, family, protocol);
    // SAFETY: a hash map lookup; the value is not kept past this program's run.
    let Some(svc) = (unsafe { SOCK_SERVICES.get(&key) }) else {
        return Choice::NotOurs;
    };
    if svc.count == 0 || svc.total == 0 {
        return Choice::NoBackend;
    }
    let (id, b, sticky) = if svc.affinity_s == 0 {
        let id = draw(svc);
        let Some(b) = SOCK_BACKENDS.get(id) else {
            return Choice::NoBackend;
        };
        (id, b, false)
    } else {
        let who = client(ctx, svc, v6, mapped);
        let kept = sticky(&who, svc, |id, gen| {
            SOCK_BACKENDS.get(id).is_some_and(|b| b.gen == gen) && svc.has(id)
        });
        let id = kept.unwrap_or_else(|| draw(svc));
        let Some(b) = SOCK_BACKENDS.get(id) else {
            return Choice::NoBackend;
        };
        if kept.is_none() && b.gen != 0 {
            stick(&who, id, b);
        }
        let sticky = protocol == IPPROTO_TCP as u8 && b.gen != 0;
        if sticky {
            remember(cookie(ctx), &who, id, b.gen);
        }
        (id, b, sticky)
    };
    if b.gen == 0 {
        return Choice::NoBackend;
    }
    let mut to = Addr {
        addr: b.addr,
        port: b.port,
    };
    if mapped {
        let v4 = b.addr;
        to.addr = [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
        ];
    }
    let back = SockPeer {
        addr: dst.addr,
        port: dst.port,
        family,
        protocol,
        backend_id: id,
        gen: b.gen,
        service_id: svc.service_id,
    };
    Choice::Backend { to, back, sticky }
}

/// A weighted random backend id of `svc` (which has at least one). The remainder is
/// checked: the value is map memory the compiler cannot assume unchanged since the
/// caller looked at `total`, and a panic path is not a program the verifier loads.
#[inline(always)]
fn draw(svc: &SockService) -> u32 {
    // SAFETY: a plain helper call.
    let r = unsafe { bpf_get_prandom_u32() }
        .checked_rem(svc.total)
        .unwrap_or(0);
    svc.ids[svc.pick(r)]
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

/// The socket's own port, host byte order (bound by now in the send hook: the kernel
/// binds an unbound socket before it).
#[inline(always)]
pub fn local_port(ctx: &SockAddrContext) -> u16 {
    // SAFETY: `sk` of a sock_addr context is the (full) socket the call is made on; its
    // port is read with one 4-byte load, as the verifier allows.
    (unsafe { core::ptr::read_volatile(&(*sock(ctx)).src_port) }) as u16
}

/// The key of an unconnected UDP socket's flow: its datagrams from `client_port` to
/// `backend`.
#[inline(always)]
pub fn flow_key(backend: &Addr, client_port: u16, family: u8) -> SockUdpFlowKey {
    SockUdpFlowKey {
        backend: backend.addr,
        backend_port: backend.port,
        client_port,
        family,
        _pad: [0; 3],
    }
}

/// Records that this socket's datagrams from `client_port` to `backend` stand for the
/// VIP in `back`, so that an ICMP error quoting one of them finds the VIP
/// (`sock_udp_err`).
#[inline(always)]
pub fn remember_flow(client_port: u16, family: u8, backend: &Addr, back: &SockPeer) {
    let key = flow_key(backend, client_port, family);
    if SOCK_UDP_FLOWS.insert(&key, back, 0).is_err() {
        count(stat::PEER_LOST);
    }
}

/// Records that this unconnected socket's datagrams were last translated from `vip`,
/// so that its records go when it is released (`sock_release`).
#[inline(always)]
pub fn remember_sent(cookie: u64, vip: &Addr, family: u8, client_port: u16) {
    let sent = SockUdpSent {
        vip: vip.addr,
        vip_port: vip.port,
        client_port,
        family,
        _pad: [0; 3],
    };
    if SOCK_UDP_SENT.insert(&cookie, &sent, 0).is_err() {
        count(stat::PEER_LOST);
    }
}

/// The VIP this socket's `backend` stands for, if it made that translation. A
/// dual-stack socket's unconnected datagrams to an IPv4 VIP are translated by the
/// IPv4 hook (the kernel sends them as IPv4), while its replies arrive in the IPv6 form
/// (`::ffff:a.b.c.d`): those are looked up as IPv4 and answered in the IPv6 form.
#[inline(always)]
pub fn reverse(cookie: u64, backend: &Addr, family: u8) -> Option<Addr> {
    if let Some(vip) = reverse_as(cookie, backend, family) {
        return Some(vip);
    }
    let (key, mapped) = service_key(backend, family, 0);
    if !mapped {
        return None;
    }
    let v4 = Addr {
        addr: key.addr,
        port: backend.port,
    };
    let vip = reverse_as(cookie, &v4, AF_INET as u8)?;
    let a = vip.addr;
    Some(Addr {
        addr: [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a[0], a[1], a[2], a[3],
        ],
        port: vip.port,
    })
}

#[inline(always)]
fn reverse_as(cookie: u64, backend: &Addr, family: u8) -> Option<Addr> {
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
/// (a backend at weight 0, quarantined say, loses the socket at its next datagram). For
/// a service with persistence the datagram also keeps its client's entry alive.
#[inline(always)]
pub fn forward(
    ctx: &SockAddrContext,
    v6: bool,
    cookie: u64,
    vip: &Addr,
    family: u8,
    protocol: u8,
) -> Option<Addr> {
    let key = peer_key(cookie, vip, family, PEER_FORWARD);
    // SAFETY: a hash map lookup; the value is copied out at once.
    let p = unsafe { SOCK_PEERS.get(&key) }?;
    let b = SOCK_BACKENDS.get(p.backend_id)?;
    if b.gen != p.gen {
        return None;
    }
    let (svc_key, mapped) = service_key(vip, family, protocol);
    // SAFETY: a hash map lookup; the value is not kept past this program's run.
    let svc = unsafe { SOCK_SERVICES.get(&svc_key) }?;
    if !svc.has(p.backend_id) {
        return None;
    }
    if svc.affinity_s != 0 {
        touch(&client(ctx, svc, v6, mapped), p.backend_id);
    }
    Some(Addr {
        addr: p.addr,
        port: p.port,
    })
}
