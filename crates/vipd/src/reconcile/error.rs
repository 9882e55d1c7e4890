//! What can stop a reconcile, each naming the object and the cause.

use super::state::StateError;
use crate::reach::ReachError;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot open the IPVS netlink family: {0}")]
    Connect(#[source] vipd_ipvs::Error),
    #[error("reading {what} from the kernel: {source}")]
    Dump {
        what: String,
        source: vipd_ipvs::Error,
    },
    #[error("bad reply from the kernel: {0}")]
    BadDump(String),
    /// Services in the config that exist in the kernel but that vipd did not create.
    #[error("{}", conflict_message(.0))]
    Conflict(Vec<String>),
    #[error("cannot encode `{op}`: {source}")]
    Encode {
        op: String,
        source: vipd_ipvs::Error,
    },
    #[error(
        "sending the IPVS writes failed: {0} (writes already sent may have been applied; \
         the ownership record lists every service vipd may have created, so running apply \
         again converges)"
    )]
    Send(#[source] vipd_ipvs::Error),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Reach(#[from] ReachError),
    /// VIPs that conflict with the host, each as `file:line:col: VIP ... problem`.
    #[error("{}; nothing was changed", .0.join("\n"))]
    Vips(Vec<String>),
}

fn conflict_message(services: &[String]) -> String {
    let (what, exist, them) = match services.len() {
        1 => ("1 service".to_owned(), "exists", "it"),
        n => (format!("{n} services"), "exist", "them"),
    };
    format!(
        "refusing to apply: {what} declared in the config {exist} in the kernel but vipd did \
         not create {them}: {}. vipd never adopts, changes or removes a service it did not \
         create; delete {them} (e.g. with ipvsadm -D) or take {them} out of the config",
        services.join(", ")
    )
}
