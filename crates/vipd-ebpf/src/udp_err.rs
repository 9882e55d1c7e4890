//! kprobes on `udp_err()` (IPv4) and `udpv6_err()` (IPv6): an ICMP error arrived for a
//! UDP datagram. For a datagram IPVS sent to a backend, IPVS has already translated the
//! quoted header back to client → VIP, so the error joins the client's flow in `CONNS`
//! and names the backend that could not be reached.
//!
//! ```c
//! int udp_err(struct sk_buff *skb, u32 info);
//! int udpv6_err(struct sk_buff *skb, struct inet6_skb_parm *opt, u8 type, u8 code,
//!               int offset, __be32 info);
//! ```
//! On entry `skb->data` points at the quoted IP header; for IPv4 the ICMP header is the
//! eight bytes before it (icmp_rcv pulled it), for IPv6 type, code and the quoted UDP
//! header's offset are arguments.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::kprobe, programs::ProbeContext};
use vipd_common::{
    health::{icmp_failure, icmpv6_failure},
    ConnEvent, EventKind, AF_INET, AF_INET6, IPPROTO_UDP,
};

use crate::{emit::emit, flow, kernel_read::read, maps::ICMP6_SEEN, skb};

/// An ICMPv6 error `ip_vs_out_icmp_v6` reported this recently is the same error.
const SEEN_NS: u64 = 100_000_000;

#[kprobe]
pub fn udp_err(ctx: ProbeContext) -> u32 {
    let _ = try_udp_err(&ctx);
    0
}

#[kprobe]
pub fn udpv6_err(ctx: ProbeContext) -> u32 {
    let _ = try_udpv6_err(&ctx);
    0
}

#[inline(always)]
fn try_udp_err(ctx: &ProbeContext) -> Result<(), i32> {
    let Some(off) = skb::offsets() else {
        return Ok(());
    };
    let skb_ptr: *const u8 = ctx.arg(0).ok_or(1)?;
    // SAFETY: every read goes through bpf_probe_read_kernel.
    unsafe {
        let iph = skb::data(skb_ptr, &off)?;
        let icmp_type: u8 = read(iph.sub(8), 0)?;
        let code: u8 = read(iph.sub(8), 1)?;
        if !icmp_failure(icmp_type, code) {
            return Ok(());
        }
        let ihl = (read::<u8>(iph, 0)? & 0x0f) as usize * 4;
        if ihl < 20 || read::<u8>(iph, 9)? != IPPROTO_UDP as u8 {
            return Ok(());
        }
        let (saddr, daddr) = skb::ipv4_addrs(iph)?;
        let (sport, dport) = skb::udp_ports(iph.add(ihl))?;
        report(AF_INET, saddr, daddr, sport, dport, icmp_type, code);
    }
    Ok(())
}

#[inline(always)]
fn try_udpv6_err(ctx: &ProbeContext) -> Result<(), i32> {
    let Some(off) = skb::offsets() else {
        return Ok(());
    };
    let skb_ptr: *const u8 = ctx.arg(0).ok_or(1)?;
    let icmp_type: u64 = ctx.arg(2).ok_or(1)?;
    let code: u64 = ctx.arg(3).ok_or(1)?;
    let offset: u64 = ctx.arg(4).ok_or(1)?;
    let (icmp_type, code) = (icmp_type as u8, code as u8);
    if !icmpv6_failure(icmp_type, code) {
        return Ok(());
    }
    let offset = (offset as u32 & 0xffff) as usize;
    // SAFETY: every read goes through bpf_probe_read_kernel.
    unsafe {
        let ip6h = skb::data(skb_ptr, &off)?;
        let (saddr, daddr) = skb::ipv6_addrs(ip6h)?;
        let (sport, dport) = skb::udp_ports(ip6h.add(offset))?;
        report(AF_INET6, saddr, daddr, sport, dport, icmp_type, code);
    }
    Ok(())
}

/// Emits the error if the datagram went to a watched VIP, with its backend if known.
#[inline(always)]
fn report(
    family: u16,
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: u16,
    dport: u16,
    icmp_type: u8,
    code: u8,
) {
    let mut ev = ConnEvent {
        // SAFETY: a helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        kind: EventKind::IcmpError as u8,
        family: family as u8,
        protocol: IPPROTO_UDP as u8,
        old_state: icmp_type,
        new_state: code,
        sport,
        dport,
        saddr,
        daddr,
        ..ConnEvent::default()
    };
    flow::normalise(&mut ev.family, &mut ev.saddr, &mut ev.daddr);
    if flow::is_ipv6(ev.family) {
        if let Some(at) = ICMP6_SEEN.get_ptr(&flow::flow_key(&ev)) {
            // SAFETY: a value pointer the map lookup just returned.
            if ev.ts_ns.saturating_sub(unsafe { *at }) < SEEN_NS {
                return;
            }
        }
    }
    if flow::watched(&ev) {
        flow::attribute(&mut ev);
        emit(&ev);
    }
}
