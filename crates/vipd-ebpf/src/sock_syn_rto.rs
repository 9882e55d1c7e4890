//! A TCP VIP's initial SYN timeout, from `SOCK_SYN_RTO`; nothing is looked up while no
//! VIP has one (`SOCK_SYN_RTO_VIPS` is 0).

use vipd_common::{
    sock::{SockPeer, SockSynRto},
    IPPROTO_TCP,
};

use crate::{
    sock_addr::Addr,
    sock_maps::{SOCK_SYN_RTO, SOCK_SYN_RTO_VIPS},
    sock_select::service_key,
};

/// The initial SYN timeout of the VIP `rec` was translated from, if it has one.
#[inline(always)]
pub fn syn_rto(rec: &SockPeer) -> Option<SockSynRto> {
    if SOCK_SYN_RTO_VIPS.get(0).is_none_or(|n| *n == 0) {
        return None;
    }
    let vip = Addr {
        addr: rec.addr,
        port: rec.port,
    };
    let (key, _) = service_key(&vip, rec.family, IPPROTO_TCP as u8);
    // SAFETY: a hash map lookup; the value is copied out at once.
    unsafe { SOCK_SYN_RTO.get(&key) }.copied()
}
