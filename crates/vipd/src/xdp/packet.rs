//! Crafting and checking Ethernet/IPv4 frames in userspace: for the BPF_PROG_TEST_RUN
//! tests and the benchmark's packet generator. Checksums are computed in full here, so
//! a test can tell whether the kernel program's incremental updates are right.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// The Internet checksum of `data` (with `initial` folded in).
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let w = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for b in [src.octets(), dst.octets()] {
        s += u32::from(u16::from_be_bytes([b[0], b[1]]))
            + u32::from(u16::from_be_bytes([b[2], b[3]]));
    }
    s + u32::from(proto) + len as u32
}

/// IPv4 header options of a crafted packet.
#[derive(Debug, Clone, Default)]
pub struct Ipv4Opts {
    /// Header options (padded to a multiple of 4 with zeros).
    pub options: Vec<u8>,
    /// Flags and fragment offset field (e.g. 0x2000 = more fragments).
    pub frag: u16,
    /// 0 means 64.
    pub ttl: u8,
}

/// An Ethernet frame with an IPv4 packet carrying `l4` (whose checksum must already be
/// set).
pub fn ipv4_frame(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8], o: &Ipv4Opts) -> Vec<u8> {
    let mut opts = o.options.clone();
    while !opts.len().is_multiple_of(4) {
        opts.push(0);
    }
    let ihl = 20 + opts.len();
    let mut f = Vec::with_capacity(14 + ihl + l4.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe]); // dst MAC
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // src MAC
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (ihl + l4.len()) as u16;
    let ttl = if o.ttl == 0 { 64 } else { o.ttl };
    let mut ip = vec![0x40 | (ihl / 4) as u8, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&0x1234u16.to_be_bytes());
    ip.extend_from_slice(&o.frag.to_be_bytes());
    ip.extend_from_slice(&[ttl, proto, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    ip.extend_from_slice(&opts);
    let c = checksum(&ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

/// A TCP segment (20-byte header) with its checksum.
pub fn tcp(src: SocketAddrV4, dst: SocketAddrV4, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&src.port().to_be_bytes());
    t.extend_from_slice(&dst.port().to_be_bytes());
    t.extend_from_slice(&1000u32.to_be_bytes());
    t.extend_from_slice(&(if flags & TCP_ACK != 0 { 2000u32 } else { 0 }).to_be_bytes());
    t.extend_from_slice(&[0x50, flags]);
    t.extend_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let c = checksum(&t, pseudo(*src.ip(), *dst.ip(), PROTO_TCP, t.len()));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// A UDP datagram with its checksum.
pub fn udp(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&src.port().to_be_bytes());
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = match checksum(&u, pseudo(*src.ip(), *dst.ip(), PROTO_UDP, u.len())) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// An ICMP echo request (`request`) or reply.
pub fn icmp_echo(request: bool, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![if request { 8 } else { 0 }, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let c = checksum(&m, 0);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ICMP destination unreachable (`code`) quoting the IPv4 packet `quoted` (without
/// its Ethernet header; the first `ihl + 8` bytes are quoted, as Linux quotes more but
/// at least that).
pub fn icmp_unreachable(code: u8, quoted: &[u8]) -> Vec<u8> {
    let mut m = vec![3, code, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(quoted);
    let c = checksum(&m, 0);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// The fields of a frame a test looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub proto: u8,
    /// Ports (TCP/UDP), or (echo id, 0) for ICMP.
    pub sport: u16,
    pub dport: u16,
    pub ihl: usize,
}

/// Parses an Ethernet/IPv4 frame.
pub fn parse(f: &[u8]) -> Option<Parsed> {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let l4 = 14 + ihl;
    let proto = f[23];
    let be = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    let (sport, dport) = if proto == PROTO_ICMP {
        (be(l4 + 4), 0)
    } else {
        (be(l4), be(l4 + 2))
    };
    Some(Parsed {
        dst_mac: f[0..6].try_into().ok()?,
        src_mac: f[6..12].try_into().ok()?,
        src: Ipv4Addr::new(f[26], f[27], f[28], f[29]),
        dst: Ipv4Addr::new(f[30], f[31], f[32], f[33]),
        ttl: f[22],
        proto,
        sport,
        dport,
        ihl,
    })
}

/// Whether the frame's IPv4 header checksum and (for TCP, UDP, ICMP) L4 checksum are
/// right; names the first that is not.
pub fn verify(f: &[u8]) -> Result<(), String> {
    let p = parse(f).ok_or("not IPv4")?;
    let ip = &f[14..14 + p.ihl];
    if checksum(ip, 0) != 0 {
        return Err("IPv4 header checksum".into());
    }
    let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
    let l4 = &f[14 + p.ihl..14 + total];
    let ok = match p.proto {
        PROTO_ICMP => checksum(l4, 0) == 0,
        PROTO_UDP if l4[6..8] == [0, 0] => true,
        PROTO_TCP | PROTO_UDP => checksum(l4, pseudo(p.src, p.dst, p.proto, l4.len())) == 0,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("L4 checksum (protocol {})", p.proto))
    }
}

// ---------------------------------------------------------------------------------------
// IPv6.

pub const PROTO_ICMPV6: u8 = 58;

fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> u32 {
    let mut s = 0u32;
    for a in [src.octets(), dst.octets()] {
        for w in a.chunks(2) {
            s += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
    }
    s + u32::from(proto) + len as u32
}

/// An Ethernet frame with an IPv6 packet (no extension headers unless `l4` starts with
/// them and `nexthdr` says so) carrying `l4`, hop limit 64.
pub fn ipv6_frame(src: Ipv6Addr, dst: Ipv6Addr, nexthdr: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(54 + l4.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xfe]);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f.extend_from_slice(&0x86ddu16.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    f.extend_from_slice(&[nexthdr, 64]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(l4);
    f
}

/// A TCP segment over IPv6 with its checksum.
pub fn tcp6(src: SocketAddrV6, dst: SocketAddrV6, flags: u8) -> Vec<u8> {
    let v4 = |p: u16| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p);
    let mut t = tcp(v4(src.port()), v4(dst.port()), flags, b"");
    t[16..18].copy_from_slice(&[0, 0]);
    let c = checksum(&t, pseudo6(*src.ip(), *dst.ip(), PROTO_TCP, t.len()));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// A UDP datagram over IPv6 with its checksum.
pub fn udp6(src: SocketAddrV6, dst: SocketAddrV6, payload: &[u8]) -> Vec<u8> {
    let v4 = |p: u16| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, p);
    let mut u = udp(v4(src.port()), v4(dst.port()), payload);
    u[6..8].copy_from_slice(&[0, 0]);
    let c = match checksum(&u, pseudo6(*src.ip(), *dst.ip(), PROTO_UDP, u.len())) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

/// An ICMPv6 message of `kind`/`code` with `body` after the 4-byte header, checksummed
/// for `src` -> `dst`.
pub fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, kind: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(body);
    let c = checksum(&m, pseudo6(src, dst, PROTO_ICMPV6, m.len()));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// An ICMPv6 echo request (`request`) or reply.
pub fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr, request: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(&seq.to_be_bytes());
    body.extend_from_slice(b"ping");
    icmp6(src, dst, if request { 128 } else { 129 }, 0, &body)
}

/// Parses an Ethernet/IPv6 frame without extension headers: (src, dst, hop limit,
/// next header, source port or echo id, destination port).
pub fn parse6(f: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, u8, u8, u16, u16)> {
    if f.len() < 58 || f[12..14] != [0x86, 0xdd] {
        return None;
    }
    let a = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&f[o..o + 16]).unwrap());
    let be = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]);
    let (sp, dp) = if f[20] == PROTO_ICMPV6 {
        (be(58), 0)
    } else {
        (be(54), be(56))
    };
    Some((a(22), a(38), f[21], f[20], sp, dp))
}

/// Whether an IPv6 frame's TCP, UDP or ICMPv6 checksum is right.
pub fn verify6(f: &[u8]) -> Result<(), String> {
    let (src, dst, _, nexthdr, _, _) = parse6(f).ok_or("not IPv6")?;
    let len = usize::from(u16::from_be_bytes([f[18], f[19]]));
    let l4 = &f[54..54 + len];
    if checksum(l4, pseudo6(src, dst, nexthdr, len)) == 0 {
        Ok(())
    } else {
        Err(format!("L4 checksum (next header {nexthdr})"))
    }
}
