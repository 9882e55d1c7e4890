//! `vipd_sock_sendmsg4`/`6` (cgroup `sendmsg4`/`sendmsg6`): an unconnected UDP socket
//! sending to a VIP sends to a backend. The socket's first datagram to the VIP chooses
//! it; later ones go to the same backend while it holds its id and stays in the
//! service's selection, so a request and its retries reach one server, and a backend
//! taken out (weight 0, quarantine) loses the socket at its next datagram. Both
//! directions are recorded: `recvmsg` shows replies as coming from the VIP. So is the
//! flow (the socket's port and the backend), by which `sock_udp_err` finds the VIP of an
//! ICMP error about the datagram. With persistence, the first datagram's choice is the
//! client's (see `sock_affinity`). The VIP is noted under the socket's cookie too, so
//! that these records go when the socket is released (`sock_release`).

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use vipd_common::{sock::stat, AF_INET, AF_INET6, IPPROTO_UDP};

use crate::{
    sock_addr::{protocol, set_user, user},
    sock_maps::count,
    sock_select::{
        choose, cookie, forward, local_port, remember_flow, remember_forward, remember_reverse,
        remember_sent, Choice,
    },
};

#[cgroup_sock_addr(sendmsg4)]
pub fn vipd_sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    send(&ctx, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn vipd_sock_sendmsg6(ctx: SockAddrContext) -> i32 {
    send(&ctx, true)
}

#[inline(always)]
fn send(ctx: &SockAddrContext, v6: bool) -> i32 {
    let proto = protocol(ctx) as u8;
    if u16::from(proto) != IPPROTO_UDP {
        return 1;
    }
    let family = if v6 { AF_INET6 } else { AF_INET } as u8;
    let dst = user(ctx, v6);
    let cookie = cookie(ctx);
    if let Some(to) = forward(ctx, v6, cookie, &dst, family, proto) {
        set_user(ctx, v6, &to);
        count(stat::DATAGRAMS);
        return 1;
    }
    match choose(ctx, v6, &dst, family, proto) {
        Choice::NotOurs => 1,
        Choice::NoBackend => {
            count(stat::NO_BACKEND);
            0
        }
        Choice::Backend { to, back, .. } => {
            let port = local_port(ctx);
            remember_reverse(cookie, &to, family, &back);
            remember_forward(cookie, &dst, family, &to, &back);
            remember_flow(port, family, &to, &back);
            remember_sent(cookie, &dst, family, port);
            set_user(ctx, v6, &to);
            count(stat::DATAGRAMS);
            1
        }
    }
}
