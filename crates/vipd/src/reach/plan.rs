//! What reachability needs, from what the namespace holds: pure, so it is unit-tested.
//!
//! Rules:
//! * Each wanted VIP gets vipd's route ([`super::route`]) on the VIP interface, with the
//!   preferred source chosen for it ([`super::source`]); a route of vipd's with another
//!   source is replaced. The interface is a dummy vipd creates (up) if it does not exist;
//!   an existing interface of that name must be a dummy.
//! * A VIP must not be local or shadow someone else's route: a VIP that is an address of
//!   any interface, lies inside the subnet of one, or already has a host route that is
//!   not vipd's is a conflict, and nothing is written. The one exception is the earlier
//!   layout, where vipd put VIPs as addresses on its dummy: such an address (recorded,
//!   on the configured dummy, host-length) is converted into a route.
//! * vipd removes only what it can prove is its own: a route with vipd's protocol on the
//!   configured dummy, recorded; a recorded legacy VIP address on that dummy; the dummy
//!   itself when vipd created it and it carries nothing else. A record entry naming any
//!   other interface, or an address that is not host-length, is ignored with a note and
//!   dropped from the record. Nothing in use by an IPVS service (vipd's or anyone's) is
//!   removed.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    netstate::{Addr, Link, NetState},
    route::Route,
    ReachError, ReachRecord, VipConflict,
};

/// `RTPROT_KERNEL`: routes the kernel adds for addresses.
const RTPROT_KERNEL: u8 = 2;

/// What to do to the VIP interface before VIP routes are added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkAction {
    None,
    Create,
    SetUp(Link),
}

/// The rtnetlink writes of one reconcile, and the record entries that went stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachPlan {
    pub interface: String,
    pub link: LinkAction,
    /// VIP routes to add: (VIP, preferred source).
    pub add: Vec<(IpAddr, Option<IpAddr>)>,
    /// vipd's VIP routes whose source changes.
    pub replace: Vec<(IpAddr, Option<IpAddr>)>,
    /// Legacy VIP addresses of wanted VIPs, removed once their route is in place.
    pub convert: Vec<(Link, Addr)>,
    /// vipd's routes no longer needed, on the VIP interface.
    pub remove: Vec<(Link, Route)>,
    /// Legacy VIP addresses no longer needed.
    pub remove_addresses: Vec<(Link, Addr)>,
    /// The VIP interface, when vipd created it and it will carry nothing once the
    /// removals are done.
    pub delete: Option<Link>,
    /// Record entries to drop: gone already, or never provably vipd's.
    pub forget_routes: Vec<(String, IpAddr)>,
    pub forget_addresses: Vec<(String, IpAddr)>,
    pub forget_interfaces: Vec<String>,
    /// Why record entries were ignored, for the log.
    pub notes: Vec<String>,
}

impl ReachPlan {
    /// Rtnetlink writes the plan makes.
    pub fn writes(&self) -> usize {
        usize::from(self.link != LinkAction::None)
            + self.add.len()
            + self.replace.len()
            + self.convert.len()
            + self.remove.len()
            + self.remove_addresses.len()
            + usize::from(self.delete.is_some())
    }

    /// The record once the plan's creations are done (written before them, as intent).
    pub fn intent(&self, record: &ReachRecord) -> ReachRecord {
        let mut r = record.clone();
        for f in &self.forget_routes {
            r.routes.remove(f);
        }
        for f in &self.forget_addresses {
            r.addresses.remove(f);
        }
        for f in &self.forget_interfaces {
            r.created_interfaces.remove(f);
        }
        if self.link == LinkAction::Create {
            r.created_interfaces.insert(self.interface.clone());
        }
        for (vip, _) in self.add.iter().chain(&self.replace) {
            r.routes.insert((self.interface.clone(), *vip));
        }
        r
    }

    /// The record once the plan's removals are done too.
    pub fn done(&self, record: &ReachRecord) -> ReachRecord {
        let mut r = self.intent(record);
        for (l, route) in &self.remove {
            r.routes.remove(&(l.name.clone(), route.dst));
        }
        for (l, a) in self.convert.iter().chain(&self.remove_addresses) {
            r.addresses.remove(&(l.name.clone(), a.addr));
        }
        if let Some(l) = &self.delete {
            r.created_interfaces.remove(&l.name);
            r.routes.retain(|(i, _)| *i != l.name);
            r.addresses.retain(|(i, _)| *i != l.name);
        }
        r
    }
}

fn link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// Plans reachability: `wanted` maps each VIP to its preferred source; `in_use` holds the
/// VIP addresses of every IPVS service that stays in the kernel, vipd's or not.
pub fn plan(
    net: &NetState,
    interface: &str,
    wanted: &BTreeMap<IpAddr, Option<IpAddr>>,
    in_use: &BTreeSet<IpAddr>,
    record: &ReachRecord,
) -> Result<ReachPlan, ReachError> {
    let by_index: BTreeMap<u32, &Link> = net.links.iter().map(|l| (l.index, l)).collect();
    let name_of = |i: u32| by_index.get(&i).map_or("?", |l| l.name.as_str());
    // The configured interface, when it is a dummy: the only place vipd acts on.
    let link = net.link(interface);
    let dummy = link.filter(|l| l.kind.as_deref() == Some("dummy"));
    let legacy = |a: &Addr| {
        dummy.is_some_and(|d| d.index == a.index)
            && a.is_host_vip()
            && record.addresses.contains(&(interface.to_owned(), a.addr))
    };

    let mut conflicts = Vec::new();
    let mut convert = Vec::new();
    for vip in wanted.keys() {
        for a in &net.addrs {
            if a.addr == *vip {
                match dummy.filter(|_| legacy(a)) {
                    Some(d) => convert.push((d.clone(), *a)),
                    None => conflicts.push(VipConflict {
                        vip: *vip,
                        problem: format!(
                            "is an address of interface {}: a local program's connection to \
                             it would leave with the VIP as its source, which no backend can \
                             answer; remove the address or choose another VIP",
                            name_of(a.index)
                        ),
                    }),
                }
            } else if a.subnet_contains(*vip) && !link_local(&a.addr) {
                conflicts.push(VipConflict {
                    vip: *vip,
                    problem: format!(
                        "is inside {}/{}, the subnet of interface {}: its route would hide \
                         a host of that subnet from this machine; choose a VIP outside \
                         every connected subnet",
                        a.addr,
                        a.prefix_len,
                        name_of(a.index)
                    ),
                });
            }
        }
        for r in &net.routes {
            let ours = dummy.is_some_and(|d| r.is_vipds_on(d));
            if r.dst == *vip && r.is_host() && !ours && r.protocol != RTPROT_KERNEL {
                conflicts.push(VipConflict {
                    vip: *vip,
                    problem: format!(
                        "already has a route that vipd did not make ({vip}/{} dev {} proto {})",
                        r.prefix_len,
                        name_of(r.oif),
                        r.protocol
                    ),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ReachError::Conflicts(conflicts));
    }

    let link_action = match link {
        _ if wanted.is_empty() => LinkAction::None,
        Some(l) if dummy.is_none() => {
            return Err(ReachError::NotDummy {
                name: l.name.clone(),
                kind: l.kind.clone().unwrap_or_else(|| "kind-less".into()),
            })
        }
        Some(l) if !l.up => LinkAction::SetUp(l.clone()),
        Some(_) => LinkAction::None,
        None => LinkAction::Create,
    };

    let mut add = Vec::new();
    let mut replace = Vec::new();
    for (vip, src) in wanted {
        let existing = dummy.and_then(|d| {
            net.routes
                .iter()
                .find(|r| r.dst == *vip && r.is_vipds_on(d))
        });
        match existing {
            None => add.push((*vip, *src)),
            Some(r) if r.src != *src => replace.push((*vip, *src)),
            Some(_) => {}
        }
    }

    let mut notes = Vec::new();
    let mut remove = Vec::new();
    let mut forget_routes = Vec::new();
    for entry @ (iface, vip) in &record.routes {
        if iface != interface {
            notes.push(format!(
                "the ownership record lists a route to {vip} on {iface}, which is not the \
                 VIP interface {interface}: ignored"
            ));
            forget_routes.push(entry.clone());
            continue;
        }
        if wanted.contains_key(vip) {
            continue;
        }
        let found = dummy.and_then(|d| {
            net.routes
                .iter()
                .find(|r| r.dst == *vip && r.is_vipds_on(d))
                .map(|r| (d, r))
        });
        match found {
            None => forget_routes.push(entry.clone()),
            Some(_) if in_use.contains(vip) => {}
            Some((d, r)) => remove.push((d.clone(), *r)),
        }
    }

    let mut remove_addresses = Vec::new();
    let mut forget_addresses = Vec::new();
    for entry @ (iface, ip) in &record.addresses {
        let found = dummy.filter(|d| d.name == *iface).and_then(|d| {
            net.addrs
                .iter()
                .find(|a| a.index == d.index && a.addr == *ip)
                .map(|a| (d, a))
        });
        match found {
            None if iface != interface || dummy.is_none() => {
                notes.push(format!(
                    "the ownership record lists address {ip} on {iface}, which is not vipd's \
                     dummy interface {interface}: ignored"
                ));
                forget_addresses.push(entry.clone());
            }
            None => forget_addresses.push(entry.clone()),
            Some((_, a)) if !a.is_host_vip() => {
                notes.push(format!(
                    "the ownership record lists address {}/{} on {iface}, which is not an \
                     address vipd adds: ignored",
                    a.addr, a.prefix_len
                ));
                forget_addresses.push(entry.clone());
            }
            Some(_) if wanted.contains_key(ip) || in_use.contains(ip) => {}
            Some((d, a)) => remove_addresses.push((d.clone(), *a)),
        }
    }

    let mut forget_interfaces = Vec::new();
    for name in &record.created_interfaces {
        if name != interface {
            notes.push(format!(
                "the ownership record lists interface {name} as created by vipd, but vipd \
                 only manages its VIP interface {interface}: ignored (delete it by hand if it \
                 is a leftover)"
            ));
            forget_interfaces.push(name.clone());
        } else if link.is_none() {
            forget_interfaces.push(name.clone());
        }
    }
    let delete = dummy
        .filter(|d| record.created_interfaces.contains(&d.name) && wanted.is_empty())
        .filter(|d| {
            let addr_goes = |a: &Addr| {
                link_local(&a.addr)
                    || convert
                        .iter()
                        .chain(&remove_addresses)
                        .any(|(_, x)| x.addr == a.addr)
            };
            let route_goes = |r: &Route| {
                r.protocol == RTPROT_KERNEL || remove.iter().any(|(_, x)| x.dst == r.dst)
            };
            net.addrs
                .iter()
                .filter(|a| a.index == d.index)
                .all(addr_goes)
                && net
                    .routes
                    .iter()
                    .filter(|r| r.oif == d.index)
                    .all(route_goes)
        })
        .cloned();

    Ok(ReachPlan {
        interface: interface.to_owned(),
        link: link_action,
        add,
        replace,
        convert,
        remove,
        remove_addresses,
        delete,
        forget_routes,
        forget_addresses,
        forget_interfaces,
        notes,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
