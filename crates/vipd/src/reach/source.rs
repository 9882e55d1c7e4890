//! The source address of each VIP: the address the kernel would give a local program's
//! packet to the VIP's backends. A VIP route carries it as its preferred source, so a
//! connection to the VIP leaves with an address the backends can answer, and IPVS only
//! rewrites the destination.
//!
//! When a VIP's backends are reached from different addresses (a host with several
//! uplinks), one address serves them all: the one most of its backends are reached from
//! (ties: the first backend's in config order). The others must route that address back
//! (or the operator adds SNAT for them); vipd says so in a note. A VIP none of whose
//! backends has a route gets no preferred source (the kernel then picks one).

use std::{collections::BTreeMap, net::IpAddr};

use super::{
    route::{Lookup, RTN_LOCAL},
    ReachError, VipConflict,
};

/// The chosen sources and what the operator should know about them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// VIP -> preferred source.
    pub by_vip: BTreeMap<IpAddr, Option<IpAddr>>,
    /// Several uplinks, unroutable backends.
    pub notes: Vec<String>,
}

/// Chooses each VIP's source from the lookups of its backends (`vips` maps a VIP to its
/// backends of the same family, in config order; the same backend is looked up once).
/// A VIP that the kernel treats as a local destination (`ip route get` says `local`: a
/// local route such as an AnyIP range) is a conflict; VIPs in `addresses` (interface
/// addresses, which [`super::plan`] judges) are not looked up.
pub fn choose(
    vips: &BTreeMap<IpAddr, Vec<IpAddr>>,
    addresses: &std::collections::BTreeSet<IpAddr>,
    mut lookup: impl FnMut(IpAddr) -> Result<Option<Lookup>, ReachError>,
) -> Result<Sources, ReachError> {
    let mut cache: BTreeMap<IpAddr, Option<Lookup>> = BTreeMap::new();
    let mut out = Sources::default();
    let mut conflicts = Vec::new();
    for (vip, backends) in vips {
        if !addresses.contains(vip) && lookup(*vip)?.is_some_and(|l| l.kind == RTN_LOCAL) {
            conflicts.push(VipConflict {
                vip: *vip,
                problem: "is a local destination on this host (a local route covers it): a \
                          local program's connection to it would leave with the VIP as its \
                          source; choose a VIP outside every local range"
                    .into(),
            });
            continue;
        }
        // (source, backends reached from it), in order of first appearance.
        let mut groups: Vec<(IpAddr, Vec<IpAddr>)> = Vec::new();
        let mut unroutable = Vec::new();
        for b in backends {
            let found = match cache.get(b) {
                Some(l) => *l,
                None => {
                    let l = lookup(*b)?;
                    cache.insert(*b, l);
                    l
                }
            };
            match found.and_then(|l| l.src) {
                Some(src) => match groups.iter_mut().find(|(s, _)| *s == src) {
                    Some((_, members)) => members.push(*b),
                    None => groups.push((src, vec![*b])),
                },
                None => unroutable.push(*b),
            }
        }
        let chosen = groups
            .iter()
            .enumerate()
            .max_by_key(|(i, (_, members))| (members.len(), std::cmp::Reverse(*i)))
            .map(|(_, (src, _))| *src);
        if groups.len() > 1 {
            let list = groups
                .iter()
                .map(|(s, m)| format!("{s} for {}", join(m)))
                .collect::<Vec<_>>()
                .join("; ");
            out.notes.push(format!(
                "VIP {vip}: its backends are reached from different source addresses ({list}); \
                 local connections to it leave with {}, so every backend must be able to \
                 answer that address",
                chosen.map_or_else(String::new, |s| s.to_string())
            ));
        }
        if !unroutable.is_empty() {
            out.notes.push(format!(
                "VIP {vip}: no route to backend{} {}",
                if unroutable.len() == 1 { "" } else { "s" },
                join(&unroutable)
            ));
        }
        out.by_vip.insert(*vip, chosen);
    }
    if conflicts.is_empty() {
        Ok(out)
    } else {
        Err(ReachError::Conflicts(conflicts))
    }
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
