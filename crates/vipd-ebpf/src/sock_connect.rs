//! `vipd_sock_connect4`/`vipd_sock_connect6` (cgroup `connect4`/`connect6`): a TCP or UDP
//! socket connecting to a VIP connects to one of its backends instead. The choice is
//! recorded under the socket's cookie so that `getpeername` (and `recvmsg` on a
//! connected UDP socket) show the VIP. A service without a backend with weight refuses
//! the connect (`EPERM`) rather than letting it go to the VIP's own address. For a TCP
//! socket, what `sock_ops` needs when the same `connect()` sends its SYN next is left
//! in this CPU's `SOCK_CONNECT_NEXT` slot (`sock_connect_next`).

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use vipd_common::{
    sock::{
        stat, SockConnectNext, SockPeer, CONNECT_REPORT_SYN, CONNECT_STICKY, CONNECT_TRANSLATED,
    },
    AF_INET, AF_INET6, IPPROTO_TCP,
};

use crate::{
    sock_addr::{protocol, set_user, user},
    sock_connect_next::leave,
    sock_maps::count,
    sock_select::{choose, cookie, remember_reverse, Choice},
    sock_syn_rto::syn_rto,
};

/// Allow the call (possibly with a rewritten address); 0 refuses it with `EPERM`.
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

#[cgroup_sock_addr(connect4)]
pub fn vipd_sock_connect4(ctx: SockAddrContext) -> i32 {
    connect(&ctx, false)
}

#[cgroup_sock_addr(connect6)]
pub fn vipd_sock_connect6(ctx: SockAddrContext) -> i32 {
    connect(&ctx, true)
}

#[inline(always)]
fn connect(ctx: &SockAddrContext, v6: bool) -> i32 {
    let family = if v6 { AF_INET6 } else { AF_INET } as u8;
    let proto = protocol(ctx) as u8;
    let dst = user(ctx, v6);
    match choose(ctx, v6, &dst, family, proto) {
        Choice::NotOurs => ALLOW,
        Choice::NoBackend => {
            count(stat::NO_BACKEND);
            REFUSE
        }
        Choice::Backend { to, back, sticky } => {
            let cookie = cookie(ctx);
            remember_reverse(cookie, &to, family, &back);
            if proto == IPPROTO_TCP as u8 {
                hand_on(cookie, &back, sticky);
            }
            set_user(ctx, v6, &to);
            count(stat::CONNECTS);
            ALLOW
        }
    }
}

/// Leaves what `sock_ops`' `TCP_CONNECT_CB` needs of TCP socket `cookie`, translated
/// as `back` says: that it was, whether it holds a client entry (`sticky`), and its
/// VIP's SYN timeout.
#[inline(always)]
fn hand_on(cookie: u64, back: &SockPeer, sticky: bool) {
    let rto = syn_rto(back);
    let mut flags = 0;
    if sticky {
        flags |= CONNECT_STICKY;
    }
    if rto.is_some_and(|r| r.report_syn != 0) {
        flags |= CONNECT_REPORT_SYN;
    }
    leave(SockConnectNext::new(
        cookie,
        CONNECT_TRANSLATED,
        rto.map_or(0, |r| r.jiffies),
        flags,
    ));
}
