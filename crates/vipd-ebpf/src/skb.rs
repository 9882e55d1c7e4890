//! Reading packet headers out of a `struct sk_buff` from a kprobe, at member offsets
//! userspace took from BTF (`SKB` global).

use vipd_common::SkbOffsets;

use crate::{global::global, kernel_read::read};

#[unsafe(no_mangle)]
static SKB: SkbOffsets = SkbOffsets {
    valid: 0,
    head: 0,
    data: 0,
    network_header: 0,
};

/// The offsets, or `None` until userspace has filled them in.
#[inline(always)]
pub fn offsets() -> Option<SkbOffsets> {
    let off = global(&SKB);
    (off.valid == 1).then_some(off)
}

/// `skb->data`.
///
/// # Safety
/// `skb` must be a kernel `struct sk_buff` pointer (reads are checked by the helper).
#[inline(always)]
pub unsafe fn data(skb: *const u8, off: &SkbOffsets) -> Result<*const u8, i32> {
    // SAFETY: see above.
    unsafe { read(skb, off.data) }
}

/// `skb->head + skb->network_header`: the IP header.
///
/// # Safety
/// As for [`data`].
#[inline(always)]
pub unsafe fn network_header(skb: *const u8, off: &SkbOffsets) -> Result<*const u8, i32> {
    // SAFETY: see above.
    unsafe {
        let head: *const u8 = read(skb, off.head)?;
        let nh: u16 = read(skb, off.network_header)?;
        Ok(head.add(nh as usize))
    }
}

/// Source and destination address of an IPv4 header (`[u8; 16]`, first four used).
///
/// # Safety
/// `iph` must point into kernel memory.
#[inline(always)]
pub unsafe fn ipv4_addrs(iph: *const u8) -> Result<([u8; 16], [u8; 16]), i32> {
    let mut s = [0u8; 16];
    let mut d = [0u8; 16];
    // SAFETY: see above.
    unsafe {
        let sa: [u8; 4] = read(iph, 12)?;
        let da: [u8; 4] = read(iph, 16)?;
        s[..4].copy_from_slice(&sa);
        d[..4].copy_from_slice(&da);
    }
    Ok((s, d))
}

/// Source and destination address of an IPv6 header.
///
/// # Safety
/// `ip6h` must point into kernel memory.
#[inline(always)]
pub unsafe fn ipv6_addrs(ip6h: *const u8) -> Result<([u8; 16], [u8; 16]), i32> {
    // SAFETY: see above.
    unsafe { Ok((read(ip6h, 8)?, read(ip6h, 24)?)) }
}

/// Source and destination port of a UDP header, host order.
///
/// # Safety
/// `udph` must point into kernel memory.
#[inline(always)]
pub unsafe fn udp_ports(udph: *const u8) -> Result<(u16, u16), i32> {
    // SAFETY: see above.
    unsafe {
        let s: u16 = read(udph, 0)?;
        let d: u16 = read(udph, 2)?;
        Ok((u16::from_be(s), u16::from_be(d)))
    }
}
