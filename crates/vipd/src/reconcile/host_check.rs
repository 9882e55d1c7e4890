//! `vipd check`'s look at the host: the VIPs of a valid config against the namespace's
//! interfaces, addresses and routes, read-only, with the same rules `vipd apply` enforces
//! before its first write (see `crate::reach`).

use std::{collections::BTreeSet, path::Path};

use super::{run::backends_by_vip, state, DesiredState, ReconcileError};
use crate::{
    config::{Config, Diagnostic},
    reach::{self, Reach, ReachError},
};

/// What the host says about a config's VIPs.
#[derive(Debug, Default)]
pub struct HostCheck {
    /// VIPs that cannot be served here, each at its file:line:col.
    pub errors: Vec<Diagnostic>,
    /// What an operator should know (several uplinks, backends without a route).
    pub notes: Vec<String>,
}

/// Checks `config`'s VIPs against this host. `state_file` is vipd's ownership record,
/// read if it can be (VIP addresses an earlier vipd added are converted, not refused).
pub fn host_check(config: &Config, state_file: &Path) -> Result<HostCheck, ReconcileError> {
    let desired = DesiredState::from_config(config);
    let vips = backends_by_vip(
        desired
            .services
            .iter()
            .map(|(k, s)| (k, s.dests.keys().map(|id| id.ip).collect())),
    );
    let record = state::read(state_file).unwrap_or_default();
    let mut reach = Reach::open()?;
    let net = reach.read()?;
    let located = |all: Vec<reach::VipConflict>| config.origin.located(&all);
    let sources = match reach.sources(&net, &vips) {
        Ok(s) => s,
        Err(ReachError::Conflicts(all)) => {
            return Ok(HostCheck {
                errors: located(all),
                notes: Vec::new(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let plan = reach::plan(
        &net,
        &config.daemon.vip_interface,
        &sources.by_vip,
        &BTreeSet::new(),
        &record.reach,
    );
    match plan {
        Ok(_) => Ok(HostCheck {
            errors: Vec::new(),
            notes: sources.notes,
        }),
        Err(ReachError::Conflicts(all)) => Ok(HostCheck {
            errors: located(all),
            notes: sources.notes,
        }),
        Err(e) => Err(e.into()),
    }
}
