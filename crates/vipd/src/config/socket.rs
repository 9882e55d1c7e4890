//! `dataplane = "socket"`: the `[socket]` table and what the socket data plane cannot
//! do. Its scheduler is `"random"` (weighted random choice at connect, in the kernel
//! program); every option only IPVS has is reported where it is written, saying why.

use std::path::PathBuf;

use vipd_common::sock::SOCK_MAX_BACKENDS;

use super::{
    dataplane::{only_ipvs, thresholds_need_ipvs},
    error::Reporter,
    model::{Scheduler, SocketSettings},
    raw::{Field, Table},
};

const SOCKET_KEYS: &[&str] = &["cgroup"];

/// The socket scheduler's name.
pub(crate) const RANDOM: &str = "random";

/// What a socket service's scheduler is stored as: the socket plane's programs draw
/// backends at random in proportion to their weights, which over many connections is
/// the share weighted round robin gives. The plane itself does not read it.
pub(crate) const STORED: Scheduler = Scheduler::WeightedRoundRobin;

/// Reads `[socket]` (absent: every default).
pub(crate) fn settings(t: Option<Table<'_>>, r: &mut Reporter<'_>) -> Option<SocketSettings> {
    let Some(t) = t else {
        return Some(SocketSettings {
            cgroup: SocketSettings::default_cgroup(),
        });
    };
    t.deny_unknown(SOCKET_KEYS, r);
    let cgroup = match t.get("cgroup") {
        None => Some(SocketSettings::default_cgroup()),
        Some(f) => f.str(r).and_then(|s| match cgroup_problem(s.value) {
            None => Some(PathBuf::from(s.value)),
            Some(why) => {
                r.error(s.at, format!("invalid cgroup {:?}: {why}", s.value));
                None
            }
        }),
    };
    Some(SocketSettings { cgroup: cgroup? })
}

/// Why `path` cannot name a cgroup directory (checked on the text only: the daemon
/// checks that it is a cgroup v2 directory when it attaches).
fn cgroup_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty");
    }
    if !path.starts_with('/') {
        return Some("not an absolute path (the cgroup v2 directory, e.g. /sys/fs/cgroup/unified)");
    }
    if path.split('/').any(|c| c == "..") {
        return Some("`..` is not allowed");
    }
    if path.contains('\0') {
        return Some("contains a NUL byte");
    }
    None
}

/// A `scheduler` field with the socket data plane: `"random"` is the only one (others
/// are reported by [`restrictions`] or, in `[defaults]`, here).
pub(crate) fn scheduler(
    f: Field<'_>,
    in_defaults: bool,
    r: &mut Reporter<'_>,
) -> Option<Scheduler> {
    let s = f.str(r)?;
    if s.value == RANDOM {
        return Some(STORED);
    }
    if in_defaults {
        r.error(
            s.at,
            format!(
                "scheduler {:?}: the socket data plane's only scheduler is \"random\" (weighted random choice at connect, the default): leave `scheduler` out of [defaults]",
                s.value
            ),
        );
    }
    None
}

/// With the socket data plane: reports each option of a `[[service]]` table that only
/// IPVS has, at the option.
pub(crate) fn restrictions(t: Table<'_>, r: &mut Reporter<'_>) {
    only_ipvs(
        t.get("fwmark"),
        "the socket data plane translates VIP:port destinations at connect and sendmsg; there are no packets to mark",
        r,
    );
    only_ipvs(
        t.get("flags"),
        "they are options of IPVS schedulers; the socket data plane chooses at random in proportion to the weights",
        r,
    );
    only_ipvs(
        t.get("tunnel"),
        "the socket data plane connects the socket to the backend itself and forwards nothing",
        r,
    );
    if let Some(f) = t.get("forwarding") {
        if f.item_str() != Some("masq") {
            r.error(
                f.at,
                "`forwarding` needs IPVS: the socket data plane connects the client's socket straight to the backend (leave `forwarding` out)",
            );
        }
    }
    if let Some(f) = t.get("scheduler") {
        match f.item_str() {
            Some(RANDOM) | None => {}
            Some(other) => r.error(
                f.at,
                format!(
                    "scheduler {other:?} needs IPVS; the socket data plane's is \"random\" (weighted random choice at connect, the default)"
                ),
            ),
        }
    }
    thresholds_need_ipvs(
        t,
        "the socket data plane keeps no connection counts per backend",
        r,
    );
    if let Some(f) = t.get("backend") {
        let n = f.tables_quiet().map_or(0, |b| b.len());
        if n > SOCK_MAX_BACKENDS {
            r.error(
                f.at,
                format!(
                    "{n} backends: the socket data plane chooses among at most {SOCK_MAX_BACKENDS} per service"
                ),
            );
        }
    }
}
