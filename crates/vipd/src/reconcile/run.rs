//! One reconcile, start to end: check everything, record intent, write, record the result.
//!
//! 1. desired state from the (already validated) config, weight overrides on top;
//! 2. lock and read the ownership record; dump the kernel's IPVS table;
//! 3. refuse if a declared service exists but is not vipd's (nothing touched);
//! 4. plan the IPVS writes and encode all of them; plan reachability: each VIP's source
//!    address from the kernel's routes to its backends, and the route writes (all
//!    read-only; a VIP that conflicts with the host stops the apply here);
//! 5. write the record with everything about to be created (intent);
//! 6. sysctls, interface and new VIP routes; the IPVS batch; then unused VIP routes and
//!    the interface if it is left empty;
//! 7. write the record as it now is.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::PathBuf,
    time::{Instant, SystemTime},
};

use vipd_ipvs::{Client, ServiceFlags, ServiceKey};

use super::{
    apply::{encode, send},
    desired::{vip_address, DesiredState, WeightOverrides},
    diff::{self, Plan},
    error::ReconcileError,
    op::Op,
    snapshot::Snapshot,
    state::{Ownership, StateFile},
    summary::{ApplySummary, DrainStatus},
};
use crate::{
    config::Config,
    reach::{self, route::src_text, sysctl, LinkAction, Reach, ReachError, ReachPlan, Sysctl},
};

/// How to run [`apply`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub state_file: PathBuf,
    /// Plan and report, write nothing (not even the record).
    pub dry_run: bool,
    pub overrides: WeightOverrides,
}

/// Brings the kernel to `config`. Kernel refusals of single writes are reported in the
/// summary's `failures`; everything else that stops the apply is an error, raised before
/// the first write whenever it can be known then.
pub fn apply(config: &Config, opts: &ApplyOptions) -> Result<ApplySummary, ReconcileError> {
    let started = Instant::now();
    let desired = DesiredState::from_config(config).with_overrides(&opts.overrides);
    let state = StateFile::lock(&opts.state_file)?;
    let owned = state.load()?;
    let mut client = Client::connect().map_err(ReconcileError::Connect)?;
    let snapshot_started = Instant::now();
    let kernel = Snapshot::read(&mut client, |k| {
        owned.owns(k) || desired.services.contains_key(k)
    })?;
    let snapshot_us = micros(snapshot_started);

    let conflicts = diff::conflicts(&desired, &kernel, &owned);
    if !conflicts.is_empty() {
        return Err(ReconcileError::Conflict(
            conflicts
                .iter()
                .map(|k| format!("{k} (service {:?})", desired.services[k].name))
                .collect(),
        ));
    }
    let now = SystemTime::now();
    let plan_started = Instant::now();
    let plan = diff::plan(&desired, &kernel, &owned, now);
    let encoded = encode(&plan.ops)?;
    let plan_us = micros(plan_started);

    let mut reach = Reach::open()?;
    let net = reach.read()?;
    let located = |e: ReachError| match e {
        ReachError::Conflicts(all) => ReconcileError::Vips(
            config
                .origin
                .located(&all)
                .iter()
                .map(ToString::to_string)
                .collect(),
        ),
        e => ReconcileError::Reach(e),
    };
    let sources = reach
        .sources(&net, &vip_backends(&plan, &desired, &kernel))
        .map_err(located)?;
    let deleted: BTreeSet<&ServiceKey> = plan
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::DelService(k) => Some(k),
            _ => None,
        })
        .collect();
    let in_use: BTreeSet<_> = kernel
        .services
        .keys()
        .filter(|k| !deleted.contains(k))
        .filter_map(vip_address)
        .collect();
    let reach_plan = reach::plan(
        &net,
        &config.daemon.vip_interface,
        &sources.by_vip,
        &in_use,
        &owned.reach,
    )
    .map_err(located)?;
    let sysctls = needed_sysctls(&plan, &desired, &kernel);

    let mut summary = ApplySummary {
        dry_run: opts.dry_run,
        services: config.services.len(),
        backends: config.backend_count(),
        ops: plan.ops.iter().map(ToString::to_string).collect(),
        reach: reach_text(&reach_plan),
        notes: sources
            .notes
            .iter()
            .chain(&reach_plan.notes)
            .cloned()
            .collect(),
        sysctls: sysctls
            .iter()
            .map(|s| format!("{}={}: {}", s.name, s.value, s.reason))
            .collect(),
        foreign_services: kernel
            .services
            .keys()
            .filter(|k| !owned.owns(k) && !plan.owned.contains_key(k))
            .count(),
        state_file: opts.state_file.display().to_string(),
        snapshot_us,
        plan_us,
        ..ApplySummary::default()
    };
    if opts.dry_run {
        summary.draining = draining(&plan, &kernel);
        summary.elapsed_us = micros(started);
        summary.max_rss_kib = max_rss_kib();
        return Ok(summary);
    }

    // Intent: everything about to be created is recorded before it exists.
    let mut record = owned.clone();
    for k in &plan.created {
        if let Some(s) = plan.owned.get(k) {
            record.services.insert(*k, s.clone());
        }
    }
    record.reach = reach_plan.intent(&owned.reach);
    if record != owned {
        state.store(&record)?;
    }

    summary.sysctl_writes = reach::ensure_sysctls(&sysctls)?;
    reach.prepare(&reach_plan)?;
    let send_started = Instant::now();
    let outcome = send(&mut client, &encoded)?;
    summary.send_us = micros(send_started);
    summary.ipvs_writes = outcome.writes;
    let done = if outcome.failures.is_empty() {
        reach.cleanup(&reach_plan)?;
        final_record(&plan, &owned, reach_plan.done(&owned.reach), &[])
    } else {
        // Some write was refused: keep ownership of whatever it was about and leave the
        // VIPs in place; the next apply starts from what the kernel then holds.
        final_record(&plan, &owned, record.reach.clone(), &outcome.failed)
    };
    if done != record {
        state.store(&done)?;
    }
    summary.rtnetlink_writes = reach.writes();
    summary.rtnetlink_skipped = reach.skipped();
    summary.netlink_writes = summary.ipvs_writes + summary.rtnetlink_writes;
    summary.failures = outcome.failures;
    summary.draining = draining(&plan, &kernel);
    summary.elapsed_us = micros(started);
    summary.max_rss_kib = max_rss_kib();
    Ok(summary)
}

/// Peak resident set size of this process, KiB (0 if unknown).
fn max_rss_kib() -> u64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc == 0 {
        u64::try_from(ru.ru_maxrss).unwrap_or(0)
    } else {
        0
    }
}

/// The record after the writes; `failed` are indexes of refused ops.
fn final_record(
    plan: &Plan,
    before: &Ownership,
    reach: reach::ReachRecord,
    failed: &[usize],
) -> Ownership {
    let mut o = Ownership {
        services: plan.owned.clone(),
        drains: plan.drains.clone(),
        reach,
    };
    for op in failed.iter().filter_map(|i| plan.ops.get(*i)) {
        let key = op.service();
        if let Some(s) = before.services.get(key) {
            o.services.entry(*key).or_insert_with(|| s.clone());
        }
        if let Op::DelDest(k, id) = op {
            if let Some(since) = before.drains.get(&(*k, *id)) {
                o.drains.insert((*k, *id), *since);
            }
        }
    }
    o
}

/// Each VIP vipd owns after this apply, with the backends of its services of the same
/// family (config order; the kernel's for services that are leaving).
fn vip_backends(
    plan: &Plan,
    desired: &DesiredState,
    kernel: &Snapshot,
) -> BTreeMap<IpAddr, Vec<IpAddr>> {
    backends_by_vip(plan.owned.keys().map(|k| {
        let ids = match (desired.services.get(k), kernel.services.get(k)) {
            (Some(d), _) => d.dests.keys().map(|id| id.ip).collect(),
            (None, Some(s)) => s.dests.keys().map(|id| id.ip).collect(),
            (None, None) => Vec::new(),
        };
        (k, ids)
    }))
}

/// Each VIP of `services` with their backend addresses of its family, in order, once
/// each (fwmark services have no VIP and are left out).
pub(super) fn backends_by_vip<'a>(
    services: impl IntoIterator<Item = (&'a ServiceKey, Vec<IpAddr>)>,
) -> BTreeMap<IpAddr, Vec<IpAddr>> {
    let mut out: BTreeMap<IpAddr, Vec<IpAddr>> = BTreeMap::new();
    for (k, ids) in services {
        let Some(vip) = vip_address(k) else { continue };
        let backends = out.entry(vip).or_default();
        for ip in ids {
            if ip.is_ipv4() == vip.is_ipv4() && !backends.contains(&ip) {
                backends.push(ip);
            }
        }
    }
    out
}

/// `expire_nodest_conn` and `conntrack` whenever vipd owns a service (its deletions rely
/// on the first, replies behind a stateful firewall on the second);
/// `expire_quiescent_template` when one of them is persistent.
fn needed_sysctls(plan: &Plan, desired: &DesiredState, kernel: &Snapshot) -> Vec<Sysctl> {
    let mut out = Vec::new();
    if plan.owned.is_empty() {
        return out;
    }
    out.push(sysctl::EXPIRE_NODEST_CONN);
    out.push(sysctl::CONNTRACK);
    let persistent = plan.owned.keys().any(|k| {
        let flags = desired
            .services
            .get(k)
            .map(|s| s.service.flags)
            .or_else(|| kernel.services.get(k).map(|s| s.service.flags));
        flags.is_some_and(|f| f.contains(ServiceFlags::PERSISTENT))
    });
    if persistent {
        out.push(sysctl::EXPIRE_QUIESCENT_TEMPLATE);
    }
    out
}

fn draining(plan: &Plan, kernel: &Snapshot) -> Vec<DrainStatus> {
    plan.drains
        .iter()
        .map(|((k, id), since)| {
            let d = kernel.services.get(k).and_then(|s| s.dests.get(id));
            DrainStatus {
                service: k.to_string(),
                backend: id.to_string(),
                since_unix_ms: since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                active_conns: d.map_or(0, |d| d.active_conns),
                inactive_conns: d.map_or(0, |d| d.inactive_conns),
            }
        })
        .collect()
}

fn reach_text(p: &ReachPlan) -> Vec<String> {
    let mut out = Vec::new();
    match &p.link {
        LinkAction::None => {}
        LinkAction::Create => out.push(format!("create dummy interface {} (up)", p.interface)),
        LinkAction::SetUp(l) => out.push(format!("set interface {} up", l.name)),
    }
    for (vip, s) in &p.add {
        out.push(format!(
            "add route {vip} dev {}{}",
            p.interface,
            src_text(*s)
        ));
    }
    for (vip, s) in &p.replace {
        out.push(format!(
            "replace route {vip} dev {}{}",
            p.interface,
            src_text(*s)
        ));
    }
    for (l, a) in &p.convert {
        out.push(format!(
            "remove address {}/{} from {} (now a route)",
            a.addr, a.prefix_len, l.name
        ));
    }
    for (l, r) in &p.remove {
        out.push(format!(
            "delete route {}/{} dev {}",
            r.dst, r.prefix_len, l.name
        ));
    }
    for (l, a) in &p.remove_addresses {
        out.push(format!(
            "remove address {}/{} from {}",
            a.addr, a.prefix_len, l.name
        ));
    }
    if let Some(l) = &p.delete {
        out.push(format!("delete interface {}", l.name));
    }
    out
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}
