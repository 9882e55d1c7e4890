//! Rewriting a packet's source or destination address and port, with every checksum
//! that covers them: the IPv4 header checksum, the TCP/UDP checksum (pseudo-header and
//! port), and the ICMPv6 checksum (pseudo-header). ICMPv4 covers neither addresses nor a
//! port, so an echo keeps its checksum; the echo identifier is never changed.

use vipd_common::{xdp::IPPROTO_ICMP, xdp::IPPROTO_ICMPV6, IPPROTO_TCP};

use crate::{
    xdp_csum::Delta,
    xdp_lb::L3,
    xdp_parse::{ip4, ip6, l4, Packet, Short, ETH_HLEN},
};

/// Rewrites the destination (`dst`) or the source to `addr` (IPv4: first four bytes)
/// and `port` (ignored for ICMP). Not inlined, to keep its temporaries out of its
/// callers' stack frames (a plain `bool` result, as BPF calls allow no more).
#[inline(never)]
fn rewrite_call(pkt: &Packet<'_>, h: &L3, dst: bool, addr: &[u8; 16], port: u16) -> bool {
    rewrite_in(pkt, h, dst, addr, port).is_ok()
}

/// See [`rewrite_call`].
#[inline(always)]
pub fn rewrite(
    pkt: &Packet<'_>,
    h: &L3,
    dst: bool,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), Short> {
    if rewrite_call(pkt, h, dst, addr, port) {
        Ok(())
    } else {
        Err(Short)
    }
}

#[inline(always)]
fn rewrite_in(
    pkt: &Packet<'_>,
    h: &L3,
    dst: bool,
    addr: &[u8; 16],
    port: u16,
) -> Result<(), Short> {
    let ip = ETH_HLEN;
    let d = if h.v6 {
        let off = ip + if dst { ip6::DADDR } else { ip6::SADDR };
        let old = pkt.bytes::<16>(off)?;
        pkt.set_bytes(off, addr)?;
        Delta::new().bytes(&old, addr)
    } else {
        let off = ip + if dst { ip4::DADDR } else { ip4::SADDR };
        let old = pkt.bytes::<4>(off)?;
        let new = [addr[0], addr[1], addr[2], addr[3]];
        let d = Delta::new().bytes(&old, &new);
        let check = pkt.raw16(ip + ip4::CHECK)?;
        pkt.set_raw16(ip + ip4::CHECK, d.apply(check))?;
        pkt.set_bytes(off, &new)?;
        d
    };
    if h.proto == IPPROTO_ICMP {
        return Ok(());
    }
    if h.proto == IPPROTO_ICMPV6 {
        let c = pkt.raw16(h.l4 + l4::ICMP_CHECK)?;
        return pkt.set_raw16(h.l4 + l4::ICMP_CHECK, d.apply(c));
    }
    let port_off = h.l4 + if dst { l4::DPORT } else { l4::SPORT };
    let new_port = port.to_be();
    let d = d.word(pkt.raw16(port_off)?, new_port);
    pkt.set_raw16(port_off, new_port)?;
    if h.proto == IPPROTO_TCP as u8 {
        let c = pkt.raw16(h.l4 + l4::TCP_CHECK)?;
        pkt.set_raw16(h.l4 + l4::TCP_CHECK, d.apply(c))
    } else {
        let c = pkt.raw16(h.l4 + l4::UDP_CHECK)?;
        pkt.set_raw16(h.l4 + l4::UDP_CHECK, d.apply_udp(c))
    }
}
