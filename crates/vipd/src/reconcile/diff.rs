//! The planner: desired state against the kernel's, to the smallest ordered list of writes.
//! Pure: no I/O, the clock is an argument.
//!
//! Order: for each service in key order, a new service is created and then its backends;
//! an existing one gets `SET_SERVICE` if its settings differ, then new backends, changed
//! backends, and last the backends leaving (weight 0 or deletion), so a service never
//! passes through a moment with fewer backends than needed. Services leaving the config
//! come after all desired ones. Nothing is written where kernel and desired state agree.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, SystemTime},
};

use vipd_ipvs::{Destination, Service, ServiceFlags, ServiceKey};

use super::{
    desired::{DesiredState, DestId, RemovalPolicy, RemovalRule},
    op::Op,
    snapshot::Snapshot,
    state::{OwnedService, Ownership},
};

/// What a plan leaves behind once applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Services vipd will own afterwards: every desired one, plus removed ones still
    /// draining.
    pub owned: BTreeMap<ServiceKey, OwnedService>,
    /// Services the plan creates (recorded as owned before anything is sent).
    pub created: BTreeSet<ServiceKey>,
    /// Backends draining afterwards, with when each drain began.
    pub drains: BTreeMap<(ServiceKey, DestId), SystemTime>,
}

/// Services the config declares that exist in the kernel but that vipd did not create.
/// vipd refuses to apply while there is any: adopting them silently would take over
/// someone else's service.
pub fn conflicts(desired: &DesiredState, kernel: &Snapshot, owned: &Ownership) -> Vec<ServiceKey> {
    desired
        .services
        .keys()
        .filter(|k| kernel.services.contains_key(k) && !owned.owns(k))
        .copied()
        .collect()
}

/// Plans the writes. Call only when [`conflicts`] is empty (a conflicting service would be
/// treated as vipd's own). Services in the kernel that are neither desired nor owned are
/// not looked at.
pub fn plan(desired: &DesiredState, kernel: &Snapshot, owned: &Ownership, now: SystemTime) -> Plan {
    let mut p = Plan {
        ops: Vec::new(),
        owned: BTreeMap::new(),
        created: BTreeSet::new(),
        drains: BTreeMap::new(),
    };
    let no_dests = BTreeMap::new();
    for (key, want) in &desired.services {
        p.owned.insert(
            *key,
            OwnedService {
                name: want.name.clone(),
                removal: want.removal,
            },
        );
        let Some(have) = kernel.services.get(key) else {
            p.created.insert(*key);
            p.ops.push(Op::NewService(want.service.clone()));
            for d in want.dests.values() {
                p.ops.push(Op::NewDest(*key, d.clone()));
            }
            continue;
        };
        if service_differs(&want.service, &have.service) {
            p.ops.push(Op::SetService(want.service.clone()));
        }
        backends(
            key,
            &want.dests,
            &have.dests,
            want.removal,
            owned,
            now,
            &mut p,
        );
    }
    for (key, rec) in &owned.services {
        if desired.services.contains_key(key) {
            continue;
        }
        // Gone from the kernel already (deleted by hand): forget it.
        let Some(have) = kernel.services.get(key) else {
            continue;
        };
        let mut sub = Plan {
            ops: Vec::new(),
            owned: BTreeMap::new(),
            created: BTreeSet::new(),
            drains: BTreeMap::new(),
        };
        let left = backends(
            key,
            &no_dests,
            &have.dests,
            rec.removal,
            owned,
            now,
            &mut sub,
        );
        if left == 0 {
            // Every backend may go now: one write removes the service with them.
            p.ops.push(Op::DelService(*key));
        } else {
            p.ops.append(&mut sub.ops);
            p.drains.append(&mut sub.drains);
            p.owned.insert(*key, rec.clone());
        }
    }
    p
}

/// Plans the backend writes of one existing service into `p`; returns how many backends
/// the service keeps in the kernel afterwards.
fn backends(
    key: &ServiceKey,
    want: &BTreeMap<DestId, Destination>,
    have: &BTreeMap<DestId, Destination>,
    removal: RemovalPolicy,
    owned: &Ownership,
    now: SystemTime,
    p: &mut Plan,
) -> usize {
    let mut changed = Vec::new();
    for (id, d) in want {
        match have.get(id) {
            None => p.ops.push(Op::NewDest(*key, d.clone())),
            Some(h) if dest_differs(d, h) => changed.push(Op::SetDest(*key, d.clone())),
            Some(_) => {}
        }
    }
    p.ops.append(&mut changed);
    let mut kept = want.len();
    for (id, h) in have {
        if want.contains_key(id) {
            continue;
        }
        let since = owned.drains.get(&(*key, *id)).copied().unwrap_or(now);
        if removable(h, removal, since, now) {
            p.ops.push(Op::DelDest(*key, *id));
            continue;
        }
        kept += 1;
        if h.weight != 0 {
            let mut quiesced = kernel_settings(h);
            quiesced.weight = 0;
            p.ops.push(Op::SetDest(*key, quiesced));
        }
        p.drains.insert((*key, *id), since);
    }
    kept
}

/// May a backend that left the config be deleted now?
pub fn removable(
    d: &Destination,
    removal: RemovalPolicy,
    since: SystemTime,
    now: SystemTime,
) -> bool {
    let idle = match removal.rule {
        RemovalRule::Expire => return true,
        RemovalRule::DrainTcp => d.active_conns == 0,
        RemovalRule::DrainFlows => d.active_conns == 0 && d.inactive_conns == 0,
    };
    idle || now.duration_since(since).unwrap_or(Duration::ZERO) >= removal.drain_timeout
}

/// The writable settings of a dumped destination (counters dropped).
fn kernel_settings(d: &Destination) -> Destination {
    let mut out = Destination::new(d.addr, d.port, d.forward);
    out.weight = d.weight;
    out.upper_threshold = d.upper_threshold;
    out.lower_threshold = d.lower_threshold;
    out
}

/// Do the writable settings differ? (`HASHED` and the counters are the kernel's own.)
pub fn service_differs(want: &Service, have: &Service) -> bool {
    let flags = |s: &Service| s.flags & !ServiceFlags::HASHED;
    want.scheduler != have.scheduler
        || flags(want) != flags(have)
        || want.timeout != have.timeout
        || want.netmask != have.netmask
        || want.pe_name != have.pe_name
}

/// Do the writable settings differ? (Connection counts and stats are the kernel's own.)
pub fn dest_differs(want: &Destination, have: &Destination) -> bool {
    want.forward != have.forward
        || want.weight != have.weight
        || want.upper_threshold != have.upper_threshold
        || want.lower_threshold != have.lower_threshold
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
