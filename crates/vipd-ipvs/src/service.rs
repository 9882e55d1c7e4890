//! Virtual services: their key, their settings, and their `IPVS_CMD_ATTR_SERVICE` encoding.
//!
//! Kernel side (`net/netfilter/ipvs/ip_vs_ctl.c`): `ip_vs_genl_parse_service` needs
//! `IPVS_SVC_ATTR_AF` and either `FWMARK` or all of `PROTOCOL`, `ADDR`, `PORT` to identify a
//! service; `NEW_SERVICE` and `SET_SERVICE` also need `SCHED_NAME`, `FLAGS`, `TIMEOUT` and
//! `NETMASK` (`PE_NAME` is optional). `ip_vs_genl_fill_service` is what dumps send back.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::addr::{decode_inet_addr, encode_inet_addr, AddressFamily};
use crate::attrs::*;
use crate::error::{Error, Result};
use crate::flags::ServiceFlags;
use crate::nla::{NlaIter, NlaWriter};
use crate::protocol::Protocol;
use crate::stats::{pick_stats, Stats};

/// What identifies a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// A service on an address, protocol and port. The family is the address's.
    Addr {
        addr: IpAddr,
        protocol: Protocol,
        port: u16,
    },
    /// A firewall-mark service. `mark` must not be 0 (the kernel reads 0 as "no fwmark").
    Fwmark { family: AddressFamily, mark: u32 },
}

impl ServiceKey {
    /// A TCP service.
    pub fn tcp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr {
            addr,
            protocol: Protocol::Tcp,
            port,
        }
    }

    /// A UDP service.
    pub fn udp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr {
            addr,
            protocol: Protocol::Udp,
            port,
        }
    }

    /// An SCTP service.
    pub fn sctp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr {
            addr,
            protocol: Protocol::Sctp,
            port,
        }
    }

    /// A firewall-mark service.
    pub fn fwmark(family: AddressFamily, mark: u32) -> Self {
        ServiceKey::Fwmark { family, mark }
    }

    /// The service's address family (`IPVS_SVC_ATTR_AF`).
    pub fn family(&self) -> AddressFamily {
        match self {
            ServiceKey::Addr { addr, .. } => AddressFamily::of(addr),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }

    /// Writes the identifying attributes: `AF`, then `FWMARK` or `PROTOCOL`, `ADDR`, `PORT`.
    pub(crate) fn encode_into(&self, w: &mut NlaWriter) -> Result<()> {
        w.put_u16(IPVS_SVC_ATTR_AF, self.family().number());
        match self {
            ServiceKey::Addr {
                addr,
                protocol,
                port,
            } => {
                w.put_u16(IPVS_SVC_ATTR_PROTOCOL, protocol.number());
                w.put(IPVS_SVC_ATTR_ADDR, &encode_inet_addr(addr));
                w.put_be16(IPVS_SVC_ATTR_PORT, *port);
            }
            ServiceKey::Fwmark { mark, .. } => {
                if *mark == 0 {
                    return Err(Error::InvalidArgument {
                        what: "fwmark",
                        reason: "0 means \"no fwmark\" to the kernel".into(),
                    });
                }
                w.put_u32(IPVS_SVC_ATTR_FWMARK, *mark);
            }
        }
        Ok(())
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr {
                addr: IpAddr::V6(a),
                protocol,
                port,
            } => write!(f, "{protocol} [{a}]:{port}"),
            ServiceKey::Addr {
                addr,
                protocol,
                port,
            } => write!(f, "{protocol} {addr}:{port}"),
            ServiceKey::Fwmark { family, mark } => write!(f, "fwmark {mark} ({family})"),
        }
    }
}

/// The persistence netmask (`IPVS_SVC_ATTR_NETMASK`), whose meaning depends on the family:
/// an IPv4 service carries a `__be32` mask; an IPv6 service carries a prefix length (1..=128)
/// in the same 32 bits, read by the kernel as a host-order integer
/// (`ip_vs_add_service`/`ip_vs_edit_service`: `plen = (__force __u32) u->netmask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Netmask {
    /// Mask for IPv4 services, e.g. `255.255.255.255`.
    V4(Ipv4Addr),
    /// Prefix length for IPv6 services, 1..=128.
    V6Prefix(u8),
}

impl Netmask {
    /// The value `ipvsadm` uses when none is given: `/32` for IPv4, `/128` for IPv6.
    pub const fn default_for(family: AddressFamily) -> Self {
        match family {
            AddressFamily::Inet => Netmask::V4(Ipv4Addr::BROADCAST),
            AddressFamily::Inet6 => Netmask::V6Prefix(128),
        }
    }

    fn encode(self, family: AddressFamily) -> Result<[u8; 4]> {
        match (self, family) {
            (Netmask::V4(m), AddressFamily::Inet) => Ok(m.octets()),
            (Netmask::V6Prefix(p @ 1..=128), AddressFamily::Inet6) => {
                Ok(u32::from(p).to_ne_bytes())
            }
            (Netmask::V6Prefix(p), AddressFamily::Inet6) => Err(Error::InvalidArgument {
                what: "netmask",
                reason: format!("IPv6 prefix length {p} outside 1..=128"),
            }),
            (m, f) => Err(Error::InvalidArgument {
                what: "netmask",
                reason: format!("{m:?} does not fit an {f} service"),
            }),
        }
    }

    fn decode(raw: [u8; 4], family: AddressFamily) -> Result<Self> {
        match family {
            AddressFamily::Inet => Ok(Netmask::V4(Ipv4Addr::from(raw))),
            AddressFamily::Inet6 => {
                let plen = u32::from_ne_bytes(raw);
                u8::try_from(plen)
                    .ok()
                    .filter(|p| *p <= 128)
                    .map(Netmask::V6Prefix)
                    .ok_or(Error::InvalidValue {
                        what: "IPVS_SVC_ATTR_NETMASK (IPv6 prefix length)",
                        value: u64::from(plen),
                    })
            }
        }
    }
}

/// A virtual service.
///
/// `stats` is filled in by the kernel in replies and ignored when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// What identifies the service.
    pub key: ServiceKey,
    /// Scheduler name (`rr`, `wrr`, `lc`, `sh`, `mh`, ...; `"none"` for no scheduler).
    /// At most 15 bytes.
    pub scheduler: String,
    /// Service flags. Encoding sends them with mask `0xffffffff`, i.e. they replace the
    /// service's flags; [`ServiceFlags::HASHED`] is cleared before sending.
    pub flags: ServiceFlags,
    /// Persistence timeout in seconds (used with [`ServiceFlags::PERSISTENT`]).
    pub timeout: u32,
    /// Persistence netmask.
    pub netmask: Netmask,
    /// Persistence engine name (e.g. `sip`), if any. At most 16 bytes.
    pub pe_name: Option<String>,
    /// Counters and rates, from the kernel (`STATS64`, else `STATS`).
    pub stats: Option<Stats>,
}

impl Service {
    /// A service with no flags, no persistence, the family's default netmask.
    pub fn new(key: ServiceKey, scheduler: impl Into<String>) -> Self {
        Service {
            netmask: Netmask::default_for(key.family()),
            key,
            scheduler: scheduler.into(),
            flags: ServiceFlags::EMPTY,
            timeout: 0,
            pe_name: None,
            stats: None,
        }
    }

    /// Writes a full `IPVS_CMD_ATTR_SERVICE` nest, as `NEW_SERVICE`/`SET_SERVICE` need it.
    pub(crate) fn encode_into(&self, w: &mut NlaWriter) -> Result<()> {
        check_name(&self.scheduler, IP_VS_SCHEDNAME_MAXLEN - 1, "scheduler")?;
        if self.scheduler.is_empty() {
            return Err(Error::InvalidArgument {
                what: "scheduler",
                reason: "empty (use \"none\" for no scheduler)".into(),
            });
        }
        if let Some(pe) = &self.pe_name {
            check_name(pe, IP_VS_PENAME_MAXLEN, "pe_name")?;
        }
        let netmask = self.netmask.encode(self.key.family())?;
        let nest = w.begin_nested(IPVS_CMD_ATTR_SERVICE);
        self.key.encode_into(w)?;
        w.put_string(IPVS_SVC_ATTR_SCHED_NAME, &self.scheduler);
        let flags = self.flags.bits() & !IP_VS_SVC_F_HASHED;
        let mut ip_vs_flags = [0u8; IP_VS_FLAGS_LEN];
        ip_vs_flags[..4].copy_from_slice(&flags.to_ne_bytes());
        ip_vs_flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
        w.put(IPVS_SVC_ATTR_FLAGS, &ip_vs_flags);
        w.put_u32(IPVS_SVC_ATTR_TIMEOUT, self.timeout);
        w.put(IPVS_SVC_ATTR_NETMASK, &netmask);
        if let Some(pe) = &self.pe_name {
            w.put_string(IPVS_SVC_ATTR_PE_NAME, pe);
        }
        w.end_nested(nest);
        Ok(())
    }

    /// Decodes the payload of an `IPVS_CMD_ATTR_SERVICE` nest as the kernel fills it.
    ///
    /// Needs `AF`, `SCHED_NAME`, `FLAGS`, `TIMEOUT`, `NETMASK`, and either a non-zero
    /// `FWMARK` or `PROTOCOL` + `ADDR` + `PORT`. Unknown attributes are skipped.
    pub fn decode_attrs(buf: &[u8]) -> Result<Service> {
        let mut af = None;
        let mut protocol = None;
        let mut addr = None;
        let mut port = None;
        let mut fwmark = None;
        let mut sched = None;
        let mut flags = None;
        let mut timeout = None;
        let mut netmask = None;
        let mut pe_name = None;
        let mut stats32 = None;
        let mut stats64 = None;
        for nla in NlaIter::new(buf, "IPVS_SVC_ATTR") {
            let nla = nla?;
            match nla.kind {
                IPVS_SVC_ATTR_AF => af = Some(nla.u16("IPVS_SVC_ATTR_AF")?),
                IPVS_SVC_ATTR_PROTOCOL => protocol = Some(nla.u16("IPVS_SVC_ATTR_PROTOCOL")?),
                IPVS_SVC_ATTR_ADDR => addr = Some(nla.value),
                IPVS_SVC_ATTR_PORT => port = Some(nla.be16("IPVS_SVC_ATTR_PORT")?),
                IPVS_SVC_ATTR_FWMARK => fwmark = Some(nla.u32("IPVS_SVC_ATTR_FWMARK")?),
                IPVS_SVC_ATTR_SCHED_NAME => sched = Some(nla.string("IPVS_SVC_ATTR_SCHED_NAME")?),
                IPVS_SVC_ATTR_FLAGS => {
                    // struct ip_vs_flags { __u32 flags; __u32 mask; }: only `flags` matters
                    // in a reply (the kernel sends mask ~0).
                    let raw: [u8; IP_VS_FLAGS_LEN] =
                        nla.value.try_into().map_err(|_| Error::InvalidLength {
                            what: "IPVS_SVC_ATTR_FLAGS",
                            len: nla.value.len(),
                        })?;
                    flags = Some(u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]));
                }
                IPVS_SVC_ATTR_TIMEOUT => timeout = Some(nla.u32("IPVS_SVC_ATTR_TIMEOUT")?),
                IPVS_SVC_ATTR_NETMASK => {
                    netmask =
                        Some(
                            <[u8; 4]>::try_from(nla.value).map_err(|_| Error::InvalidLength {
                                what: "IPVS_SVC_ATTR_NETMASK",
                                len: nla.value.len(),
                            })?,
                        )
                }
                IPVS_SVC_ATTR_PE_NAME => pe_name = Some(nla.string("IPVS_SVC_ATTR_PE_NAME")?),
                IPVS_SVC_ATTR_STATS => stats32 = Some(nla.value),
                IPVS_SVC_ATTR_STATS64 => stats64 = Some(nla.value),
                _ => {}
            }
        }
        let family = AddressFamily::from_number(af.ok_or(Error::MissingAttribute {
            attr: "IPVS_SVC_ATTR_AF",
        })?)?;
        let key = match fwmark {
            Some(mark) if mark != 0 => ServiceKey::Fwmark { family, mark },
            _ => {
                let addr = addr.ok_or(Error::MissingAttribute {
                    attr: "IPVS_SVC_ATTR_ADDR",
                })?;
                ServiceKey::Addr {
                    addr: decode_inet_addr(family, addr, "IPVS_SVC_ATTR_ADDR")?,
                    protocol: Protocol::from_number(protocol.ok_or(Error::MissingAttribute {
                        attr: "IPVS_SVC_ATTR_PROTOCOL",
                    })?),
                    port: port.ok_or(Error::MissingAttribute {
                        attr: "IPVS_SVC_ATTR_PORT",
                    })?,
                }
            }
        };
        let netmask = netmask.ok_or(Error::MissingAttribute {
            attr: "IPVS_SVC_ATTR_NETMASK",
        })?;
        Ok(Service {
            key,
            scheduler: sched.ok_or(Error::MissingAttribute {
                attr: "IPVS_SVC_ATTR_SCHED_NAME",
            })?,
            flags: ServiceFlags::from_bits(flags.ok_or(Error::MissingAttribute {
                attr: "IPVS_SVC_ATTR_FLAGS",
            })?),
            timeout: timeout.ok_or(Error::MissingAttribute {
                attr: "IPVS_SVC_ATTR_TIMEOUT",
            })?,
            netmask: Netmask::decode(netmask, family)?,
            pe_name,
            stats: pick_stats(stats64, stats32)?,
        })
    }
}

/// Checks a name sent as `NLA_NUL_STRING`: no interior NUL, at most `max` bytes.
fn check_name(name: &str, max: usize, what: &'static str) -> Result<()> {
    if name.len() > max {
        return Err(Error::InvalidArgument {
            what,
            reason: format!("{:?} is longer than {max} bytes", name),
        });
    }
    if name.bytes().any(|b| b == 0) {
        return Err(Error::InvalidArgument {
            what,
            reason: "contains a NUL byte".into(),
        });
    }
    Ok(())
}
