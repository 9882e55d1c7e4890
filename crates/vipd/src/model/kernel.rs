//! How the kernel programs key vipd's identities in their maps (every plane's programs
//! use the same layout, `vipd_common`'s).

use std::net::SocketAddr;

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
