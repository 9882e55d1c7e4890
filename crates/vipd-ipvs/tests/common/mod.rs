//! Builders for kernel-like netlink bytes, written independently of the crate's encoder so
//! tests compare the crate against a second reading of the header.
//!
//! Shared by the integration tests and (through `#[path]`) the client's unit tests.
#![allow(dead_code)]

/// `struct nlattr` with payload and zero padding to 4 bytes, host byte order.
pub fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut v = Vec::new();
    v.extend_from_slice(&(len as u16).to_ne_bytes());
    v.extend_from_slice(&kind.to_ne_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

/// A nest as the kernel writes it (`nla_nest_start_noflag`: no `NLA_F_NESTED`).
pub fn nest(kind: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    nla(kind, &parts.concat())
}

pub fn a_u8(kind: u16, v: u8) -> Vec<u8> {
    nla(kind, &[v])
}
pub fn a_u16(kind: u16, v: u16) -> Vec<u8> {
    nla(kind, &v.to_ne_bytes())
}
pub fn a_be16(kind: u16, v: u16) -> Vec<u8> {
    nla(kind, &v.to_be_bytes())
}
pub fn a_u32(kind: u16, v: u32) -> Vec<u8> {
    nla(kind, &v.to_ne_bytes())
}
pub fn a_u64(kind: u16, v: u64) -> Vec<u8> {
    nla(kind, &v.to_ne_bytes())
}
pub fn a_str(kind: u16, s: &str) -> Vec<u8> {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    nla(kind, &b)
}
/// `union nf_inet_addr`: 16 bytes.
pub fn a_addr(kind: u16, ip: std::net::IpAddr) -> Vec<u8> {
    let mut b = [0u8; 16];
    match ip {
        std::net::IpAddr::V4(a) => b[..4].copy_from_slice(&a.octets()),
        std::net::IpAddr::V6(a) => b.copy_from_slice(&a.octets()),
    }
    nla(kind, &b)
}

/// `struct nlmsghdr` + payload, padded to 4 bytes.
pub fn nlmsg(msg_type: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut v = Vec::new();
    v.extend_from_slice(&(len as u32).to_ne_bytes());
    v.extend_from_slice(&msg_type.to_ne_bytes());
    v.extend_from_slice(&flags.to_ne_bytes());
    v.extend_from_slice(&seq.to_ne_bytes());
    v.extend_from_slice(&4242u32.to_ne_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

/// `struct genlmsghdr` (version 1) + attributes.
pub fn genl(cmd: u8, attrs: &[u8]) -> Vec<u8> {
    let mut v = vec![cmd, 1, 0, 0];
    v.extend_from_slice(attrs);
    v
}

pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_CAPPED: u16 = 0x100;
pub const NLM_F_ACK_TLVS: u16 = 0x200;

/// `NLMSG_ERROR` as sent with `NETLINK_CAP_ACK`: error, then the request's header only.
pub fn nlmsgerr(seq: u32, error: i32, flags: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut p = error.to_ne_bytes().to_vec();
    // The echoed request header.
    p.extend_from_slice(&nlmsg(0x20, 5, seq, &[])[..16]);
    p.extend_from_slice(tlvs);
    nlmsg(NLMSG_ERROR, flags, seq, &p)
}

pub fn ack(seq: u32) -> Vec<u8> {
    nlmsgerr(seq, 0, NLM_F_CAPPED, &[])
}

pub fn done(seq: u32, code: i32) -> Vec<u8> {
    nlmsg(NLMSG_DONE, NLM_F_MULTI, seq, &code.to_ne_bytes())
}

/// Stats nest the way `ip_vs_genl_fill_stats` writes it: u32 counters except the u64 byte
/// counters, with an `IPVS_STATS_ATTR_PAD` before each u64 (as on architectures without
/// efficient unaligned access).
pub fn stats32(kind: u16, v: [u64; 10]) -> Vec<u8> {
    let pad = nla(11, &[]);
    nest(
        kind,
        &[
            a_u32(1, v[0] as u32),
            a_u32(2, v[1] as u32),
            a_u32(3, v[2] as u32),
            pad.clone(),
            a_u64(4, v[3]),
            pad,
            a_u64(5, v[4]),
            a_u32(6, v[5] as u32),
            a_u32(7, v[6] as u32),
            a_u32(8, v[7] as u32),
            a_u32(9, v[8] as u32),
            a_u32(10, v[9] as u32),
        ],
    )
}

/// Stats nest the way `ip_vs_genl_fill_stats64` writes it: all u64.
pub fn stats64(kind: u16, v: [u64; 10]) -> Vec<u8> {
    let parts: Vec<Vec<u8>> = v
        .iter()
        .enumerate()
        .map(|(i, x)| a_u64(i as u16 + 1, *x))
        .collect();
    nest(kind, &parts)
}

/// Service attributes in `ip_vs_genl_fill_service` order, for an address-keyed service.
#[allow(clippy::too_many_arguments)]
pub fn kernel_service_addr(
    af: u16,
    proto: u16,
    addr: std::net::IpAddr,
    port: u16,
    sched: &str,
    pe: Option<&str>,
    flags: u32,
    timeout: u32,
    netmask: [u8; 4],
    stats: Option<([u64; 10], [u64; 10])>,
) -> Vec<u8> {
    let mut parts = vec![
        a_u16(1, af),
        a_u16(2, proto),
        a_addr(3, addr),
        a_be16(4, port),
        a_str(6, sched),
    ];
    if let Some(pe) = pe {
        parts.push(a_str(11, pe));
    }
    let mut fl = flags.to_ne_bytes().to_vec();
    fl.extend_from_slice(&u32::MAX.to_ne_bytes());
    parts.push(nla(7, &fl));
    parts.push(a_u32(8, timeout));
    parts.push(nla(9, &netmask));
    if let Some((s32, s64)) = stats {
        parts.push(stats32(10, s32));
        parts.push(stats64(12, s64));
    }
    nest(1, &parts)
}

/// Destination attributes in `ip_vs_genl_fill_dest` order.
#[allow(clippy::too_many_arguments)]
pub fn kernel_dest(
    addr: std::net::IpAddr,
    port: u16,
    fwd: u32,
    weight: u32,
    tun: (u8, u16, u16),
    thresholds: (u32, u32),
    conns: (u32, u32, u32),
    af: Option<u16>,
    stats: Option<[u64; 10]>,
) -> Vec<u8> {
    let mut parts = vec![
        a_addr(1, addr),
        a_be16(2, port),
        a_u32(3, fwd),
        a_u32(4, weight),
        a_u8(13, tun.0),
        a_be16(14, tun.1),
        a_u16(15, tun.2),
        a_u32(5, thresholds.0),
        a_u32(6, thresholds.1),
        a_u32(7, conns.0),
        a_u32(8, conns.1),
        a_u32(9, conns.2),
    ];
    if let Some(af) = af {
        parts.push(a_u16(11, af));
    }
    if let Some(s) = stats {
        parts.push(stats32(10, s));
        parts.push(stats64(12, s));
    }
    nest(2, &parts)
}

/// Deterministic PRNG (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}
