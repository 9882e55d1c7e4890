//! The interfaces, addresses and routes of the network namespace, read over rtnetlink,
//! and the interface and address writes that change them (routes: [`super::route`]).

use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope},
    link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
    AddressFamily, RouteNetlinkMessage,
};

use super::{
    route::{self, Route},
    rtnl::Rtnl,
    ReachError,
};

/// An interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` (`dummy`, `veth`, ...), if the link has one.
    pub kind: Option<String>,
    pub up: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// `IFA_SCOPE`: 0 global, 253 link, 254 host.
    pub scope: u8,
}

/// The IPv4 address scope of VIP addresses vipd added before it used routes.
pub const SCOPE_HOST: u8 = 254;

impl Addr {
    /// Whether `ip` lies in this address's subnet (not counting host-length prefixes).
    pub fn subnet_contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) if self.prefix_len < 32 => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) if self.prefix_len < 128 => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }

    /// Whether this is what vipd once added for a VIP: a host-length address (IPv4 with
    /// host scope).
    pub fn is_host_vip(&self) -> bool {
        match self.addr {
            IpAddr::V4(_) => self.prefix_len == 32 && self.scope == SCOPE_HOST,
            IpAddr::V6(_) => self.prefix_len == 128,
        }
    }
}

/// Every interface and address of the namespace, and the routes of its main table that
/// matter to vipd (see [`super::route::Route`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetState {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<Route>,
}

impl NetState {
    pub(crate) fn read(rtnl: &mut Rtnl) -> Result<NetState, ReachError> {
        let links: Vec<Link> = rtnl
            .dump(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                "list the interfaces",
            )?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link(&l)),
                _ => None,
            })
            .collect();
        let addrs = rtnl
            .dump(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                "list the addresses",
            )?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => addr(&a),
                _ => None,
            })
            .collect();
        let dummies: Vec<u32> = links
            .iter()
            .filter(|l| l.kind.as_deref() == Some("dummy"))
            .map(|l| l.index)
            .collect();
        let routes = route::read(rtnl, &dummies)?;
        Ok(NetState {
            links,
            addrs,
            routes,
        })
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.name == name)
    }
}

fn link(m: &LinkMessage) -> Link {
    let mut name = String::new();
    let mut kind = None;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => name.clone_from(n),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Link {
        index: m.header.index,
        name,
        kind,
        up: m.header.flags.contains(LinkFlags::Up),
    }
}

fn addr(m: &AddressMessage) -> Option<Addr> {
    // IPv4 puts the interface's own address in IFA_LOCAL (IFA_ADDRESS is the peer's on
    // point-to-point links); IPv6 only sends IFA_ADDRESS.
    let mut local = None;
    let mut address = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    Some(Addr {
        index: m.header.index,
        addr: local.or(address)?,
        prefix_len: m.header.prefix_len,
        scope: m.header.scope.into(),
    })
}

/// Creates a dummy interface, up.
pub(crate) fn create_dummy(rtnl: &mut Rtnl, name: &str) -> Result<(), ReachError> {
    let mut m = LinkMessage::default();
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Dummy,
        )]));
    rtnl.write(
        RouteNetlinkMessage::NewLink(m),
        NLM_F_CREATE | NLM_F_EXCL,
        &format!("create dummy interface {name}"),
    )
}

/// Sets an interface up.
pub(crate) fn set_up(rtnl: &mut Rtnl, link: &Link) -> Result<(), ReachError> {
    let mut m = LinkMessage::default();
    m.header.index = link.index;
    m.header.flags = LinkFlags::Up;
    m.header.change_mask = LinkFlags::Up;
    rtnl.write(
        RouteNetlinkMessage::SetLink(m),
        0,
        &format!("set interface {} up", link.name),
    )
}

/// Deletes an interface.
pub(crate) fn delete_link(rtnl: &mut Rtnl, link: &Link) -> Result<(), ReachError> {
    let mut m = LinkMessage::default();
    m.header.index = link.index;
    rtnl.write(
        RouteNetlinkMessage::DelLink(m),
        0,
        &format!("delete interface {}", link.name),
    )
}

/// The address message of a VIP as vipd once added them (before VIPs were routes): /32
/// with host scope, or /128 without duplicate address detection. Only used to remove
/// them.
fn vip_message(index: u32, vip: IpAddr) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    match vip {
        IpAddr::V4(_) => {
            m.header.family = AddressFamily::Inet;
            m.header.prefix_len = 32;
            m.header.scope = AddressScope::Host;
            m.attributes.push(AddressAttribute::Local(vip));
            m.attributes.push(AddressAttribute::Address(vip));
        }
        IpAddr::V6(_) => {
            m.header.family = AddressFamily::Inet6;
            m.header.prefix_len = 128;
            m.header.scope = AddressScope::Universe;
            m.header.flags = AddressHeaderFlags::Nodad;
            m.attributes.push(AddressAttribute::Address(vip));
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
    }
    m
}

/// Removes a VIP address vipd added in its earlier layout.
pub(crate) fn del_vip_address(rtnl: &mut Rtnl, link: &Link, a: &Addr) -> Result<(), ReachError> {
    let mut m = vip_message(link.index, a.addr);
    m.header.prefix_len = a.prefix_len;
    rtnl.write(
        RouteNetlinkMessage::DelAddress(m),
        0,
        &format!("remove VIP address {} from {}", a.addr, link.name),
    )
}
