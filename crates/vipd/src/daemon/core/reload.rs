//! A reload: a new config is taken whole or not at all. A config that does not load, or
//! that changes the data plane, is rejected before anything changes; one the plane
//! cannot apply is rolled back to the running config and services. Either way every
//! backend still configured keeps its health.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use tokio::time::Instant;
use tracing::{debug, error, info};

use super::{
    super::{config_file::Rejected, services::Services, view::ReloadView},
    Core,
};
use crate::{
    clock,
    config::Config,
    dns::{DnsEvent, ResultKind},
    model::{BackendId, ServiceKey},
    plane::DataPlane,
};

impl Core {
    /// Takes `loaded` (the file's new config, or why it has none) if it can; returns
    /// whether it is now the running config.
    pub fn reload(
        &mut self,
        loaded: Result<Config, Rejected>,
        plane: &mut dyn DataPlane,
        now: Instant,
        wall: SystemTime,
    ) -> bool {
        let loaded = loaded.and_then(|c| {
            if c.dataplane == self.config.dataplane {
                Ok(c)
            } else {
                Err(Rejected {
                    lines: vec![format!(
                        "{}: changing `dataplane`, the [xdp] or the [socket] table needs a restart of vipd",
                        self.config_path
                    )],
                })
            }
        });
        let config = match loaded {
            Ok(c) => c,
            Err(rejected) => {
                self.reloaded(wall, Err(rejected.to_string()));
                return false;
            }
        };
        let accepted = match self.adopt(config, plane, now, wall) {
            Ok(writes) => {
                self.loaded = wall;
                self.reloaded(wall, Ok((writes, plane.write_unit())));
                true
            }
            Err(e) => {
                self.reloaded(wall, Err(e));
                false
            }
        };
        self.forget_removed();
        accepted
    }

    /// Makes `config` the running config and applies it: every backend still in it
    /// keeps its health. If the plane cannot apply it, the running config and services
    /// are restored and the error returned.
    fn adopt(
        &mut self,
        config: Config,
        plane: &mut dyn DataPlane,
        now: Instant,
        wall: SystemTime,
    ) -> Result<u64, String> {
        let old_config = std::mem::replace(&mut self.config, config);
        let old = std::mem::take(&mut self.services);
        let (services, ts) =
            Services::build(&self.config, old, None, &self.drains, now, wall, self.seed);
        self.services = services;
        for (key, t) in &ts {
            if let Some(s) = self.services.by_key.get(key) {
                self.effects.transition(s, *key, t, None);
            }
        }
        let result = match self.apply(plane, now) {
            Ok(writes) => Ok(writes),
            Err(e) => {
                self.config = old_config;
                let new = std::mem::take(&mut self.services);
                self.services =
                    Services::build(&self.config, new, None, &self.drains, now, wall, self.seed).0;
                plane.restore(&self.config, &self.services.weights(now, None));
                Err(e.chain())
            }
        };
        self.watch(plane);
        self.checks_changed = true;
        self.prune_drains();
        self.health_changed();
        result
    }

    /// DNS resolutions finished (a batch: those that came while the loop was busy):
    /// each counted and shown in status, each change of a name's backends logged; if any
    /// changed, `expanded` (then `Some`: the file's config with every name's backends,
    /// see [`crate::dns::expand`]) is applied once, like a reload, and the backends it
    /// adds to a service that had others enter through slow start.
    pub fn on_dns(
        &mut self,
        events: &[DnsEvent],
        expanded: Option<Config>,
        plane: &mut dyn DataPlane,
        now: Instant,
        wall: SystemTime,
    ) {
        for event in events {
            self.dns_result(event);
        }
        let Some(expanded) = expanded else {
            return;
        };
        let before: BTreeMap<ServiceKey, BTreeSet<BackendId>> = self
            .services
            .by_key
            .iter()
            .map(|(k, s)| (*k, s.dests.keys().copied().collect()))
            .collect();
        match self.adopt(expanded, plane, now, wall) {
            Ok(writes) => debug!(writes, changes = events.len(), "DNS changes applied"),
            Err(e) => error!(
                error = e.as_str(),
                "applying DNS changes failed; kept the running sets"
            ),
        }
        for (key, s) in &mut self.services.by_key {
            let Some(had) = before.get(key).filter(|had| !had.is_empty()) else {
                continue;
            };
            let new: Vec<BackendId> = s
                .dests
                .keys()
                .filter(|d| !had.contains(d))
                .copied()
                .collect();
            for d in new {
                s.health.start_slow(now, d);
                self.dirty.insert(*key);
            }
        }
        self.forget_removed();
    }

    /// One resolution: counted, shown, and its change (if any) logged.
    fn dns_result(&mut self, event: &DnsEvent) {
        let stale = event.result != ResultKind::Ok && !event.view.answer.is_empty();
        self.metrics().dns_resolution(
            &event.key.service,
            &event.key.backend.name,
            event.result.as_str(),
            stale,
        );
        let v = &event.view;
        let previous = self.dns_names.insert(
            (v.service.clone(), v.kind.clone(), v.name.clone()),
            v.clone(),
        );
        // A result that says what the last one said waits for the next periodic
        // publish (each second): with many names, publishing the whole view per
        // result would be most of the loop's work.
        let news = previous.is_none_or(|p| p.result != v.result || p.note != v.note);
        self.publish |= news || event.change.is_some();
        let Some(change) = &event.change else {
            return;
        };
        // The addresses of `a` that `b` does not have, as text.
        let minus = |a: &[crate::dns::Resolved], b: &[crate::dns::Resolved]| {
            a.iter()
                .filter(|r| !b.contains(r))
                .map(|r| r.addr.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        info!(
            service = event.key.service.as_str(),
            name = event.key.backend.name.as_str(),
            result = event.result.as_str(),
            added = minus(&change.after, &change.before).as_str(),
            removed = minus(&change.before, &change.after).as_str(),
            backends = minus(&change.after, &[]).as_str(),
            "DNS backends changed"
        );
    }

    /// The last reload's result, if there was one.
    pub fn last_reload(&self) -> Option<&ReloadView> {
        self.last_reload.as_ref()
    }

    /// Logs and records a reload's result: `Ok((writes, what a write is called))` or
    /// why it was rejected (every line of it).
    fn reloaded(&mut self, wall: SystemTime, result: Result<(u64, &str), String>) {
        self.metrics().reload(result.is_ok(), wall);
        match &result {
            Ok((writes, _)) => info!(
                config = self.config_path.as_str(),
                result = "applied",
                services = self.config.services.len(),
                backends = self.config.backend_count(),
                writes,
                "config reloaded"
            ),
            Err(reason) => error!(
                config = self.config_path.as_str(),
                result = "rejected",
                reason = reason.as_str(),
                "config rejected; the running config stays in force"
            ),
        }
        self.last_reload = Some(match result {
            Ok((writes, unit)) => ReloadView {
                unix_ms: clock::unix_ms(wall),
                ok: true,
                message: format!("applied with {writes} {unit}"),
                netlink_writes: writes,
            },
            Err(message) => ReloadView {
                unix_ms: clock::unix_ms(wall),
                ok: false,
                message,
                netlink_writes: 0,
            },
        });
        self.publish = true;
    }

    /// Drops the metric series of services and backends no longer configured.
    fn forget_removed(&mut self) {
        let names: BTreeSet<&str> = self
            .services
            .by_key
            .values()
            .map(|s| s.name.as_str())
            .collect();
        let backends: BTreeSet<(String, String)> = self
            .services
            .by_key
            .values()
            .flat_map(|s| s.dests.keys().map(|d| (s.name.clone(), d.to_string())))
            .collect();
        self.metrics().retain_services(|n| names.contains(n));
        self.metrics()
            .retain_backends(|n, b| backends.contains(&(n.to_owned(), b.to_owned())));
        let names: BTreeSet<(&str, &str)> = self
            .config
            .services
            .iter()
            .flat_map(|s| s.dns.iter().map(|d| (s.name.as_str(), d.name.as_str())))
            .collect();
        self.metrics().retain_dns(|s, n| names.contains(&(s, n)));
        self.dns_names
            .retain(|(s, _, n), _| names.contains(&(s.as_str(), n.as_str())));
    }
}
