//! An operator's commands on one backend, from the control socket: drain and undrain
//! (held at weight 0 until put back, recorded in the drain record), force a quarantine
//! and re-admit (through the health machine). Each marks the service for the next
//! weight write, so the kernel follows in the same loop turn.
//!
//! Commands are idempotent: draining a drained backend, or re-admitting one in
//! rotation, succeeds and says so. Only naming something that is not configured fails.

use std::{net::SocketAddr, time::Duration, time::SystemTime};

use tokio::time::Instant;
use tracing::{info, warn};

use super::{super::admin::Drains, Core};
use crate::{
    clock,
    config::format_duration,
    health::OperatorError,
    model::{BackendId, ServiceKey},
};

/// What an operator asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAction {
    Drain,
    Undrain,
    /// For this long, or the backend's next backoff.
    Quarantine(Option<Duration>),
    Readmit,
}

impl OperatorAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Drain => "drain",
            OperatorAction::Undrain => "undrain",
            OperatorAction::Quarantine(_) => "quarantine",
            OperatorAction::Readmit => "readmit",
        }
    }
}

/// A backend an operator named, found in the running config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub key: ServiceKey,
    pub name: String,
    pub backend: BackendId,
}

impl Target {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(self.backend)
    }
}

impl Core {
    /// The configured backend `backend` of the service named `service` (its name, or
    /// its key as `vipd status` prints it); else an error naming what exists.
    pub fn target(&self, service: &str, backend: SocketAddr) -> Result<Target, String> {
        let Some((key, s)) = self
            .services
            .by_key
            .iter()
            .find(|(k, s)| s.name == service || k.to_string() == service)
        else {
            let names: Vec<&str> = self
                .services
                .by_key
                .values()
                .map(|s| s.name.as_str())
                .collect();
            return Err(format!(
                "no service {service:?} in {} (services: {})",
                self.config_path,
                list(&names)
            ));
        };
        let Some(id) = s.dests.keys().find(|d| SocketAddr::from(**d) == backend) else {
            let addrs: Vec<String> = s
                .dests
                .keys()
                .map(|d| SocketAddr::from(*d).to_string())
                .collect();
            let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
            return Err(format!(
                "{backend} is not a backend of {} (backends: {})",
                s.name,
                list(&addrs)
            ));
        };
        Ok(Target {
            key: *key,
            name: s.name.clone(),
            backend: *id,
        })
    }

    /// The operator's drains as they stand.
    pub fn drains(&self) -> &Drains {
        &self.drains
    }

    /// Whether the drain record must be written (and clears the flag).
    pub fn take_drains_dirty(&mut self) -> bool {
        std::mem::take(&mut self.drains_dirty)
    }

    /// Whether `action` may be carried out on `t`: a forced quarantine lasts at most the
    /// service's `max_ejection` (the most a restart would keep of it); longer holds are
    /// what drains are for.
    pub fn allowed(&self, action: OperatorAction, t: &Target) -> Result<(), String> {
        let OperatorAction::Quarantine(Some(d)) = action else {
            return Ok(());
        };
        let max = self.services.by_key[&t.key].policy.max_ejection;
        if d > max {
            return Err(format!(
                "a quarantine of {} lasts at most the service's max_ejection ({}); \
                 `vipd drain` holds a backend out for as long as needed",
                t.name,
                format_duration(max)
            ));
        }
        Ok(())
    }

    /// Carries out `action` on `t` (from [`Core::target`], checked by
    /// [`Core::allowed`]); returns what happened, for the operator. The weight follows at
    /// the next [`Core::flush`].
    pub fn operate(
        &mut self,
        action: OperatorAction,
        t: &Target,
        now: Instant,
        wall: SystemTime,
    ) -> String {
        let what = format!("{} {}", t.name, t.addr());
        let message = match action {
            OperatorAction::Drain | OperatorAction::Undrain => {
                let drain = action == OperatorAction::Drain;
                let changed = if drain {
                    self.drains.add(&t.name, t.addr(), clock::unix_ms(wall))
                } else {
                    self.drains.remove(&t.name, t.addr())
                };
                if !changed {
                    return if drain {
                        format!("{what} is drained already")
                    } else {
                        format!("{what} is not drained")
                    };
                }
                self.drains_dirty = true;
                self.set_drained(t, drain, now);
                if drain {
                    let active = self.services.by_key[&t.key]
                        .stats
                        .get(&t.backend)
                        .map_or(0, |s| s.active_conns);
                    format!(
                        "{what} drained: no new connections; its {active} active connection{} \
                         finish where they are; it stays drained across reloads and restarts \
                         until `vipd undrain`",
                        if active == 1 { "" } else { "s" }
                    )
                } else {
                    format!("{what} undrained: back at the weight its health gives it")
                }
            }
            OperatorAction::Quarantine(duration) => {
                let s = self.services.by_key.get_mut(&t.key).expect("target exists");
                match s.health.force_quarantine(now, t.backend, duration) {
                    Ok(ts) => {
                        let panic = s.health.in_panic();
                        self.transitions(t.key, &ts);
                        let left = match quarantine_left(self, t, now) {
                            Some(d) => format!(" for {}", format_duration(d)),
                            None => String::new(),
                        };
                        let mut m = format!(
                            "{what} quarantined{left}; it comes back after a probation \
                             probe, or at once with `vipd readmit`"
                        );
                        if panic {
                            m.push_str(&format!(
                                "; but {} is in panic (no backend available), so every \
                                 backend keeps its weight",
                                t.name
                            ));
                        }
                        m
                    }
                    Err(e) => format!("{what}: {e}"),
                }
            }
            OperatorAction::Readmit => {
                let s = self.services.by_key.get_mut(&t.key).expect("target exists");
                match s.health.force_readmit(now, t.backend) {
                    Ok(ts) => {
                        self.transitions(t.key, &ts);
                        let mut m = format!("{what} re-admitted");
                        if self.drains.contains(&t.name, t.addr()) {
                            m.push_str("; it is still drained (`vipd undrain` puts it back)");
                        }
                        m
                    }
                    Err(OperatorError::NotEjected(state)) => {
                        format!("{what} is in rotation already ({state})")
                    }
                    Err(e) => format!("{what}: {e}"),
                }
            }
        };
        info!(
            service = %t.name,
            backend = %t.addr(),
            action = action.as_str(),
            "operator: {message}"
        );
        self.dirty.insert(t.key);
        self.health_changed();
        message
    }

    /// Holds `t` at weight 0 (or releases it) in its health machine and the plane.
    fn set_drained(&mut self, t: &Target, drained: bool, now: Instant) {
        let s = self.services.by_key.get_mut(&t.key).expect("target exists");
        if drained {
            s.drained.insert(t.backend);
        } else {
            s.drained.remove(&t.backend);
        }
        let backends = s.machine_weights();
        let policy = s.policy.clone();
        let ts = s.health.update(policy, &backends, now);
        self.transitions(t.key, &ts);
    }

    /// Drops the drains of services and backends no longer configured.
    pub(super) fn prune_drains(&mut self) {
        let services = &self.services;
        let dropped = self.drains.retain(|name, addr| {
            services
                .by_key
                .values()
                .any(|s| s.name == name && s.dests.keys().any(|d| SocketAddr::from(*d) == addr))
        });
        for (service, backend) in &dropped {
            warn!(
                service = %service,
                backend = %backend,
                "operator's drain dropped: no longer configured"
            );
        }
        if !dropped.is_empty() {
            self.drains_dirty = true;
        }
    }

    fn transitions(&mut self, key: ServiceKey, ts: &[crate::health::Transition]) {
        if let Some(s) = self.services.by_key.get(&key) {
            for t in ts {
                self.effects.transition(s, key, t, None);
            }
        }
    }
}

fn quarantine_left(core: &Core, t: &Target, now: Instant) -> Option<Duration> {
    core.services.by_key[&t.key]
        .health
        .views(now)
        .into_iter()
        .find(|v| v.dest == t.backend)
        .and_then(|v| v.quarantine_left)
}

fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}
