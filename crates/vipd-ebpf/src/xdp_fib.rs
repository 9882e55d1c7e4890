//! Sending a rewritten IPv4 packet on: the kernel's FIB and neighbour table give the
//! egress interface and both MAC addresses (`bpf_fib_lookup`), then `XDP_TX` when it
//! leaves where it came in, `XDP_REDIRECT` to another interface otherwise.
//!
//! When the lookup cannot complete from XDP (most often `NO_NEIGH`: no ARP entry for the
//! next hop yet) the rewritten packet is passed to the kernel, which forwards it like any
//! routed packet and resolves the neighbour on the way; the next packets find the entry
//! and stay in XDP. Dropping there instead would blackhole a backend until something
//! else happened to ARP for it. The TTL is decremented only on the XDP path (the kernel
//! decrements it itself when it forwards), and a packet whose TTL would expire here is
//! passed so the kernel can send the time-exceeded error.

use aya_ebpf::{
    bindings::{bpf_fib_lookup, xdp_action, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::generated::{bpf_fib_lookup as fib_lookup, bpf_redirect},
    EbpfContext,
};
use vipd_common::{xdp::stat, AF_INET};

use crate::{
    xdp_csum::Delta,
    xdp_maps::count,
    xdp_parse::{ip4, Packet, Short, ETH_HLEN},
};

/// Forwards the IPv4 packet (IP header at `ETH_HLEN`, addresses already rewritten).
#[inline(always)]
pub fn forward_v4(pkt: &Packet<'_>) -> Result<u32, Short> {
    let ip = ETH_HLEN;
    let [ttl, proto] = pkt.bytes::<2>(ip + ip4::TTL)?;
    if ttl <= 1 {
        count(stat::TTL_EXPIRED);
        return Ok(xdp_action::XDP_PASS);
    }
    let ingress = pkt.ctx.ingress_ifindex() as u32;
    // SAFETY: bpf_fib_lookup is plain data; all-zero is its documented initial state.
    let mut p: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    p.family = AF_INET as u8;
    p.l4_protocol = proto;
    p.__bindgen_anon_1.tot_len = pkt.be16(ip + ip4::TOT_LEN)?;
    p.__bindgen_anon_2.tos = pkt.bytes::<2>(ip)?[1];
    p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(pkt.bytes::<4>(ip + ip4::SADDR)?);
    p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(pkt.bytes::<4>(ip + ip4::DADDR)?);
    p.ifindex = ingress;
    // SAFETY: a valid context pointer and a parameter block of the size given.
    let rc = unsafe {
        fib_lookup(
            pkt.ctx.as_ptr(),
            &mut p as *mut _,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        count(stat::FIB_PASS);
        return Ok(xdp_action::XDP_PASS);
    }
    // TTL and protocol share a 16-bit word of the header checksum.
    let old = u16::from_ne_bytes([ttl, proto]);
    let new = u16::from_ne_bytes([ttl - 1, proto]);
    let check = pkt.raw16(ip + ip4::CHECK)?;
    pkt.set_bytes(ip + ip4::TTL, &[ttl - 1, proto])?;
    pkt.set_raw16(ip + ip4::CHECK, Delta::new().word(old, new).apply(check))?;
    pkt.set_bytes(0, &p.dmac)?;
    pkt.set_bytes(6, &p.smac)?;
    if p.ifindex == ingress {
        Ok(xdp_action::XDP_TX)
    } else {
        // SAFETY: a plain helper call; it returns XDP_REDIRECT or XDP_ABORTED.
        Ok(unsafe { bpf_redirect(p.ifindex, 0) } as u32)
    }
}
