//! The daemon's status snapshot ([`DaemonView`]) from its service table, and how
//! outcomes are counted and described for it.

use std::{net::SocketAddr, time::SystemTime};

use tokio::time::Instant;

use super::{
    admin::Drains,
    services::Services,
    view::{BackendView, DaemonView, OutcomeCounts, ReloadView, ServiceView, WatcherView},
};
use crate::{
    clock::unix_ms,
    model::{Counters, Outcome},
};

/// What the view needs besides the services.
pub struct Meta<'a> {
    pub config: String,
    /// The operator's drains, for when each began.
    pub drains: &'a Drains,
    pub dataplane: &'static str,
    pub started: SystemTime,
    pub loaded: SystemTime,
    pub last_reload: Option<ReloadView>,
    pub watcher_mode: String,
    pub watcher_hooks: String,
    pub counters: Counters,
    pub lost_events: u64,
    pub tracked: u64,
    pub sysctls: Vec<String>,
}

/// Counts one outcome.
pub fn count(c: &mut OutcomeCounts, o: &Outcome) {
    match o {
        Outcome::Established { .. } => c.established += 1,
        Outcome::Refused => c.refused += 1,
        Outcome::SynRetransmit(_) => c.syn_retransmits += 1,
        Outcome::ClientAbort => c.client_aborts += 1,
        Outcome::Closed { .. } => c.closed += 1,
        Outcome::Unreachable(_) => c.unreachable += 1,
        Outcome::Silent(_) => c.silences += 1,
    }
}

pub fn build(services: &Services, now: Instant, meta: Meta<'_>) -> DaemonView {
    let services = services
        .by_key
        .iter()
        .map(|(key, s)| ServiceView {
            name: s.name.clone(),
            key: key.to_string(),
            scheduler: s.scheduler.clone(),
            panic: s.health.in_panic(),
            backends: s
                .health
                .views(now)
                .into_iter()
                .map(|v| {
                    let stats = s.stats.get(&v.dest);
                    let addr = SocketAddr::from(v.dest);
                    BackendView {
                        addr: addr.to_string(),
                        state: v.state.as_str().to_owned(),
                        config_weight: s.dests.get(&v.dest).copied().unwrap_or(v.config_weight),
                        weight: v.weight,
                        drained: s.drained.contains(&v.dest),
                        drained_since_unix_ms: meta.drains.since(&s.name, addr),
                        active_conns: stats.map_or(0, |s| s.active_conns),
                        inactive_conns: stats.map_or(0, |s| s.inactive_conns),
                        sticky_clients: stats.and_then(|s| s.sticky_clients),
                        quarantines: v.quarantines,
                        quarantine_left_ms: v
                            .quarantine_left
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                        consecutive_failures: v.consecutive_failures,
                        outcomes: stats.map(|s| s.counts).unwrap_or_default(),
                        recent: stats.map(|s| s.recent.render(now)).unwrap_or_default(),
                    }
                })
                .collect(),
        })
        .collect();
    DaemonView {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config: meta.config,
        started_unix_ms: unix_ms(meta.started),
        config_loaded_unix_ms: unix_ms(meta.loaded),
        dataplane: meta.dataplane.to_owned(),
        last_reload: meta.last_reload,
        sysctls: meta.sysctls,
        watcher: WatcherView {
            mode: meta.watcher_mode,
            hooks: meta.watcher_hooks,
            lost_events: meta.lost_events,
            unattributed: meta.counters.unattributed,
            evicted: meta.counters.evicted,
            tracked_connections: meta.tracked,
        },
        services,
        dns: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn outcomes_are_counted_and_described() {
        let mut c = OutcomeCounts::default();
        for o in [
            Outcome::Established {
                latency: Some(Duration::from_micros(420)),
            },
            Outcome::Refused,
            Outcome::SynRetransmit(2),
            Outcome::ClientAbort,
            Outcome::Closed {
                by_peer: true,
                reset: true,
            },
        ] {
            count(&mut c, &o);
        }
        assert_eq!(
            c,
            OutcomeCounts {
                established: 1,
                refused: 1,
                syn_retransmits: 1,
                client_aborts: 1,
                closed: 1,
                ..OutcomeCounts::default()
            }
        );
        assert_eq!(
            Outcome::Established {
                latency: Some(Duration::from_micros(420))
            }
            .describe(),
            "established 0.4ms"
        );
        assert_eq!(Outcome::SynRetransmit(2).describe(), "syn-retransmit #2");
        assert_eq!(
            Outcome::Closed {
                by_peer: false,
                reset: false
            }
            .describe(),
            "closed locally"
        );
    }
}
