//! `vipd_sock_getpeername4`/`6` (cgroup `getpeername4`/`getpeername6`): a socket that
//! connected to a VIP sees the VIP as its peer, not the backend it was sent to.

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use vipd_common::{sock::stat, AF_INET, AF_INET6};

use crate::{
    sock_addr::{set_user, user},
    sock_maps::count,
    sock_select::{cookie, reverse},
};

#[cgroup_sock_addr(getpeername4)]
pub fn vipd_sock_getpeername4(ctx: SockAddrContext) -> i32 {
    peer(&ctx, false)
}

#[cgroup_sock_addr(getpeername6)]
pub fn vipd_sock_getpeername6(ctx: SockAddrContext) -> i32 {
    peer(&ctx, true)
}

/// Shows the VIP in place of the backend this socket was translated to. Used by
/// `recvmsg` too: a datagram from the backend shows the VIP as its source.
#[inline(always)]
pub fn peer(ctx: &SockAddrContext, v6: bool) -> i32 {
    let family = if v6 { AF_INET6 } else { AF_INET } as u8;
    let seen = user(ctx, v6);
    if let Some(vip) = reverse(cookie(ctx), &seen, family) {
        set_user(ctx, v6, &vip);
        count(stat::PEERNAMES);
    }
    1
}
