//! How the kernel programs key vipd's identities in their maps and write addresses in
//! their records (every plane's programs use the same layout, `vipd_common`'s).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use vipd_common::{VipKey, AF_INET, AF_INET6};

/// A VIP as the kernel programs key it (`protocol`: the IP protocol number; 0 where the
/// protocol does not matter).
pub fn vip_key(vip: SocketAddr, protocol: u8) -> VipKey {
    let mut key = VipKey {
        port: vip.port(),
        protocol,
        ..Default::default()
    };
    match vip {
        SocketAddr::V4(a) => {
            key.family = AF_INET as u8;
            key.addr[..4].copy_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            key.family = AF_INET6 as u8;
            key.addr = a.ip().octets();
        }
    }
    key
}

/// A kernel record's address family that is neither `AF_INET` nor `AF_INET6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown address family {0}")]
pub struct UnknownFamily(pub u8);

/// The address in a kernel record's 16-byte field (IPv4 in the first 4 bytes) of
/// `family`, with `port`.
pub fn socket_addr(family: u8, bytes: &[u8; 16], port: u16) -> Result<SocketAddr, UnknownFamily> {
    let ip = match u16::from(family) {
        AF_INET => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(*bytes)),
        _ => return Err(UnknownFamily(family)),
    };
    Ok(SocketAddr::new(ip, port))
}
