//! Service flags (`IP_VS_SVC_F_*`) and tunnel encapsulation flags
//! (`IP_VS_TUNNEL_ENCAP_FLAG_*`).

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign, Not};

use crate::attrs::*;

/// Virtual service flags, the `flags` half of `struct ip_vs_flags`.
///
/// Unknown bits are kept as they are, so a service read from the kernel and written back
/// keeps them.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ServiceFlags(u32);

impl ServiceFlags {
    /// No flags.
    pub const EMPTY: ServiceFlags = ServiceFlags(0);
    /// `IP_VS_SVC_F_PERSISTENT`: persistent service (timeout and netmask apply).
    pub const PERSISTENT: ServiceFlags = ServiceFlags(IP_VS_SVC_F_PERSISTENT);
    /// `IP_VS_SVC_F_HASHED`: set by the kernel on every live service; reported in dumps,
    /// never sent (encoding clears it).
    pub const HASHED: ServiceFlags = ServiceFlags(IP_VS_SVC_F_HASHED);
    /// `IP_VS_SVC_F_ONEPACKET`: one-packet scheduling (UDP).
    pub const ONE_PACKET: ServiceFlags = ServiceFlags(IP_VS_SVC_F_ONEPACKET);
    /// `IP_VS_SVC_F_SCHED1`.
    pub const SCHED1: ServiceFlags = ServiceFlags(IP_VS_SVC_F_SCHED1);
    /// `IP_VS_SVC_F_SCHED2`.
    pub const SCHED2: ServiceFlags = ServiceFlags(IP_VS_SVC_F_SCHED2);
    /// `IP_VS_SVC_F_SCHED3`.
    pub const SCHED3: ServiceFlags = ServiceFlags(IP_VS_SVC_F_SCHED3);
    /// `IP_VS_SVC_F_SCHED_SH_FALLBACK` (= `SCHED1`): `sh` scheduler falls back to another
    /// destination when the chosen one is unavailable.
    pub const SH_FALLBACK: ServiceFlags = ServiceFlags(IP_VS_SVC_F_SCHED_SH_FALLBACK);
    /// `IP_VS_SVC_F_SCHED_SH_PORT` (= `SCHED2`): `sh` scheduler hashes the source port too.
    pub const SH_PORT: ServiceFlags = ServiceFlags(IP_VS_SVC_F_SCHED_SH_PORT);
    /// `IP_VS_SVC_F_SCHED_MH_FALLBACK` (= `SCHED1`, defined in `ip_vs_mh.c`).
    pub const MH_FALLBACK: ServiceFlags = ServiceFlags(IP_VS_SVC_F_SCHED_MH_FALLBACK);
    /// `IP_VS_SVC_F_SCHED_MH_PORT` (= `SCHED2`, defined in `ip_vs_mh.c`).
    pub const MH_PORT: ServiceFlags = ServiceFlags(IP_VS_SVC_F_SCHED_MH_PORT);

    /// Flags from raw bits (unknown bits kept).
    pub const fn from_bits(bits: u32) -> Self {
        ServiceFlags(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True when every bit of `other` is set.
    pub const fn contains(self, other: ServiceFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets or clears the bits of `other`.
    pub fn set(&mut self, other: ServiceFlags, on: bool) {
        if on {
            self.0 |= other.0;
        } else {
            self.0 &= !other.0;
        }
    }

    /// True when no bit is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for ServiceFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        ServiceFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for ServiceFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for ServiceFlags {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        ServiceFlags(self.0 & rhs.0)
    }
}

impl Not for ServiceFlags {
    type Output = Self;
    fn not(self) -> Self {
        ServiceFlags(!self.0)
    }
}

impl fmt::Debug for ServiceFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u32, &str); 6] = [
            (IP_VS_SVC_F_PERSISTENT, "PERSISTENT"),
            (IP_VS_SVC_F_HASHED, "HASHED"),
            (IP_VS_SVC_F_ONEPACKET, "ONE_PACKET"),
            (IP_VS_SVC_F_SCHED1, "SCHED1"),
            (IP_VS_SVC_F_SCHED2, "SCHED2"),
            (IP_VS_SVC_F_SCHED3, "SCHED3"),
        ];
        write!(f, "ServiceFlags(")?;
        let mut rest = self.0;
        let mut first = true;
        for (bit, name) in NAMES {
            if rest & bit != 0 {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
                rest &= !bit;
            }
        }
        if rest != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{rest:#x}")?;
        } else if first {
            f.write_str("0")?;
        }
        f.write_str(")")
    }
}

/// Tunnel encapsulation flags (`IPVS_DEST_ATTR_TUN_FLAGS`), for GUE and GRE tunnels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TunnelFlags(u16);

impl TunnelFlags {
    /// `IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM`: no checksum.
    pub const NO_CSUM: TunnelFlags = TunnelFlags(IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM);
    /// `IP_VS_TUNNEL_ENCAP_FLAG_CSUM`: checksum the encapsulation.
    pub const CSUM: TunnelFlags = TunnelFlags(IP_VS_TUNNEL_ENCAP_FLAG_CSUM);
    /// `IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM`: remote checksum offload.
    pub const REMCSUM: TunnelFlags = TunnelFlags(IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM);

    /// Flags from raw bits (unknown bits kept).
    pub const fn from_bits(bits: u16) -> Self {
        TunnelFlags(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// True when every bit of `other` is set.
    pub const fn contains(self, other: TunnelFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for TunnelFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        TunnelFlags(self.0 | rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_match_header() {
        assert_eq!(ServiceFlags::SH_FALLBACK, ServiceFlags::SCHED1);
        assert_eq!(ServiceFlags::MH_FALLBACK, ServiceFlags::SCHED1);
        assert_eq!(ServiceFlags::SH_PORT.bits(), 0x10);
        assert_eq!(ServiceFlags::MH_PORT.bits(), 0x10);
        let f = ServiceFlags::PERSISTENT | ServiceFlags::ONE_PACKET;
        assert_eq!(f.bits(), 0x5);
        assert!(f.contains(ServiceFlags::PERSISTENT));
        assert_eq!(
            format!("{:?}", f | ServiceFlags::from_bits(0x100)),
            "ServiceFlags(PERSISTENT | ONE_PACKET | 0x100)"
        );
        assert_eq!(format!("{:?}", ServiceFlags::EMPTY), "ServiceFlags(0)");
    }
}
