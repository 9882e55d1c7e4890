//! The packets of the conformance suite, built and parsed by hand: a TCP SYN or a UDP
//! datagram in IPv4 or IPv6 (checksums included), and what IPVS forwards of it, either
//! rewritten (masquerade) or encapsulated (IPIP, IPv6-in-IPv6 and the mixed forms).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const TCP: u8 = 6;
const UDP: u8 = 17;
const IPIP: u8 = 4;
const IPV6_IN: u8 = 41;

/// The transport protocol of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn number(self) -> u8 {
        match self {
            Proto::Tcp => TCP,
            Proto::Udp => UDP,
        }
    }
}

/// A 5-tuple: what IPVS schedules and remembers a connection by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    pub proto: Proto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// A packet seen after the director: the address it was sent to (the backend, or the
/// tunnel endpoint), whether it was encapsulated, and the flow it carries (for
/// masquerade the destination is rewritten to the backend's address and port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub to: IpAddr,
    pub tunnelled: bool,
    pub flow: Flow,
}

/// The first packet of `flow`: a TCP SYN (no options) or a UDP datagram with an 8-byte
/// payload, in an IPv4 or IPv6 header with TTL / hop limit 64.
pub fn build(flow: &Flow) -> Vec<u8> {
    let transport = match flow.proto {
        Proto::Tcp => {
            let mut t = vec![0u8; 20];
            t[4..8].copy_from_slice(&0x5eed_0001u32.to_be_bytes()); // sequence number
            t[12] = 5 << 4; // data offset: 5 words
            t[13] = 0x02; // SYN
            t[14..16].copy_from_slice(&65535u16.to_be_bytes()); // window
            t
        }
        Proto::Udp => {
            let mut t = vec![0u8; 8];
            t.extend_from_slice(b"vipdtest");
            let len = t.len() as u16;
            t[4..6].copy_from_slice(&len.to_be_bytes());
            t
        }
    };
    let mut t = transport;
    t[0..2].copy_from_slice(&flow.src.port().to_be_bytes());
    t[2..4].copy_from_slice(&flow.dst.port().to_be_bytes());
    let sum = pseudo_header_sum(flow.src.ip(), flow.dst.ip(), flow.proto.number(), t.len());
    let mut csum = fold(sum + sum16(&t));
    if csum == 0 && flow.proto == Proto::Udp {
        csum = 0xffff; // 0 means "no checksum" in UDP
    }
    let at = if flow.proto == Proto::Tcp { 16 } else { 6 };
    t[at..at + 2].copy_from_slice(&csum.to_be_bytes());
    ip_header(flow.src.ip(), flow.dst.ip(), flow.proto.number(), t)
}

/// `payload` behind an IPv4 or IPv6 header from `src` to `dst`.
pub(crate) fn ip_header(src: IpAddr, dst: IpAddr, proto: u8, payload: Vec<u8>) -> Vec<u8> {
    let mut p = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = vec![0u8; 20];
            h[0] = 0x45;
            h[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
            h[8] = 64;
            h[9] = proto;
            h[12..16].copy_from_slice(&s.octets());
            h[16..20].copy_from_slice(&d.octets());
            let csum = fold(sum16(&h));
            h[10..12].copy_from_slice(&csum.to_be_bytes());
            h
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0u8; 40];
            h[0] = 0x60;
            h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
            h[6] = proto;
            h[7] = 64;
            h[8..24].copy_from_slice(&s.octets());
            h[24..40].copy_from_slice(&d.octets());
            h
        }
        _ => panic!("a flow from {src} to {dst} mixes address families"),
    };
    p.extend_from_slice(&payload);
    p
}

/// The one's-complement sum of big-endian 16-bit words (odd length padded with zero),
/// not yet folded.
pub(crate) fn sum16(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

/// Folds the carries in and complements: the Internet checksum.
pub(crate) fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The sum of the TCP/UDP pseudo-header (RFC 793, RFC 8200 section 8.1).
pub(crate) fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum16(&s.octets()) + sum16(&d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum16(&s.octets()) + sum16(&d.octets()),
        _ => panic!("mixed address families"),
    };
    addrs + u32::from(proto) + len as u32
}

/// Reads a forwarded packet: TCP or UDP over IPv4 or IPv6, possibly inside one IPIP or
/// IPv6-in-IP header. Anything else (ARP, neighbour discovery, ...) is None. Checksums
/// are verified: a packet whose rewrite broke one is an error, not a match.
pub fn parse(p: &[u8]) -> Result<Option<Forwarded>, String> {
    let Some((src, dst, proto, payload)) = ip(p)? else {
        return Ok(None);
    };
    if proto == IPIP || proto == IPV6_IN {
        let Some((isrc, idst, iproto, ipayload)) = ip(payload)? else {
            return Ok(None);
        };
        return Ok(
            transport(isrc, idst, iproto, ipayload)?.map(|flow| Forwarded {
                to: dst,
                tunnelled: true,
                flow,
            }),
        );
    }
    Ok(transport(src, dst, proto, payload)?.map(|flow| Forwarded {
        to: dst,
        tunnelled: false,
        flow,
    }))
}

type Ip<'a> = (IpAddr, IpAddr, u8, &'a [u8]);

/// An IP header's addresses, protocol and payload (IPv6: no extension headers).
fn ip(p: &[u8]) -> Result<Option<Ip<'_>>, String> {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0xf) * 4;
            let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
            if ihl < 20 || total < ihl || p.len() < total {
                return Err(format!("malformed IPv4 header: {p:02x?}"));
            }
            if fold(sum16(&p[..ihl])) != 0 {
                return Err(format!("bad IPv4 header checksum: {p:02x?}"));
            }
            let a = |o: usize| IpAddr::V4(Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]));
            Ok(Some((a(12), a(16), p[9], &p[ihl..total])))
        }
        Some(6) if p.len() >= 40 => {
            let len = usize::from(u16::from_be_bytes([p[4], p[5]]));
            if p.len() < 40 + len {
                return Err(format!("truncated IPv6 packet: {p:02x?}"));
            }
            let a = |o: usize| {
                let b: [u8; 16] = p[o..o + 16].try_into().unwrap();
                IpAddr::V6(Ipv6Addr::from(b))
            };
            Ok(Some((a(8), a(24), p[6], &p[40..40 + len])))
        }
        _ => Ok(None),
    }
}

/// The flow of a TCP or UDP segment, its checksum verified.
fn transport(src: IpAddr, dst: IpAddr, proto: u8, t: &[u8]) -> Result<Option<Flow>, String> {
    let proto = match proto {
        TCP if t.len() >= 20 => Proto::Tcp,
        UDP if t.len() >= 8 => Proto::Udp,
        _ => return Ok(None),
    };
    let sum = pseudo_header_sum(src, dst, proto.number(), t.len()) + sum16(t);
    if fold(sum) != 0 {
        return Err(format!(
            "bad {proto:?} checksum in a packet from {src} to {dst}: {t:02x?}"
        ));
    }
    let port = |o: usize| u16::from_be_bytes([t[o], t[o + 1]]);
    Ok(Some(Flow {
        proto,
        src: SocketAddr::new(src, port(0)),
        dst: SocketAddr::new(dst, port(2)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(proto: Proto, src: &str, dst: &str) -> Flow {
        Flow {
            proto,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
        }
    }

    #[test]
    fn ipv4_header_checksum_matches_a_known_value() {
        // A commonly used worked example (UDP, 192.168.0.1 -> 192.168.0.199): b861.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(fold(sum16(&h)), 0xb861);
    }

    #[test]
    fn built_packets_parse_back_with_valid_checksums() {
        for f in [
            flow(Proto::Tcp, "198.18.96.1:40000", "198.18.93.10:80"),
            flow(Proto::Udp, "198.18.96.7:1", "198.18.93.10:53"),
            flow(Proto::Tcp, "[fd00:18:96::1]:40000", "[fd00:18:93::10]:80"),
            flow(Proto::Udp, "[fd00:18:96::ff]:65535", "[fd00:18:93::10]:53"),
        ] {
            let p = build(&f);
            let got = parse(&p).unwrap().unwrap();
            assert_eq!(got.flow, f);
            assert_eq!(got.to, f.dst.ip());
            assert!(!got.tunnelled);
        }
    }

    #[test]
    fn a_syn_has_only_the_syn_flag() {
        let p = build(&flow(Proto::Tcp, "198.18.96.1:40000", "198.18.93.10:80"));
        assert_eq!(p.len(), 40);
        assert_eq!(p[20 + 13], 0x02);
    }

    #[test]
    fn a_corrupted_packet_is_an_error() {
        let mut p = build(&flow(Proto::Udp, "198.18.96.1:40000", "198.18.93.10:53"));
        let last = p.len() - 1;
        p[last] ^= 1;
        assert!(parse(&p).unwrap_err().contains("bad Udp checksum"));
    }

    #[test]
    fn an_encapsulated_packet_names_the_tunnel_endpoint() {
        let inner = flow(Proto::Tcp, "[fd00:18:96::1]:40000", "[fd00:18:93::10]:80");
        let outer = ip_header(
            "fd00:18:91::1".parse().unwrap(),
            "fd00:18:92::2".parse().unwrap(),
            IPV6_IN,
            build(&inner),
        );
        let got = parse(&outer).unwrap().unwrap();
        assert_eq!(got.to, "fd00:18:92::2".parse::<IpAddr>().unwrap());
        assert!(got.tunnelled);
        assert_eq!(got.flow, inner);
    }

    #[test]
    fn other_packets_are_ignored() {
        assert_eq!(parse(&[0, 1, 8, 0, 6, 4]).unwrap(), None); // ARP
        let icmp = ip_header(
            "198.18.91.1".parse().unwrap(),
            "198.18.91.2".parse().unwrap(),
            1,
            vec![8, 0, 0, 0],
        );
        assert_eq!(parse(&icmp).unwrap(), None);
    }
}
