//! VIP routes: how vipd makes a VIP reachable for local programs, read and written over
//! rtnetlink, and the kernel's route lookup that tells which source address a
//! destination gets.
//!
//! A VIP route is a host route (/32 or /128) in the main table, on vipd's dummy
//! interface, with vipd's route protocol ([`RTPROT_VIPD`]) and a preferred source
//! address: `ip route show proto 118` lists them. The protocol is the proof that vipd
//! made a route: vipd never deletes or replaces a route without it.

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::{
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
    AddressFamily, RouteNetlinkMessage,
};

use super::{netstate::Link, rtnl::Rtnl, ReachError};

/// The route protocol number vipd marks its routes with (`ip route show proto 118`;
/// `dist/` names it `vipd` in iproute2's `rt_protos.d`). Unassigned in iproute2's list.
pub const RTPROT_VIPD: u8 = 118;

/// The main routing table.
const MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// A main-table route that matters to vipd: a host route (to a possible VIP), or any
/// route on a dummy interface (so that vipd knows what else such an interface carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: IpAddr,
    pub prefix_len: u8,
    /// Output interface index, 0 if none (e.g. a blackhole or multipath route).
    pub oif: u32,
    pub protocol: u8,
    /// `RTN_*`: 1 unicast, 2 local, 6 blackhole, ...
    pub kind: u8,
    /// Preferred source address.
    pub src: Option<IpAddr>,
}

/// `RTN_UNICAST`.
pub const RTN_UNICAST: u8 = 1;
/// `RTN_LOCAL`.
pub const RTN_LOCAL: u8 = 2;

impl Route {
    /// Whether vipd made this route: its protocol, a host route, on `link`.
    pub fn is_vipds_on(&self, link: &Link) -> bool {
        self.protocol == RTPROT_VIPD && self.oif == link.index && self.is_host()
    }

    pub fn is_host(&self) -> bool {
        self.prefix_len == full_len(self.dst)
    }
}

/// 32 or 128.
pub fn full_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The main table's host routes, and every route on a dummy interface (`dummies` holds
/// their indexes), of both families.
pub(crate) fn read(rtnl: &mut Rtnl, dummies: &[u32]) -> Result<Vec<Route>, ReachError> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut m = RouteMessage::default();
        m.header.address_family = family;
        for reply in rtnl.dump(RouteNetlinkMessage::GetRoute(m), "list the routes")? {
            let RouteNetlinkMessage::NewRoute(r) = reply else {
                continue;
            };
            if table(&r) != MAIN {
                continue;
            }
            let Some(route) = decode(&r) else { continue };
            if route.is_host() || dummies.contains(&route.oif) {
                out.push(route);
            }
        }
    }
    Ok(out)
}

fn table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A route message as a [`Route`]; `None` for families other than IPv4/IPv6.
fn decode(r: &RouteMessage) -> Option<Route> {
    let mut dst = None;
    let mut oif = 0;
    let mut src = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(d) => dst = ip(d),
            RouteAttribute::Oif(i) => oif = *i,
            RouteAttribute::PrefSource(s) => src = ip(s),
            _ => {}
        }
    }
    let dst = match (dst, r.header.address_family) {
        (Some(d), _) => d,
        // The default route has no destination attribute.
        (None, AddressFamily::Inet) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        (None, AddressFamily::Inet6) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        (None, _) => return None,
    };
    Some(Route {
        dst,
        prefix_len: r.header.destination_prefix_length,
        oif,
        protocol: r.header.protocol.into(),
        kind: r.header.kind.into(),
        src,
    })
}

/// A route message for the host prefix of `ip` (its family, /32 or /128, destination).
fn host_message(ip: IpAddr) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    m.header.destination_prefix_length = full_len(ip);
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::from(ip)));
    m
}

/// The message for vipd's route to `vip` on `link` with preferred source `src`.
fn vip_route(link: &Link, vip: IpAddr, src: Option<IpAddr>) -> RouteMessage {
    let mut m = host_message(vip);
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::from(RTPROT_VIPD);
    m.header.scope = RouteScope::Link;
    m.header.kind = RouteType::Unicast;
    m.attributes.push(RouteAttribute::Oif(link.index));
    if let Some(s) = src {
        m.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(s)));
    }
    m
}

/// ` src <addr>`, or nothing: how route messages name a preferred source.
pub(crate) fn src_text(src: Option<IpAddr>) -> String {
    src.map_or_else(String::new, |s| format!(" src {s}"))
}

/// Adds vipd's route to `vip`; fails if any route to it exists.
pub(crate) fn add(
    rtnl: &mut Rtnl,
    link: &Link,
    vip: IpAddr,
    src: Option<IpAddr>,
) -> Result<(), ReachError> {
    put(rtnl, link, vip, src, NLM_F_CREATE | NLM_F_EXCL, "add")
}

/// Replaces vipd's route to `vip` (a new source address).
pub(crate) fn replace(
    rtnl: &mut Rtnl,
    link: &Link,
    vip: IpAddr,
    src: Option<IpAddr>,
) -> Result<(), ReachError> {
    put(rtnl, link, vip, src, NLM_F_REPLACE, "replace")
}

/// Writes vipd's route to `vip` with `flags`; `verb` names the write in errors.
fn put(
    rtnl: &mut Rtnl,
    link: &Link,
    vip: IpAddr,
    src: Option<IpAddr>,
    flags: u16,
    verb: &str,
) -> Result<(), ReachError> {
    rtnl.write(
        RouteNetlinkMessage::NewRoute(vip_route(link, vip, src)),
        flags,
        &format!(
            "{verb} route {vip}/{} dev {}{}",
            full_len(vip),
            link.name,
            src_text(src)
        ),
    )
}

/// Deletes vipd's route to `vip` on `link` (the kernel matches protocol and interface).
pub(crate) fn delete(rtnl: &mut Rtnl, link: &Link, vip: IpAddr) -> Result<(), ReachError> {
    let mut m = vip_route(link, vip, None);
    m.header.scope = RouteScope::NoWhere;
    rtnl.write(
        RouteNetlinkMessage::DelRoute(m),
        0,
        &format!("delete route {vip}/{} dev {}", full_len(vip), link.name),
    )
}

/// What the kernel's route lookup says about a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// `RTN_*` of the route found.
    pub kind: u8,
    pub oif: u32,
    /// The source address a local program's packet to it gets.
    pub src: Option<IpAddr>,
}

/// Looks `dst` up as `ip route get` does. `None` when the kernel has no route to it.
pub(crate) fn lookup(rtnl: &mut Rtnl, dst: IpAddr) -> Result<Option<Lookup>, ReachError> {
    let m = host_message(dst);
    let what = format!("look up the route to {dst}");
    match rtnl.request(RouteNetlinkMessage::GetRoute(m), &what) {
        Ok(replies) => Ok(replies.iter().find_map(|r| match r {
            RouteNetlinkMessage::NewRoute(r) => decode(r).map(|d| Lookup {
                kind: d.kind,
                oif: d.oif,
                src: d.src,
            }),
            _ => None,
        })),
        Err(ReachError::Kernel { source, .. })
            if matches!(
                source.raw_os_error(),
                Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::EINVAL | libc::EACCES)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
