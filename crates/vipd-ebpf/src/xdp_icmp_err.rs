//! ICMP destination unreachable (and ICMPv6 packet too big) from a backend's side about
//! one of our flows: a health signal (UDP port unreachable when nothing listens, host or
//! network unreachable from a router before it), and a packet the client must still get,
//! translated like a reply.
//!
//! The error quotes the packet that caused it: the client's packet as the backend got
//! it (client -> backend:port). The quoted destination address and port go back to the
//! VIP's, the quoted IPv4 checksum and (when quoted) the L4 checksum follow, the ICMP
//! checksum follows all of that, and the outer source becomes the VIP when the backend
//! itself sent the error (for ICMPv6 that also moves the checksum, whose pseudo-header
//! holds it). "Fragmentation needed" and "packet too big" are translated (path MTU
//! discovery must keep working through the VIP) but are not failures, so not reported.

use aya_ebpf::bindings::xdp_action;
use vipd_common::{
    xdp::{stat, XdpHealthKind, XdpReply, XdpTuple, IPPROTO_ICMP, IPPROTO_ICMPV6},
    IPPROTO_TCP, IPPROTO_UDP,
};

use crate::{
    xdp_csum::Delta,
    xdp_fib::send,
    xdp_flow,
    xdp_lb::{addr16, verdict, L3},
    xdp_maps::{count, XDP_REPLIES},
    xdp_parse::{ip4, ip6, l4, Packet, Short},
    xdp_rewrite::rewrite,
};

const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_ECHO: u8 = 8;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const ICMPV6_ECHO: u8 = 128;

#[inline(always)]
fn not_ours() -> Result<u32, Short> {
    count(stat::NOT_OURS);
    Ok(xdp_action::XDP_PASS)
}

/// The quoted packet's header, as parsed.
struct Quoted {
    /// Offset of its IP header and of its L4 header.
    ip: usize,
    l4: usize,
    proto: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// An ICMPv4 destination unreachable (the outer header parsed into `h`).
#[inline(never)]
pub fn from_backend_v4(pkt: &Packet<'_>, h: &L3) -> u32 {
    verdict(from_backend_v4_in(pkt, h))
}

#[inline(always)]
fn from_backend_v4_in(pkt: &Packet<'_>, h: &L3) -> Result<u32, Short> {
    let inner = h.l4 + 8;
    let vihl = pkt.bytes::<2>(inner)?[0];
    let iihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || iihl < 20 {
        return not_ours();
    }
    let q = Quoted {
        ip: inner,
        l4: inner + iihl,
        proto: pkt.bytes::<2>(inner + ip4::TTL)?[1],
        src: addr16(pkt.bytes::<4>(inner + ip4::SADDR)?),
        dst: addr16(pkt.bytes::<4>(inner + ip4::DADDR)?),
    };
    translate(pkt, h, &q, ICMP_FRAG_NEEDED)
}

/// An ICMPv6 destination unreachable or packet too big.
#[inline(never)]
pub fn from_backend_v6(pkt: &Packet<'_>, h: &L3) -> u32 {
    verdict(from_backend_v6_in(pkt, h))
}

#[inline(always)]
fn from_backend_v6_in(pkt: &Packet<'_>, h: &L3) -> Result<u32, Short> {
    let inner = h.l4 + 8;
    if pkt.bytes::<2>(inner)?[0] >> 4 != 6 {
        return not_ours();
    }
    let q = Quoted {
        ip: inner,
        l4: inner + ip6::HLEN,
        proto: pkt.bytes::<2>(inner + ip6::NEXTHDR)?[0],
        src: pkt.bytes::<16>(inner + ip6::SADDR)?,
        dst: pkt.bytes::<16>(inner + ip6::DADDR)?,
    };
    translate(pkt, h, &q, 0xff)
}

/// `not_failure`: the ICMPv4 code that only reports a path MTU (ICMPv6 has a type).
#[inline(always)]
fn translate(pkt: &Packet<'_>, h: &L3, q: &Quoted, not_failure: u8) -> Result<u32, Short> {
    let (echo, icmp_proto) = if h.v6 {
        (ICMPV6_ECHO, IPPROTO_ICMPV6)
    } else {
        (ICMP_ECHO, IPPROTO_ICMP)
    };
    let (isport, idport) = if q.proto == IPPROTO_TCP as u8 || q.proto == IPPROTO_UDP as u8 {
        (pkt.be16(q.l4 + l4::SPORT)?, pkt.be16(q.l4 + l4::DPORT)?)
    } else if q.proto == icmp_proto && pkt.bytes::<2>(q.l4)?[0] == echo {
        (pkt.be16(q.l4 + l4::ICMP_ID)?, 0)
    } else {
        return not_ours();
    };
    // The quoted packet went client -> backend; its replies are keyed backend -> client.
    let t = XdpTuple {
        src: q.dst,
        dst: q.src,
        sport: idport,
        dport: isport,
        family: h.family(),
        protocol: q.proto,
        _pad: [0; 2],
    };
    let Some(rep) = XDP_REPLIES.get_ptr(&t) else {
        return not_ours();
    };
    // SAFETY: a value pointer the lookup just returned.
    let rep = unsafe { &*rep };
    if !h.header_ok(pkt)? {
        count(stat::BAD_CHECKSUM);
        return Ok(xdp_action::XDP_DROP);
    }
    let [kind, code] = pkt.bytes::<2>(h.l4)?;
    let mtu_only = if h.v6 {
        kind == ICMPV6_PKT_TOOBIG
    } else {
        code == not_failure
    };
    if !mtu_only {
        xdp_flow::health_reply(
            XdpHealthKind::Unreachable,
            &t,
            rep,
            u16::from(kind) << 8 | u16::from(code),
        );
    }
    if !quoted(pkt, h, q, rep) {
        return Err(Short);
    }
    if h.saddr == q.dst {
        // Sent by the backend itself: it comes from the VIP, as the client expects.
        rewrite(pkt, h, false, &rep.vip, 0)?;
    }
    let action = send(pkt, h.v6)?;
    if action != xdp_action::XDP_PASS {
        count(stat::REPLIED);
    }
    Ok(action)
}

/// Rewrites the quoted packet back to the VIP; false if the packet is short. Not
/// inlined (its own stack frame).
#[inline(never)]
fn quoted(pkt: &Packet<'_>, h: &L3, q: &Quoted, rep: &XdpReply) -> bool {
    quoted_in(pkt, h, q, rep).is_ok()
}

#[inline(always)]
fn quoted_in(pkt: &Packet<'_>, h: &L3, q: &Quoted, rep: &XdpReply) -> Result<(), Short> {
    let icmp_proto = if h.v6 { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };

    // The quoted header: destination address (and for IPv4 its header checksum), the
    // destination port and the quoted L4 checksum, each change also summed into the
    // ICMP checksum.
    let (d_addr, mut icmp) = if h.v6 {
        pkt.set_bytes(q.ip + ip6::DADDR, &rep.vip)?;
        let d = Delta::new().bytes(&q.dst, &rep.vip);
        (d, d)
    } else {
        let old = [q.dst[0], q.dst[1], q.dst[2], q.dst[3]];
        let vip = [rep.vip[0], rep.vip[1], rep.vip[2], rep.vip[3]];
        let d = Delta::new().bytes(&old, &vip);
        let old_check = pkt.raw16(q.ip + ip4::CHECK)?;
        let new_check = d.apply(old_check);
        pkt.set_bytes(q.ip + ip4::DADDR, &vip)?;
        pkt.set_raw16(q.ip + ip4::CHECK, new_check)?;
        (d, d.word(old_check, new_check))
    };
    if q.proto != icmp_proto {
        let old_port = pkt.raw16(q.l4 + l4::DPORT)?;
        let new_port = rep.vport.to_be();
        pkt.set_raw16(q.l4 + l4::DPORT, new_port)?;
        icmp = icmp.word(old_port, new_port);
        let d_l4 = d_addr.word(old_port, new_port);
        let udp = q.proto == IPPROTO_UDP as u8;
        let check_at = q.l4 + if udp { l4::UDP_CHECK } else { l4::TCP_CHECK };
        if pkt.has(check_at, 2) {
            let old = pkt.raw16(check_at)?;
            let new = if udp {
                d_l4.apply_udp(old)
            } else {
                d_l4.apply(old)
            };
            pkt.set_raw16(check_at, new)?;
            icmp = icmp.word(old, new);
        }
    } else if h.v6 {
        // A quoted ICMPv6 echo's checksum covers its pseudo-header too.
        let old = pkt.raw16(q.l4 + l4::ICMP_CHECK)?;
        let new = d_addr.apply(old);
        pkt.set_raw16(q.l4 + l4::ICMP_CHECK, new)?;
        icmp = icmp.word(old, new);
    }
    let c = pkt.raw16(h.l4 + l4::ICMP_CHECK)?;
    pkt.set_raw16(h.l4 + l4::ICMP_CHECK, icmp.apply(c))
}
