//! What reachability needs, from what the namespace holds: pure, so it is unit-tested.
//!
//! Rules: a VIP that is already a local address anywhere is left as it is (and is not
//! vipd's). A missing one is added to the VIP interface, which vipd creates (a dummy,
//! up) if it does not exist; an existing interface of that name must be a dummy. vipd
//! removes only addresses its record says it added, and only once no IPVS service (its
//! own or anyone's) uses them; it deletes only interfaces it created, and only once they
//! hold no address but IPv6 link-local ones.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::{
    netstate::{Addr, Link, NetState},
    ReachError, ReachRecord,
};

/// What to do to the VIP interface before VIPs are added.
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
    /// VIPs to add to `interface`.
    pub add: Vec<IpAddr>,
    /// Addresses vipd added that are no longer needed: (interface, address).
    pub remove: Vec<(Link, Addr)>,
    /// Interfaces vipd created that will hold nothing once `remove` is done.
    pub delete: Vec<Link>,
    /// Record entries whose address or interface is gone already.
    pub forget_addresses: Vec<(String, IpAddr)>,
    pub forget_interfaces: Vec<String>,
}

impl ReachPlan {
    /// Rtnetlink writes the plan makes.
    pub fn writes(&self) -> usize {
        usize::from(self.link != LinkAction::None)
            + self.add.len()
            + self.remove.len()
            + self.delete.len()
    }

    /// The record once the plan's creations are done (written before them, as intent).
    pub fn intent(&self, record: &ReachRecord) -> ReachRecord {
        let mut r = record.clone();
        for f in &self.forget_addresses {
            r.addresses.remove(f);
        }
        for f in &self.forget_interfaces {
            r.created_interfaces.remove(f);
        }
        if self.link == LinkAction::Create {
            r.created_interfaces.insert(self.interface.clone());
        }
        for a in &self.add {
            r.addresses.insert((self.interface.clone(), *a));
        }
        r
    }

    /// The record once the plan's removals are done too.
    pub fn done(&self, record: &ReachRecord) -> ReachRecord {
        let mut r = self.intent(record);
        for (l, a) in &self.remove {
            r.addresses.remove(&(l.name.clone(), a.addr));
        }
        for l in &self.delete {
            r.created_interfaces.remove(&l.name);
            r.addresses.retain(|(i, _)| *i != l.name);
        }
        r
    }
}

fn link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// Plans reachability for `wanted` VIPs on `interface`. `in_use` holds the VIP addresses of
/// every IPVS service that stays in the kernel, vipd's or not.
pub fn plan(
    net: &NetState,
    interface: &str,
    wanted: &BTreeSet<IpAddr>,
    in_use: &BTreeSet<IpAddr>,
    record: &ReachRecord,
) -> Result<ReachPlan, ReachError> {
    let local: BTreeSet<IpAddr> = net.addrs.iter().map(|a| a.addr).collect();
    let add: Vec<IpAddr> = wanted.difference(&local).copied().collect();
    let link = net.link(interface);
    let holds_wanted = link.is_some_and(|l| {
        net.addrs
            .iter()
            .any(|a| a.index == l.index && wanted.contains(&a.addr))
    });
    let link_action = match link {
        Some(l) if (!add.is_empty() || holds_wanted) && l.kind.as_deref() != Some("dummy") => {
            if add.is_empty() {
                LinkAction::None
            } else {
                return Err(ReachError::NotDummy {
                    name: l.name.clone(),
                    kind: l.kind.clone().unwrap_or_else(|| "kind-less".into()),
                });
            }
        }
        Some(l) if (!add.is_empty() || holds_wanted) && !l.up => LinkAction::SetUp(l.clone()),
        None if !add.is_empty() => LinkAction::Create,
        _ => LinkAction::None,
    };

    let by_name: BTreeMap<&str, &Link> = net.links.iter().map(|l| (l.name.as_str(), l)).collect();
    let mut remove = Vec::new();
    let mut forget_addresses = Vec::new();
    for (iface, a) in &record.addresses {
        let found = by_name.get(iface.as_str()).and_then(|l| {
            net.addrs
                .iter()
                .find(|x| x.index == l.index && x.addr == *a)
                .map(|x| (*l, x))
        });
        match found {
            None => forget_addresses.push((iface.clone(), *a)),
            Some((l, x)) if !wanted.contains(a) && !in_use.contains(a) => {
                remove.push((l.clone(), *x))
            }
            Some(_) => {}
        }
    }
    let mut delete = Vec::new();
    let mut forget_interfaces = Vec::new();
    for name in &record.created_interfaces {
        let Some(l) = by_name.get(name.as_str()) else {
            forget_interfaces.push(name.clone());
            continue;
        };
        let removed = |x: &Addr| {
            remove
                .iter()
                .any(|(rl, ra)| rl.index == x.index && ra.addr == x.addr)
        };
        let keeps_something = net
            .addrs
            .iter()
            .any(|x| x.index == l.index && !link_local(&x.addr) && !removed(x));
        let gets_something = *name == interface && !add.is_empty();
        if !keeps_something && !gets_something {
            delete.push((*l).clone());
        }
    }
    Ok(ReachPlan {
        interface: interface.to_owned(),
        link: link_action,
        add,
        remove,
        delete,
        forget_addresses,
        forget_interfaces,
    })
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
