//! `[defaults]`: settings every service inherits unless it sets its own. Only the main
//! file may hold it (a drop-in's services inherit it too).
//!
//! - `scheduler`: the scheduler of services that name none;
//! - `drain_timeout`: of services that set none (the same as `[daemon] drain_timeout`,
//!   which it replaces; setting both is an error);
//! - `health`: the protocol-independent keys of `[service.health]`
//!   ([`GENERIC_HEALTH_KEYS`]); a service's own
//!   `[service.health]` overrides them key by key.

use std::time::Duration;

use super::{
    duration::format_duration,
    error::Reporter,
    model::{DaemonSettings, HealthPolicy, Scheduler},
    policy::{health, GENERIC_HEALTH_KEYS, PER_SERVICE_HEALTH_KEYS},
    raw::Table,
    validate::Traffic,
};

/// What `[defaults]` sets; `None`: not set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Defaults {
    scheduler: Option<Scheduler>,
    drain_timeout: Option<Duration>,
    health: Option<HealthPolicy>,
}

/// Reads `[defaults]`; what is invalid is reported and left unset.
pub(crate) fn defaults(
    t: Table<'_>,
    daemon_table: Option<Table<'_>>,
    xdp: bool,
    socket: bool,
    r: &mut Reporter<'_>,
) -> Defaults {
    t.deny_unknown(super::validate::DEFAULTS_KEYS, r);
    let scheduler = t.get("scheduler").and_then(|f| {
        if socket {
            return super::socket::scheduler(f, true, r);
        }
        match super::dataplane::maglev(f, xdp, r) {
            Some(maglev) => maglev,
            None if xdp => {
                r.error(
                    f.at,
                    "the XDP data plane's only scheduler is \"maglev\" (the default): leave \
                     `scheduler` out of [defaults]",
                );
                None
            }
            None => f
                .keyword("scheduler", Scheduler::NAMES, Scheduler::from_name, r)
                .map(|s| s.value),
        }
    });
    let drain_timeout = t.get("drain_timeout").and_then(|f| {
        let d = f.duration(r)?;
        if let Some(first) = daemon_table.and_then(|d| d.get("drain_timeout")) {
            r.error(
                d.at,
                format!(
                    "drain_timeout is set both here and in [daemon] (at {}); keep one",
                    r.place(first.at)
                ),
            );
            return None;
        }
        Some(d.value)
    });
    let health = t.get("health").and_then(|f| {
        let table = f.table("in [defaults.health]", r)?;
        for key in PER_SERVICE_HEALTH_KEYS {
            if let Some(k) = table.get(key) {
                r.error(
                    k.at,
                    format!(
                        "`{key}` cannot be a default: it depends on the service's protocol; \
                         set it in the service's [service.health] (defaults may set {})",
                        GENERIC_HEALTH_KEYS.join(", ")
                    ),
                );
            }
        }
        health(f, Traffic::Unknown, r)
    });
    Defaults {
        scheduler,
        drain_timeout,
        health,
    }
}

impl Defaults {
    /// The scheduler of a service that names none, `otherwise` if `[defaults]` names
    /// none either.
    pub(crate) fn scheduler_or(&self, otherwise: Scheduler) -> Scheduler {
        self.scheduler.unwrap_or(otherwise)
    }

    /// The scheduler of a service that names none.
    pub(crate) fn scheduler(&self, xdp: bool) -> Scheduler {
        match self.scheduler {
            Some(s) => s,
            None if xdp => Scheduler::MaglevHashing,
            None => Scheduler::DEFAULT,
        }
    }

    /// The drain timeout of a service that sets none.
    pub(crate) fn drain_timeout(&self, daemon: &DaemonSettings) -> Duration {
        self.drain_timeout.unwrap_or(daemon.drain_timeout)
    }

    /// A service's health policy: its own keys over the defaults'. `None` (reported) when
    /// the two together set a base ejection longer than the maximum.
    pub(crate) fn health(
        &self,
        own: Option<HealthPolicy>,
        service: Table<'_>,
        r: &mut Reporter<'_>,
    ) -> Option<Option<HealthPolicy>> {
        let Some(d) = &self.health else {
            return Some(own);
        };
        let own_set = own.is_some();
        let mut h = own.unwrap_or_default();
        h.refuse_threshold = h.refuse_threshold.or(d.refuse_threshold);
        h.retransmit_threshold = h.retransmit_threshold.or(d.retransmit_threshold);
        h.base_ejection = h.base_ejection.or(d.base_ejection);
        h.max_ejection = h.max_ejection.or(d.max_ejection);
        h.max_ejection_percent = h.max_ejection_percent.or(d.max_ejection_percent);
        h.panic_threshold = h.panic_threshold.or(d.panic_threshold);
        h.slow_start = h.slow_start.or(d.slow_start);
        if let (Some(base), Some(max)) = (h.base_ejection, h.max_ejection) {
            if base > max {
                let at = service
                    .get("health")
                    .filter(|_| own_set)
                    .and_then(|f| f.at)
                    .or(service.at);
                r.error(
                    at,
                    format!(
                        "base_ejection {} is longer than max_ejection {} (one of them from \
                         [defaults.health])",
                        format_duration(base),
                        format_duration(max)
                    ),
                );
                return None;
            }
        }
        Some(Some(h))
    }
}
