//! The IPVS plane's full apply: the reconciler brings IPVS (and the VIP routes) to the
//! config with the health weights on top, then the fast path's table is reset to what
//! the kernel now holds and drains that began or ended are logged. Run by the plane on
//! the loop (start-up, reloads) and by the writer thread (the periodic resync); the
//! daemon never runs two at once, nor one beside a weight write.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use tracing::{info, warn};

use super::{overrides, SharedTable};
use crate::{
    config::Config,
    plane::{Applied, PlaneError, Weights},
    reconcile::{self, summary::DrainStatus, ApplyOptions, DesiredState},
};

pub struct FullApply {
    /// The ownership record the reconciler keeps.
    state_file: PathBuf,
    /// Backends removed from the config that wait for their connections to end, as
    /// (IPVS service, backend): each start and end of a drain is logged once.
    draining: BTreeSet<(String, String)>,
}

/// The [`FullApply`] shared by the plane and its writer.
#[derive(Clone)]
pub struct SharedApply(Arc<Mutex<FullApply>>);

impl SharedApply {
    pub fn new(state_file: PathBuf) -> Self {
        SharedApply(Arc::new(Mutex::new(FullApply {
            state_file,
            draining: BTreeSet::new(),
        })))
    }

    /// Brings the kernel to `config` with `weights` on top, writing only differences;
    /// `table` then holds what the kernel holds.
    pub fn run(
        &self,
        config: &Config,
        weights: &Weights,
        table: &SharedTable,
    ) -> Result<Applied, PlaneError> {
        // Never contended (see the module's note); a panic aborts, so never poisoned.
        let mut this = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let opts = ApplyOptions {
            state_file: this.state_file.clone(),
            dry_run: false,
            overrides: overrides(weights),
        };
        let summary = reconcile::apply(config, &opts)?;
        for f in &summary.failures {
            warn!(op = %f.op, errno = ?f.errno, error = %f.error, "kernel refused a write");
        }
        table.reset(weights, DesiredState::from_config(config));
        this.draining = drain_changes(&this.draining, &summary.draining);
        if summary.netlink_writes > 0 {
            info!(
                ipvs = summary.ipvs_writes,
                rtnetlink = summary.rtnetlink_writes,
                draining = summary.draining.len(),
                "reconciled"
            );
        }
        Ok(Applied {
            writes: summary.netlink_writes as u64,
            ops: vec![
                ("ipvs", summary.ipvs_writes as u64),
                ("rtnetlink", summary.rtnetlink_writes as u64),
            ],
            refused: summary.failures.len() as u64,
            skipped: summary.rtnetlink_skipped as u64,
            draining: !summary.draining.is_empty(),
            notes: summary.notes,
        })
    }
}

/// Logs the drains that began or ended since `before`; returns the ones going on.
fn drain_changes(
    before: &BTreeSet<(String, String)>,
    now: &[DrainStatus],
) -> BTreeSet<(String, String)> {
    let mut going_on = BTreeSet::new();
    for d in now {
        let key = (d.service.clone(), d.backend.clone());
        if !before.contains(&key) {
            info!(
                ipvs_service = %d.service,
                backend = %d.backend,
                state = "draining",
                active_conns = d.active_conns,
                inactive_conns = d.inactive_conns,
                "removed from the config: draining at weight 0"
            );
        }
        going_on.insert(key);
    }
    for (service, backend) in before.difference(&going_on) {
        info!(
            ipvs_service = %service,
            backend = %backend,
            state = "drained",
            "no longer draining (deleted, or back in the config)"
        );
    }
    going_on
}
