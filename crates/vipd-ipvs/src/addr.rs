//! Address families and the 16-byte `union nf_inet_addr` addresses travel in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::attrs::{AF_INET, AF_INET6, NF_INET_ADDR_LEN};
use crate::error::{Error, Result};

/// An address family IPVS accepts (`AF_INET` or `AF_INET6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddressFamily {
    /// `AF_INET` (2).
    Inet,
    /// `AF_INET6` (10).
    Inet6,
}

impl AddressFamily {
    /// The Linux `AF_*` number.
    pub const fn number(self) -> u16 {
        match self {
            AddressFamily::Inet => AF_INET,
            AddressFamily::Inet6 => AF_INET6,
        }
    }

    /// The family for a Linux `AF_*` number.
    pub fn from_number(af: u16) -> Result<Self> {
        match af {
            AF_INET => Ok(AddressFamily::Inet),
            AF_INET6 => Ok(AddressFamily::Inet6),
            other => Err(Error::InvalidValue {
                what: "address family",
                value: u64::from(other),
            }),
        }
    }

    /// The family of an address.
    pub const fn of(addr: &IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressFamily::Inet => "inet",
            AddressFamily::Inet6 => "inet6",
        })
    }
}

/// Encodes an address as `union nf_inet_addr`: 16 bytes, network byte order, an IPv4 address
/// in the first 4 and zeros after (the kernel itself always sends `sizeof(union
/// nf_inet_addr)`).
pub(crate) fn encode_inet_addr(addr: &IpAddr) -> [u8; NF_INET_ADDR_LEN] {
    let mut out = [0u8; NF_INET_ADDR_LEN];
    match addr {
        IpAddr::V4(a) => out[..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
    }
    out
}

/// Decodes a `union nf_inet_addr` of the given family. Accepts the 16 bytes the kernel sends,
/// and also a bare 4-byte IPv4 address.
pub(crate) fn decode_inet_addr(
    family: AddressFamily,
    bytes: &[u8],
    what: &'static str,
) -> Result<IpAddr> {
    match family {
        AddressFamily::Inet => {
            if bytes.len() != 4 && bytes.len() != NF_INET_ADDR_LEN {
                return Err(Error::InvalidLength {
                    what,
                    len: bytes.len(),
                });
            }
            let v4: [u8; 4] =
                bytes
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(Error::InvalidLength {
                        what,
                        len: bytes.len(),
                    })?;
            Ok(IpAddr::V4(Ipv4Addr::from(v4)))
        }
        AddressFamily::Inet6 => {
            let v6: [u8; 16] = bytes.try_into().map_err(|_| Error::InvalidLength {
                what,
                len: bytes.len(),
            })?;
            Ok(IpAddr::V6(Ipv6Addr::from(v6)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nf_inet_addr_layout() {
        let v4 = encode_inet_addr(&"10.1.2.3".parse().unwrap());
        assert_eq!(v4, [10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let v6 = encode_inet_addr(&"2001:db8::1".parse().unwrap());
        assert_eq!(
            v6,
            [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
    }

    #[test]
    fn decode_lengths() {
        let a = decode_inet_addr(AddressFamily::Inet, &[1, 2, 3, 4], "a").unwrap();
        assert_eq!(a, "1.2.3.4".parse::<IpAddr>().unwrap());
        assert!(decode_inet_addr(AddressFamily::Inet, &[1, 2, 3], "a").is_err());
        assert!(decode_inet_addr(AddressFamily::Inet6, &[0; 4], "a").is_err());
        assert!(decode_inet_addr(AddressFamily::Inet6, &[0; 16], "a").is_ok());
    }
}
