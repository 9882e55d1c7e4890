//! Identities no data plane owns: a service ([`ServiceKey`]), its VIP ([`Vip`]) and a
//! backend ([`BackendId`]), what a plane reports of a connection ([`Report`]) and how
//! its stream of records fared ([`Counters`]). The
//! daemon's core, the health machines and every data plane speak in these; each plane
//! translates them into its own terms (IPVS service keys, the kernel programs' map keys
//! in [`kernel`]).

mod backend_id;
mod counters;
pub mod health_record;
pub mod kernel;
mod outcome;

use std::{
    cmp::Ordering,
    fmt,
    net::{IpAddr, SocketAddr},
};

pub use crate::config::{Family, Protocol};
pub use backend_id::BackendId;
pub use counters::Counters;
pub use outcome::{IcmpCode, Outcome, Report};

/// A virtual service's address: protocol, address and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vip {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

impl Vip {
    pub const fn new(protocol: Protocol, addr: SocketAddr) -> Self {
        Vip { protocol, addr }
    }

    /// The IP protocol number (`IPPROTO_TCP`, `IPPROTO_UDP`), as kernel events carry it.
    pub const fn ip_proto(self) -> u8 {
        match self.protocol {
            Protocol::Tcp => libc::IPPROTO_TCP as u8,
            Protocol::Udp => libc::IPPROTO_UDP as u8,
        }
    }

    /// The VIP an event names by IP protocol number; `None` for a protocol vipd does
    /// not balance.
    pub fn from_ip_proto(protocol: u8, addr: SocketAddr) -> Option<Self> {
        let protocol = match i32::from(protocol) {
            libc::IPPROTO_TCP => Protocol::Tcp,
            libc::IPPROTO_UDP => Protocol::Udp,
            _ => return None,
        };
        Some(Vip { protocol, addr })
    }

    pub fn is_udp(self) -> bool {
        self.protocol == Protocol::Udp
    }
}

impl Ord for Vip {
    /// By address, then protocol, then port: the order `vipd status` lists services in.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.addr.ip(), self.protocol, self.addr.port()).cmp(&(
            other.addr.ip(),
            other.protocol,
            other.addr.port(),
        ))
    }
}

impl PartialOrd for Vip {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Vip {
    /// `tcp 198.18.0.10:80`, `udp [fd00:18::10]:53`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr.ip() {
            IpAddr::V6(a) => write!(f, "{} [{a}]:{}", self.protocol, self.addr.port()),
            IpAddr::V4(a) => write!(f, "{} {a}:{}", self.protocol, self.addr.port()),
        }
    }
}

/// What identifies a service at run time. Its text is what `vipd status` shows and what
/// the health record is keyed by (the form vipd has always written, so a record
/// survives an upgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// A VIP service.
    Addr(Vip),
    /// A firewall-mark service of a family (a mark is never 0).
    Fwmark { family: Family, mark: u32 },
}

impl ServiceKey {
    /// The VIP of an address service.
    pub fn vip(&self) -> Option<Vip> {
        match self {
            ServiceKey::Addr(v) => Some(*v),
            ServiceKey::Fwmark { .. } => None,
        }
    }

    /// A UDP VIP service.
    pub fn is_udp(&self) -> bool {
        self.vip().is_some_and(Vip::is_udp)
    }
}

impl From<crate::config::ServiceKey> for ServiceKey {
    fn from(k: crate::config::ServiceKey) -> Self {
        match k {
            crate::config::ServiceKey::Addr { protocol, addr } => {
                ServiceKey::Addr(Vip { protocol, addr })
            }
            crate::config::ServiceKey::Fwmark { family, mark } => {
                ServiceKey::Fwmark { family, mark }
            }
        }
    }
}

impl From<ServiceKey> for crate::config::ServiceKey {
    fn from(k: ServiceKey) -> Self {
        match k {
            ServiceKey::Addr(Vip { protocol, addr }) => {
                crate::config::ServiceKey::Addr { protocol, addr }
            }
            ServiceKey::Fwmark { family, mark } => {
                crate::config::ServiceKey::Fwmark { family, mark }
            }
        }
    }
}

impl fmt::Display for ServiceKey {
    /// `tcp 198.18.0.10:80`, `udp [fd00:18::10]:53`, `fwmark 5 (inet)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr(v) => v.fmt(f),
            ServiceKey::Fwmark { family, mark } => write!(
                f,
                "fwmark {mark} ({})",
                match family {
                    Family::Ipv4 => "inet",
                    Family::Ipv6 => "inet6",
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests;
