//! Sending a rewritten packet on: the kernel's FIB and neighbour table give the
//! egress interface and both MAC addresses (`bpf_fib_lookup`), then `XDP_TX` when it
//! leaves where it came in, `XDP_REDIRECT` to another interface otherwise.
//!
//! When the lookup cannot complete from XDP (most often `NO_NEIGH`: no ARP entry for the
//! next hop yet) the rewritten packet is passed to the kernel, which forwards it like any
//! routed packet and resolves the neighbour on the way; the next packets find the entry
//! and stay in XDP. Dropping there instead would blackhole a backend until something
//! else happened to ARP for it. The TTL (hop limit) is decremented only on the XDP path
//! (the kernel decrements it itself when it forwards), and a packet whose TTL would
//! expire here is passed so the kernel can send the time-exceeded error.

use aya_ebpf::{
    bindings::{bpf_fib_lookup, xdp_action, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_redirect},
    EbpfContext,
};
use vipd_common::{xdp::stat, AF_INET, AF_INET6};

use crate::{
    xdp_csum::Delta,
    xdp_lb::verdict,
    xdp_maps::count,
    xdp_parse::{ip4, ip6, Packet, Short, ETH_HLEN},
};

/// Forwards the packet (IP header at `ETH_HLEN`, addresses already rewritten).
#[inline(always)]
pub fn send(pkt: &Packet<'_>, v6: bool) -> Result<u32, Short> {
    Ok(if v6 { forward_v6(pkt) } else { forward_v4(pkt) })
}

/// The lookup's verdict: `Some(params)` to send from XDP, `None` to pass.
#[inline(always)]
fn lookup(pkt: &Packet<'_>, p: &mut bpf_fib_lookup) -> Option<()> {
    p.ifindex = pkt.ctx.ingress_ifindex() as u32;
    // SAFETY: a valid context pointer and a parameter block of the size given.
    let rc = unsafe {
        fib_lookup(
            pkt.ctx.as_ptr(),
            p as *mut _,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        count(stat::FIB_PASS);
        return None;
    }
    Some(())
}

/// MACs from the lookup, then out: XDP_TX where it came in, else XDP_REDIRECT.
#[inline(always)]
fn out(pkt: &Packet<'_>, p: &bpf_fib_lookup) -> Result<u32, Short> {
    pkt.set_bytes(0, &p.dmac)?;
    pkt.set_bytes(6, &p.smac)?;
    if p.ifindex == pkt.ctx.ingress_ifindex() as u32 {
        Ok(xdp_action::XDP_TX)
    } else {
        // SAFETY: a plain helper call; it returns XDP_REDIRECT or XDP_ABORTED.
        Ok(unsafe { bpf_redirect(p.ifindex, 0) } as u32)
    }
}

#[inline(never)]
fn forward_v6(pkt: &Packet<'_>) -> u32 {
    verdict(forward_v6_in(pkt))
}

#[inline(always)]
fn forward_v6_in(pkt: &Packet<'_>) -> Result<u32, Short> {
    let ip = ETH_HLEN;
    let [nexthdr, hop] = pkt.bytes::<2>(ip + ip6::NEXTHDR)?;
    if hop <= 1 {
        count(stat::TTL_EXPIRED);
        return Ok(xdp_action::XDP_PASS);
    }
    // SAFETY: bpf_fib_lookup is plain data; all-zero is its documented initial state.
    let mut p: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    p.family = AF_INET6 as u8;
    p.l4_protocol = nexthdr;
    p.__bindgen_anon_1.tot_len = pkt.be16(ip + ip6::PAYLOAD_LEN)? + ip6::HLEN as u16;
    let src = pkt.bytes::<16>(ip + ip6::SADDR)?;
    let dst = pkt.bytes::<16>(ip + ip6::DADDR)?;
    // SAFETY: [u8; 16] and [u32; 4] have the same size; any bits are valid.
    p.__bindgen_anon_3.ipv6_src = unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(src) };
    // SAFETY: as above.
    p.__bindgen_anon_4.ipv6_dst = unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(dst) };
    if lookup(pkt, &mut p).is_none() {
        return Ok(xdp_action::XDP_PASS);
    }
    pkt.set_bytes(ip + ip6::NEXTHDR, &[nexthdr, hop - 1])?;
    out(pkt, &p)
}

#[inline(never)]
fn forward_v4(pkt: &Packet<'_>) -> u32 {
    verdict(forward_v4_in(pkt))
}

#[inline(always)]
fn forward_v4_in(pkt: &Packet<'_>) -> Result<u32, Short> {
    let ip = ETH_HLEN;
    let [ttl, proto] = pkt.bytes::<2>(ip + ip4::TTL)?;
    if ttl <= 1 {
        count(stat::TTL_EXPIRED);
        return Ok(xdp_action::XDP_PASS);
    }
    // SAFETY: bpf_fib_lookup is plain data; all-zero is its documented initial state.
    let mut p: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    p.family = AF_INET as u8;
    p.l4_protocol = proto;
    p.__bindgen_anon_1.tot_len = pkt.be16(ip + ip4::TOT_LEN)?;
    p.__bindgen_anon_2.tos = pkt.bytes::<2>(ip)?[1];
    p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(pkt.bytes::<4>(ip + ip4::SADDR)?);
    p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(pkt.bytes::<4>(ip + ip4::DADDR)?);
    if lookup(pkt, &mut p).is_none() {
        return Ok(xdp_action::XDP_PASS);
    }
    // TTL and protocol share a 16-bit word of the header checksum.
    let old = u16::from_ne_bytes([ttl, proto]);
    let new = u16::from_ne_bytes([ttl - 1, proto]);
    let check = pkt.raw16(ip + ip4::CHECK)?;
    pkt.set_bytes(ip + ip4::TTL, &[ttl - 1, proto])?;
    pkt.set_raw16(ip + ip4::CHECK, Delta::new().word(old, new).apply(check))?;
    out(pkt, &p)
}
