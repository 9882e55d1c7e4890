//! Destinations (real servers): settings, forwarding method, and their `IPVS_CMD_ATTR_DEST`
//! encoding.
//!
//! Kernel side (`net/netfilter/ipvs/ip_vs_ctl.c`): `ip_vs_genl_parse_dest` needs `ADDR` and
//! `PORT` (and reads `ADDR_FAMILY` if present, else uses the service's family); `NEW_DEST` and
//! `SET_DEST` also need `FWD_METHOD`, `WEIGHT`, `U_THRESH`, `L_THRESH` and read `TUN_TYPE`,
//! `TUN_PORT` (`__be16`) and `TUN_FLAGS` when present. `ip_vs_genl_fill_dest` is what dumps
//! send back; it always includes the tunnel attributes (zero for non-tunnel destinations).
//! A destination whose family differs from its service's is accepted only for tunnelling
//! (`ip_vs_genl_set_cmd`).

use std::net::IpAddr;

use crate::addr::{decode_inet_addr, encode_inet_addr, AddressFamily};
use crate::attrs::*;
use crate::error::{Error, Result};
use crate::flags::TunnelFlags;
use crate::nla::{NlaIter, NlaWriter};
use crate::stats::{pick_stats, Stats};

/// Tunnel encapsulation (`IP_VS_CONN_F_TUNNEL_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// IP-in-IP (the default, and the only kind before Linux 5.2).
    Ipip,
    /// Generic UDP Encapsulation; needs a non-zero port.
    Gue,
    /// GRE.
    Gre,
}

impl TunnelKind {
    /// The `IP_VS_CONN_F_TUNNEL_TYPE_*` number.
    pub const fn number(self) -> u8 {
        match self {
            TunnelKind::Ipip => IP_VS_CONN_F_TUNNEL_TYPE_IPIP,
            TunnelKind::Gue => IP_VS_CONN_F_TUNNEL_TYPE_GUE,
            TunnelKind::Gre => IP_VS_CONN_F_TUNNEL_TYPE_GRE,
        }
    }

    /// The kind for a `IP_VS_CONN_F_TUNNEL_TYPE_*` number.
    pub fn from_number(n: u8) -> Result<Self> {
        match n {
            IP_VS_CONN_F_TUNNEL_TYPE_IPIP => Ok(TunnelKind::Ipip),
            IP_VS_CONN_F_TUNNEL_TYPE_GUE => Ok(TunnelKind::Gue),
            IP_VS_CONN_F_TUNNEL_TYPE_GRE => Ok(TunnelKind::Gre),
            n => Err(Error::InvalidValue {
                what: "IPVS_DEST_ATTR_TUN_TYPE",
                value: u64::from(n),
            }),
        }
    }
}

/// How packets reach a destination (`IPVS_DEST_ATTR_FWD_METHOD`, the `IP_VS_CONN_F_FWD_MASK`
/// bits of the connection flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardMethod {
    /// `IP_VS_CONN_F_MASQ`: NAT.
    Masquerade,
    /// `IP_VS_CONN_F_LOCALNODE`: delivered locally.
    Local,
    /// `IP_VS_CONN_F_TUNNEL`: encapsulated.
    Tunnel {
        kind: TunnelKind,
        /// Destination port of the encapsulation (GUE; ignored by IPIP), host order here,
        /// network order on the wire.
        port: u16,
        /// Encapsulation checksum flags.
        flags: TunnelFlags,
    },
    /// `IP_VS_CONN_F_DROUTE`: direct routing.
    DirectRoute,
    /// `IP_VS_CONN_F_BYPASS`: cache bypass.
    Bypass,
}

impl ForwardMethod {
    /// An IP-in-IP tunnel.
    pub const fn ipip() -> Self {
        ForwardMethod::Tunnel {
            kind: TunnelKind::Ipip,
            port: 0,
            flags: TunnelFlags::NO_CSUM,
        }
    }

    /// The `IP_VS_CONN_F_*` forwarding number.
    pub const fn number(self) -> u32 {
        match self {
            ForwardMethod::Masquerade => IP_VS_CONN_F_MASQ,
            ForwardMethod::Local => IP_VS_CONN_F_LOCALNODE,
            ForwardMethod::Tunnel { .. } => IP_VS_CONN_F_TUNNEL,
            ForwardMethod::DirectRoute => IP_VS_CONN_F_DROUTE,
            ForwardMethod::Bypass => IP_VS_CONN_F_BYPASS,
        }
    }
}

/// A destination (real server) of a service.
///
/// `active_conns`, `inactive_conns`, `persistent_conns` and `stats` are filled in by the
/// kernel in replies and ignored when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The real server's address. Its family is sent as `IPVS_DEST_ATTR_ADDR_FAMILY`; it may
    /// differ from the service's only with [`ForwardMethod::Tunnel`].
    pub addr: IpAddr,
    /// The real server's port (network order on the wire).
    pub port: u16,
    /// How packets are forwarded.
    pub forward: ForwardMethod,
    /// Scheduling weight; the kernel stores an `int` and refuses negative values, so at most
    /// `i32::MAX`. 0 quiesces the destination.
    pub weight: u32,
    /// Upper connection threshold (0 = none).
    pub upper_threshold: u32,
    /// Lower connection threshold; the kernel refuses it above `upper_threshold`.
    pub lower_threshold: u32,
    /// Active connections (read-only).
    pub active_conns: u32,
    /// Inactive connections (read-only).
    pub inactive_conns: u32,
    /// Persistent connection templates (read-only).
    pub persistent_conns: u32,
    /// Counters and rates (read-only; `STATS64`, else `STATS`).
    pub stats: Option<Stats>,
}

impl Destination {
    /// A destination with weight 1 and no thresholds.
    pub fn new(addr: IpAddr, port: u16, forward: ForwardMethod) -> Self {
        Destination {
            addr,
            port,
            forward,
            weight: 1,
            upper_threshold: 0,
            lower_threshold: 0,
            active_conns: 0,
            inactive_conns: 0,
            persistent_conns: 0,
            stats: None,
        }
    }

    /// The destination's address family (`IPVS_DEST_ATTR_ADDR_FAMILY`).
    pub fn family(&self) -> AddressFamily {
        AddressFamily::of(&self.addr)
    }

    /// Writes a full `IPVS_CMD_ATTR_DEST` nest, as `NEW_DEST`/`SET_DEST` need it.
    pub(crate) fn encode_into(&self, w: &mut NlaWriter) -> Result<()> {
        if i32::try_from(self.weight).is_err() {
            return Err(Error::InvalidArgument {
                what: "weight",
                reason: format!(
                    "{} exceeds i32::MAX (the kernel stores an int)",
                    self.weight
                ),
            });
        }
        let nest = w.begin_nested(IPVS_CMD_ATTR_DEST);
        encode_dest_key(w, &self.addr, self.port);
        w.put_u32(IPVS_DEST_ATTR_FWD_METHOD, self.forward.number());
        w.put_u32(IPVS_DEST_ATTR_WEIGHT, self.weight);
        w.put_u32(IPVS_DEST_ATTR_U_THRESH, self.upper_threshold);
        w.put_u32(IPVS_DEST_ATTR_L_THRESH, self.lower_threshold);
        if let ForwardMethod::Tunnel { kind, port, flags } = self.forward {
            w.put_u8(IPVS_DEST_ATTR_TUN_TYPE, kind.number());
            w.put_be16(IPVS_DEST_ATTR_TUN_PORT, port);
            w.put_u16(IPVS_DEST_ATTR_TUN_FLAGS, flags.bits());
        }
        w.end_nested(nest);
        Ok(())
    }

    /// Decodes the payload of an `IPVS_CMD_ATTR_DEST` nest as the kernel fills it.
    ///
    /// The family comes from `IPVS_DEST_ATTR_ADDR_FAMILY` (always sent since Linux 3.18);
    /// without it, `fallback_family` (the service's) is used, and without that the decode
    /// fails. Needs `ADDR`, `PORT`, `FWD_METHOD`, `WEIGHT`; thresholds and connection counts
    /// default to 0 when absent. Unknown attributes are skipped.
    pub fn decode_attrs(buf: &[u8], fallback_family: Option<AddressFamily>) -> Result<Self> {
        let mut addr = None;
        let mut port = None;
        let mut fwd = None;
        let mut weight = None;
        let mut u_thresh = 0;
        let mut l_thresh = 0;
        let mut active = 0;
        let mut inact = 0;
        let mut persist = 0;
        let mut af = None;
        let mut tun_type = None;
        let mut tun_port = 0;
        let mut tun_flags = 0;
        let mut stats32 = None;
        let mut stats64 = None;
        for nla in NlaIter::new(buf, "IPVS_DEST_ATTR") {
            let nla = nla?;
            match nla.kind {
                IPVS_DEST_ATTR_ADDR => addr = Some(nla.value),
                IPVS_DEST_ATTR_PORT => port = Some(nla.be16("IPVS_DEST_ATTR_PORT")?),
                IPVS_DEST_ATTR_FWD_METHOD => fwd = Some(nla.u32("IPVS_DEST_ATTR_FWD_METHOD")?),
                IPVS_DEST_ATTR_WEIGHT => weight = Some(nla.u32("IPVS_DEST_ATTR_WEIGHT")?),
                IPVS_DEST_ATTR_U_THRESH => u_thresh = nla.u32("IPVS_DEST_ATTR_U_THRESH")?,
                IPVS_DEST_ATTR_L_THRESH => l_thresh = nla.u32("IPVS_DEST_ATTR_L_THRESH")?,
                IPVS_DEST_ATTR_ACTIVE_CONNS => active = nla.u32("IPVS_DEST_ATTR_ACTIVE_CONNS")?,
                IPVS_DEST_ATTR_INACT_CONNS => inact = nla.u32("IPVS_DEST_ATTR_INACT_CONNS")?,
                IPVS_DEST_ATTR_PERSIST_CONNS => {
                    persist = nla.u32("IPVS_DEST_ATTR_PERSIST_CONNS")?
                }
                IPVS_DEST_ATTR_STATS => stats32 = Some(nla.value),
                IPVS_DEST_ATTR_ADDR_FAMILY => af = Some(nla.u16("IPVS_DEST_ATTR_ADDR_FAMILY")?),
                IPVS_DEST_ATTR_STATS64 => stats64 = Some(nla.value),
                IPVS_DEST_ATTR_TUN_TYPE => tun_type = Some(nla.u8("IPVS_DEST_ATTR_TUN_TYPE")?),
                IPVS_DEST_ATTR_TUN_PORT => tun_port = nla.be16("IPVS_DEST_ATTR_TUN_PORT")?,
                IPVS_DEST_ATTR_TUN_FLAGS => tun_flags = nla.u16("IPVS_DEST_ATTR_TUN_FLAGS")?,
                _ => {}
            }
        }
        let family = match af {
            Some(af) => AddressFamily::from_number(af)?,
            None => fallback_family.ok_or(Error::MissingAttribute {
                attr: "IPVS_DEST_ATTR_ADDR_FAMILY",
            })?,
        };
        let addr = decode_inet_addr(
            family,
            addr.ok_or(Error::MissingAttribute {
                attr: "IPVS_DEST_ATTR_ADDR",
            })?,
            "IPVS_DEST_ATTR_ADDR",
        )?;
        let fwd = fwd.ok_or(Error::MissingAttribute {
            attr: "IPVS_DEST_ATTR_FWD_METHOD",
        })?;
        let forward = match fwd & IP_VS_CONN_F_FWD_MASK {
            IP_VS_CONN_F_MASQ => ForwardMethod::Masquerade,
            IP_VS_CONN_F_LOCALNODE => ForwardMethod::Local,
            IP_VS_CONN_F_TUNNEL => ForwardMethod::Tunnel {
                kind: TunnelKind::from_number(tun_type.unwrap_or(IP_VS_CONN_F_TUNNEL_TYPE_IPIP))?,
                port: tun_port,
                flags: TunnelFlags::from_bits(tun_flags),
            },
            IP_VS_CONN_F_DROUTE => ForwardMethod::DirectRoute,
            IP_VS_CONN_F_BYPASS => ForwardMethod::Bypass,
            other => {
                return Err(Error::InvalidValue {
                    what: "IPVS_DEST_ATTR_FWD_METHOD",
                    value: u64::from(other),
                })
            }
        };
        Ok(Destination {
            addr,
            port: port.ok_or(Error::MissingAttribute {
                attr: "IPVS_DEST_ATTR_PORT",
            })?,
            forward,
            weight: weight.ok_or(Error::MissingAttribute {
                attr: "IPVS_DEST_ATTR_WEIGHT",
            })?,
            upper_threshold: u_thresh,
            lower_threshold: l_thresh,
            active_conns: active,
            inactive_conns: inact,
            persistent_conns: persist,
            stats: pick_stats(stats64, stats32)?,
        })
    }
}

/// Writes the identifying destination attributes: `ADDR`, `PORT`, `ADDR_FAMILY`.
pub(crate) fn encode_dest_key(w: &mut NlaWriter, addr: &IpAddr, port: u16) {
    w.put(IPVS_DEST_ATTR_ADDR, &encode_inet_addr(addr));
    w.put_be16(IPVS_DEST_ATTR_PORT, port);
    w.put_u16(IPVS_DEST_ATTR_ADDR_FAMILY, AddressFamily::of(addr).number());
}
