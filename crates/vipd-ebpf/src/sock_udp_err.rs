//! `vipd_sock_icmp4` and `vipd_sock_icmp6` (fentry on `udp_err` and `icmpv6_notify`):
//! an ICMP error arrived about a UDP datagram this host sent (for IPv6, any ICMPv6
//! error: `udpv6_err`, which it hands UDP's to, is not open to ftrace). For a datagram
//! an unconnected socket sent through a VIP, the send hook recorded the flow in
//! `SOCK_UDP_FLOWS` (the socket's port and the backend); the error quotes the
//! datagram's header, whose source port and destination find that record, so the error
//! names the service and the backend that could not take it. The kernel raises nothing
//! on an unconnected socket (unless it asked for errors, and then it has no peer to find
//! its translation by), so this is the only sign. A connected socket's errors are `sock_error`'s, found by the
//! socket's cookie; its flow is not recorded here, so no error is reported twice.
//!
//! ```c
//! int udp_err(struct sk_buff *skb, u32 info);
//! void icmpv6_notify(struct sk_buff *skb, u8 type, u8 code, __be32 info);
//! ```
//! On entry `skb->data` points at the quoted IP header; for IPv4 the ICMP header is the
//! eight bytes before it (`icmp_rcv` pulled it), for IPv6 type and code are arguments.
//! `skb->data` is read at its offset in this kernel's `struct sk_buff`, from BTF (`SKB`,
//! as the watcher's UDP hooks read it); unset, the programs do nothing.

use aya_ebpf::{macros::fentry, programs::FEntryContext};
use vipd_common::{
    health::{icmp_failure, icmpv6_failure},
    sock::SockPeer,
    SkbOffsets, AF_INET, AF_INET6, IPPROTO_UDP,
};

use crate::{
    kernel_read::read,
    skb::{self, offsets},
    sock_addr::Addr,
    sock_health::emit_unreachable,
    sock_maps::SOCK_UDP_FLOWS,
    sock_select::flow_key,
};

#[fentry(function = "udp_err")]
pub fn vipd_sock_icmp4(ctx: FEntryContext) -> u32 {
    if let Some(off) = offsets() {
        let skb: *const u8 = ctx.arg(0);
        // SAFETY: udp_err's first argument is a struct sk_buff *; every read goes
        // through bpf_probe_read_kernel.
        let _ = unsafe { v4(skb, &off) };
    }
    0
}

#[fentry(function = "icmpv6_notify")]
pub fn vipd_sock_icmp6(ctx: FEntryContext) -> u32 {
    if let Some(off) = offsets() {
        let skb: *const u8 = ctx.arg(0);
        let icmp_type: u8 = ctx.arg(1);
        let code: u8 = ctx.arg(2);
        if icmpv6_failure(icmp_type, code) {
            // SAFETY: as above.
            let _ = unsafe { v6(skb, &off, (icmp_type, code)) };
        }
    }
    0
}

/// # Safety
/// `skb` must be a kernel `struct sk_buff *` (reads are checked by the helper).
#[inline(always)]
unsafe fn v4(skb: *const u8, off: &SkbOffsets) -> Result<(), i32> {
    // SAFETY: see above, for every read here.
    unsafe {
        let iph = skb::data(skb, off)?;
        let icmp_type: u8 = read(iph.sub(8), 0)?;
        let code: u8 = read(iph.sub(8), 1)?;
        if !icmp_failure(icmp_type, code) {
            return Ok(());
        }
        let ihl = u16::from(read::<u8>(iph, 0)? & 0x0f) * 4;
        if ihl < 20 || u16::from(read::<u8>(iph, 9)?) != IPPROTO_UDP {
            return Ok(());
        }
        let (client, backend) = skb::ipv4_addrs(iph)?;
        let ports = skb::udp_ports(iph.add(usize::from(ihl)))?;
        report(AF_INET, client, backend, ports, (icmp_type, code));
    }
    Ok(())
}

/// # Safety
/// As for [`v4`].
#[inline(always)]
unsafe fn v6(skb: *const u8, off: &SkbOffsets, icmp: (u8, u8)) -> Result<(), i32> {
    // SAFETY: see above, for every read here.
    unsafe {
        let ip6h = skb::data(skb, off)?;
        // UDP right after the quoted header; a datagram with extension headers before
        // its UDP header is not looked at.
        if u16::from(read::<u8>(ip6h, 6)?) != IPPROTO_UDP {
            return Ok(());
        }
        let (client, backend) = skb::ipv6_addrs(ip6h)?;
        let ports = skb::udp_ports(ip6h.add(40))?;
        report(AF_INET6, client, backend, ports, icmp);
    }
    Ok(())
}

/// Reports the error if the datagram was one a socket sent through a VIP. `ports` are
/// the quoted UDP header's source and destination.
#[inline(always)]
fn report(family: u16, client: [u8; 16], backend: [u8; 16], ports: (u16, u16), icmp: (u8, u8)) {
    let (client_port, backend_port) = ports;
    let backend = Addr {
        addr: backend,
        port: backend_port,
    };
    let key = flow_key(&backend, client_port, family as u8);
    // SAFETY: a hash map lookup; the value is copied out at once.
    let Some(rec): Option<SockPeer> = (unsafe { SOCK_UDP_FLOWS.get(&key) }).copied() else {
        return;
    };
    let local = Addr {
        addr: client,
        port: client_port,
    };
    emit_unreachable(&rec, family as u8, &local, &backend, icmp);
}
