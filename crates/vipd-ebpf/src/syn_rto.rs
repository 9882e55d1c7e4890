//! cgroup `sock_ops`: the initial retransmission timeout of a connection to a VIP that
//! has one configured. The kernel asks at `BPF_SOCK_OPS_TIMEOUT_INIT` (from
//! `tcp_timeout_init()`, when an active connection is set up and when a listener answers
//! a SYN) and takes the reply, in jiffies, instead of its 1 s default; a reply of 0
//! keeps the default. `TIMEOUT_INIT` needs no callback flags. Only the VIP's own address and port are matched, so a passive
//! socket (whose remote end is a client) is never touched.

use aya_ebpf::{bindings::BPF_SOCK_OPS_TIMEOUT_INIT, macros::sock_ops, programs::SockOpsContext};
use vipd_common::{VipKey, AF_INET, AF_INET6, IPPROTO_TCP};

use crate::{flow::normalise, maps::SYN_RTO};

/// A `sock_ops` program's verdict: let the kernel go on. The reply is read only then.
const CONTINUE: u32 = 1;

#[sock_ops]
pub fn syn_rto(ctx: SockOpsContext) -> u32 {
    if ctx.op() == BPF_SOCK_OPS_TIMEOUT_INIT {
        if let Some(jiffies) = lookup(&ctx) {
            ctx.set_reply(jiffies);
        }
    }
    CONTINUE
}

/// The configured initial RTO (jiffies) of the socket's destination, if it is a VIP
/// that has one.
#[inline(always)]
fn lookup(ctx: &SockOpsContext) -> Option<u32> {
    let family = ctx.family();
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    if family == u32::from(AF_INET) {
        saddr[..4].copy_from_slice(&ctx.local_ip4().to_ne_bytes());
        daddr[..4].copy_from_slice(&ctx.remote_ip4().to_ne_bytes());
    } else if family == u32::from(AF_INET6) {
        let (l, r) = (ctx.local_ip6(), ctx.remote_ip6());
        for i in 0..4 {
            saddr[i * 4..i * 4 + 4].copy_from_slice(&l[i].to_ne_bytes());
            daddr[i * 4..i * 4 + 4].copy_from_slice(&r[i].to_ne_bytes());
        }
    } else {
        return None;
    }
    let mut family = family as u8;
    normalise(&mut family, &mut saddr, &mut daddr);
    let key = VipKey {
        addr: daddr,
        port: remote_port(ctx.remote_port()),
        family,
        protocol: IPPROTO_TCP as u8,
    };
    // SAFETY: a value pointer the map lookup just returned.
    SYN_RTO.get_ptr(&key).map(|v| unsafe { *v })
}

/// `remote_port` is in network byte order; kernels differ in whether it sits in the
/// low or the high 16 bits of the field, and the other half is zero either way.
#[inline(always)]
fn remote_port(raw: u32) -> u16 {
    if raw & 0xffff == 0 {
        u16::from_be((raw >> 16) as u16)
    } else {
        u16::from_be(raw as u16)
    }
}
