//! `vipd_sock_connect4`/`vipd_sock_connect6` (cgroup `connect4`/`connect6`): a TCP or UDP
//! socket connecting to a VIP connects to one of its backends instead. The choice is
//! recorded under the socket's cookie so that `getpeername` (and `recvmsg` on a
//! connected UDP socket) show the VIP. A service without a backend with weight refuses
//! the connect (`EPERM`) rather than letting it go to the VIP's own address.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use vipd_common::{sock::stat, AF_INET, AF_INET6};

use crate::{
    sock_addr::{protocol, set_user, user},
    sock_maps::count,
    sock_select::{choose, cookie, remember_reverse, Choice},
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
        Choice::Backend(to, back) => {
            remember_reverse(cookie(ctx), &to, family, &back);
            set_user(ctx, v6, &to);
            count(stat::CONNECTS);
            ALLOW
        }
    }
}
