//! What one `vipd apply` did, for people and (as JSON) for programs and tests.

use serde::{Deserialize, Serialize};

use super::apply::OpFailure;

/// A backend waiting at weight 0 for its connections to end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainStatus {
    pub service: String,
    pub backend: String,
    pub since_unix_ms: u64,
    pub active_conns: u32,
    pub inactive_conns: u32,
}

/// The result of one reconcile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplySummary {
    /// Nothing was written (`--dry-run`); `ops` is the plan.
    pub dry_run: bool,
    /// Services and backends in the config.
    pub services: usize,
    pub backends: usize,
    /// IPVS generic-netlink writes sent.
    pub ipvs_writes: usize,
    /// Rtnetlink writes sent (interface and VIP routes).
    pub rtnetlink_writes: usize,
    /// Rtnetlink messages of the kernel's answers skipped as undecodable.
    #[serde(default)]
    pub rtnetlink_skipped: usize,
    /// `ipvs_writes + rtnetlink_writes`.
    pub netlink_writes: usize,
    /// Sysctls written.
    pub sysctl_writes: usize,
    /// The IPVS writes, in order (planned ones on a dry run).
    pub ops: Vec<String>,
    /// The rtnetlink writes, in order.
    pub reach: Vec<String>,
    /// What the operator should know about VIP reachability (several uplinks, backends
    /// without a route, record entries vipd ignored).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Sysctls vipd needs, with the reason, as `name=value: reason`.
    pub sysctls: Vec<String>,
    /// Backends still draining afterwards.
    pub draining: Vec<DrainStatus>,
    /// Writes the kernel refused.
    pub failures: Vec<OpFailure>,
    /// Services in the kernel that vipd does not own (left untouched).
    pub foreign_services: usize,
    pub state_file: String,
    /// Wall time of the whole apply (after the config was loaded), in microseconds.
    pub elapsed_us: u64,
    /// Of which: reading the kernel (IPVS dumps), planning, and sending the IPVS writes.
    pub snapshot_us: u64,
    pub plan_us: u64,
    pub send_us: u64,
    /// Peak resident memory of the process so far (`ru_maxrss`), KiB.
    pub max_rss_kib: u64,
}

impl ApplySummary {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// True when every write went through.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }
}
