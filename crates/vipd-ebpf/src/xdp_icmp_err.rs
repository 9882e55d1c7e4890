//! ICMP destination unreachable from a backend's side about one of our flows: a health
//! signal (UDP port unreachable when nothing listens, host or network unreachable from a
//! router before it), and a packet the client must still get, translated like a reply.
//!
//! The error quotes the packet that caused it: the client's packet as the backend got
//! it (client -> backend:port). The quoted destination address and port go back to the
//! VIP's, the quoted IPv4 checksum and (when quoted) the L4 checksum follow, the ICMP
//! checksum follows all of that, and the outer source becomes the VIP when the backend
//! itself sent the error. "Fragmentation needed" (code 4) is translated but is not a
//! failure, so it is not reported.

use aya_ebpf::bindings::xdp_action;
use vipd_common::{
    xdp::{stat, XdpHealthKind, XdpTuple, IPPROTO_ICMP},
    AF_INET, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::{
    xdp_csum::Delta,
    xdp_fib::forward_v4,
    xdp_flow,
    xdp_lb::{addr16, addr4, rewrite_v4, V4},
    xdp_maps::{count, XDP_REPLIES},
    xdp_parse::{ip4, l4, Packet, Short, ETH_HLEN},
};

const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_ECHO: u8 = 8;

#[inline(always)]
fn not_ours() -> Result<u32, Short> {
    count(stat::NOT_OURS);
    Ok(xdp_action::XDP_PASS)
}

/// An ICMPv4 destination unreachable (the outer header parsed into `h`).
#[inline(always)]
pub fn from_backend_v4(pkt: &Packet<'_>, h: &V4) -> Result<u32, Short> {
    let [kind, code] = pkt.bytes::<2>(h.l4)?;
    let inner = h.l4 + 8;
    let vihl = pkt.bytes::<2>(inner)?[0];
    let iihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || iihl < 20 {
        return not_ours();
    }
    let iproto = pkt.bytes::<2>(inner + ip4::TTL)?[1];
    let isrc = pkt.bytes::<4>(inner + ip4::SADDR)?;
    let idst = pkt.bytes::<4>(inner + ip4::DADDR)?;
    let il4 = inner + iihl;
    let (isport, idport) = if iproto == IPPROTO_TCP as u8 || iproto == IPPROTO_UDP as u8 {
        (pkt.be16(il4 + l4::SPORT)?, pkt.be16(il4 + l4::DPORT)?)
    } else if iproto == IPPROTO_ICMP && pkt.bytes::<2>(il4)?[0] == ICMP_ECHO {
        (pkt.be16(il4 + l4::ICMP_ID)?, 0)
    } else {
        return not_ours();
    };
    // The quoted packet went client -> backend; its replies are keyed backend -> client.
    let t = XdpTuple {
        src: addr16(idst),
        dst: addr16(isrc),
        sport: idport,
        dport: isport,
        family: AF_INET as u8,
        protocol: iproto,
        _pad: [0; 2],
    };
    let Some(rep) = XDP_REPLIES.get_ptr(&t) else {
        return not_ours();
    };
    // SAFETY: a value pointer the lookup just returned.
    let rep = unsafe { *rep };
    if !pkt.ipv4_checksum_ok(ETH_HLEN, h.ihl)? {
        count(stat::BAD_CHECKSUM);
        return Ok(xdp_action::XDP_DROP);
    }
    if code != ICMP_FRAG_NEEDED {
        let (ct, cf) = xdp_flow::from_reply(&t, &rep);
        xdp_flow::health(XdpHealthKind::Unreachable, &ct, &cf, (kind, code));
    }

    let vip = addr4(&rep.vip);
    // The quoted header: destination address, its checksum, the destination port and
    // the quoted L4 checksum, each change also summed into the ICMP checksum.
    let d_addr = Delta::new().bytes(&idst, &vip);
    let old_icheck = pkt.raw16(inner + ip4::CHECK)?;
    let new_icheck = d_addr.apply(old_icheck);
    let mut icmp = d_addr.word(old_icheck, new_icheck);
    pkt.set_bytes(inner + ip4::DADDR, &vip)?;
    pkt.set_raw16(inner + ip4::CHECK, new_icheck)?;
    if iproto != IPPROTO_ICMP {
        let old_port = pkt.raw16(il4 + l4::DPORT)?;
        let new_port = rep.vport.to_be();
        pkt.set_raw16(il4 + l4::DPORT, new_port)?;
        icmp = icmp.word(old_port, new_port);
        let d_l4 = d_addr.word(old_port, new_port);
        let check_at = if iproto == IPPROTO_UDP as u8 {
            il4 + l4::UDP_CHECK
        } else {
            il4 + l4::TCP_CHECK
        };
        if pkt.has(check_at, 2) {
            let old = pkt.raw16(check_at)?;
            let new = if iproto == IPPROTO_UDP as u8 {
                d_l4.apply_udp(old)
            } else {
                d_l4.apply(old)
            };
            pkt.set_raw16(check_at, new)?;
            icmp = icmp.word(old, new);
        }
    }
    let c = pkt.raw16(h.l4 + l4::ICMP_CHECK)?;
    pkt.set_raw16(h.l4 + l4::ICMP_CHECK, icmp.apply(c))?;
    if h.saddr == idst {
        // Sent by the backend itself: it comes from the VIP, as the client expects.
        rewrite_v4(pkt, h, false, vip, 0)?;
    }
    let action = forward_v4(pkt)?;
    if action != xdp_action::XDP_PASS {
        count(stat::REPLIED);
    }
    Ok(action)
}
