//! A reload: a new config is taken whole or not at all. A config that does not load, or
//! that changes the data plane, is rejected before anything changes; one the plane
//! cannot apply is rolled back to the running config and services. Either way every
//! backend still configured keeps its health.

use std::{collections::BTreeSet, time::SystemTime};

use tokio::time::Instant;
use tracing::{error, info};

use super::{
    super::{config_file::Rejected, services::Services, view::ReloadView},
    Core,
};
use crate::{clock, config::Config, plane::DataPlane};

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
                        "{}: changing `dataplane` or the [xdp] table needs a restart of vipd",
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
        let accepted = match self.apply(plane, now) {
            Ok(writes) => {
                self.loaded = wall;
                self.reloaded(wall, Ok((writes, plane.write_unit())));
                true
            }
            Err(e) => {
                self.reloaded(wall, Err(e.chain()));
                self.config = old_config;
                let new = std::mem::take(&mut self.services);
                self.services =
                    Services::build(&self.config, new, None, &self.drains, now, wall, self.seed).0;
                plane.restore(&self.config, &self.services.weights(now, None));
                false
            }
        };
        self.watch(plane);
        self.checks_changed = true;
        self.prune_drains();
        self.forget_removed();
        self.health_changed();
        accepted
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
    fn forget_removed(&self) {
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
    }
}
