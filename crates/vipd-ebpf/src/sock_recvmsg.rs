//! `vipd_sock_recvmsg4`/`6` (cgroup `recvmsg4`/`recvmsg6`): a UDP datagram from a
//! backend this socket was sent to shows the VIP as its source, so a client that checks
//! where its answer came from (a resolver does) accepts it.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use vipd_common::{sock::stat, AF_INET, AF_INET6};

use crate::{
    sock_addr::{set_user, user},
    sock_maps::count,
    sock_select::{cookie, reverse},
};

#[cgroup_sock_addr(recvmsg4)]
pub fn vipd_sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    reply(&ctx, false)
}

#[cgroup_sock_addr(recvmsg6)]
pub fn vipd_sock_recvmsg6(ctx: SockAddrContext) -> i32 {
    reply(&ctx, true)
}

#[inline(always)]
fn reply(ctx: &SockAddrContext, v6: bool) -> i32 {
    let family = if v6 { AF_INET6 } else { AF_INET } as u8;
    let seen = user(ctx, v6);
    if let Some(vip) = reverse(cookie(ctx), &seen, family) {
        set_user(ctx, v6, &vip);
        count(stat::REPLIES);
    }
    // recvmsg programs must return 1.
    1
}
