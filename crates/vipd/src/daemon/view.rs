//! The running daemon's status snapshot: what `vipd status` shows. The daemon rebuilds a
//! [`DaemonView`] when something changes and publishes it on a watch channel; the control
//! socket ([`super::control`]) sends the latest one as JSON.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::model::Outcome;

/// The whole daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DaemonView {
    pub pid: u32,
    pub version: String,
    /// Path of the config file.
    pub config: String,
    pub started_unix_ms: u64,
    /// When the config in force was loaded (start-up or the last good reload).
    pub config_loaded_unix_ms: u64,
    /// `ipvs` or `xdp`.
    pub dataplane: String,
    pub last_reload: Option<ReloadView>,
    pub watcher: WatcherView,
    /// With IPVS: the IPVS sysctls vipd sets, as `name=value` (see `vipd::reach::sysctl`).
    pub sysctls: Vec<String>,
    pub services: Vec<ServiceView>,
    /// The DNS backends' names: last result, answer, TTL, next refresh.
    pub dns: Vec<crate::dns::NameView>,
}

/// The last reload attempt, good or rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReloadView {
    pub unix_ms: u64,
    pub ok: bool,
    /// What changed, or why the new config was rejected.
    pub message: String,
    /// Writes to the kernel: netlink messages with IPVS, map entries with XDP.
    pub netlink_writes: u64,
}

/// The eBPF connection watcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WatcherView {
    /// `full`, or `degraded: <why>` (e.g. tracepoints only, backends not named).
    pub mode: String,
    /// The kernel hooks and how each is attached: `tp_btf: inet_sock_set_state, ...;
    /// fentry: tcp_connect; kprobe: ip_vs_conn_new, ...` (empty when none are).
    pub hooks: String,
    pub lost_events: u64,
    pub unattributed: u64,
    pub evicted: u64,
    pub tracked_connections: u64,
}

/// One configured service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceView {
    pub name: String,
    /// VIP, port and protocol, e.g. `198.18.0.10:80/tcp`.
    pub key: String,
    pub scheduler: String,
    /// Every backend is out: weights are restored so traffic still flows.
    pub panic: bool,
    pub backends: Vec<BackendView>,
}

/// One backend of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BackendView {
    pub addr: String,
    /// `healthy`, `failing`, `quarantined`, `probing`, `slow-start` or `draining`.
    pub state: String,
    /// The weight in the config.
    pub config_weight: u32,
    /// The weight in force, as written to the data plane.
    pub weight: u32,
    /// An operator drained it (`vipd drain`): weight 0 until `vipd undrain`.
    pub drained: bool,
    /// When the drain began (Unix ms).
    pub drained_since_unix_ms: Option<u64>,
    /// IPVS's connection counts (0 with XDP, which keeps none per backend).
    pub active_conns: u32,
    pub inactive_conns: u32,
    /// Clients its service's persistence keeps on it now (the socket plane counts them);
    /// `None`: not counted.
    pub sticky_clients: Option<u32>,
    /// How many times this backend has been quarantined.
    pub quarantines: u32,
    pub quarantine_left_ms: Option<u64>,
    pub consecutive_failures: u32,
    pub outcomes: OutcomeCounts,
    /// The latest outcomes, most recent first.
    pub recent: Vec<RecentOutcome>,
}

/// Outcomes seen for a backend since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutcomeCounts {
    pub established: u64,
    pub refused: u64,
    pub syn_retransmits: u64,
    pub client_aborts: u64,
    pub closed: u64,
    /// UDP: ICMP unreachable errors for datagrams sent to the backend.
    pub unreachable: u64,
    /// UDP: datagrams IPVS sent to the backend (kernel counter).
    pub udp_sent: u64,
    /// UDP: replies from the backend delivered to clients (kernel counter).
    pub udp_replies: u64,
    /// UDP: silence windows that passed without a reply.
    pub silences: u64,
}

/// One recent outcome: how long ago, and what (`established 0.4ms`, `refused`,
/// `syn-retransmit #2`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecentOutcome {
    pub ago_ms: u64,
    pub outcome: String,
}

/// The last few outcomes of a backend, oldest dropped first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentRing {
    capacity: usize,
    items: VecDeque<(Instant, Recent)>,
}

/// One entry of a [`RecentRing`]: a plane's outcome is kept as it came and described
/// only when status is built (one comes per connection), anything else as its text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Recent {
    Outcome(Outcome),
    Text(String),
}

impl RecentRing {
    /// Outcomes kept per backend by [`RecentRing::default`].
    pub const DEFAULT_CAPACITY: usize = 8;

    /// A ring keeping the last `capacity` outcomes (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            items: VecDeque::with_capacity(capacity),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Records an outcome seen at `at`, described by `text`, dropping the oldest when
    /// full.
    pub fn push(&mut self, at: Instant, text: impl Into<String>) {
        self.keep(at, Recent::Text(text.into()));
    }

    /// Records a plane's outcome seen at `at`, dropping the oldest when full.
    pub fn push_outcome(&mut self, at: Instant, outcome: Outcome) {
        self.keep(at, Recent::Outcome(outcome));
    }

    fn keep(&mut self, at: Instant, item: Recent) {
        if self.items.len() == self.capacity {
            self.items.pop_front();
        }
        self.items.push_back((at, item));
    }

    /// The outcomes, most recent first, aged relative to `now` (an outcome stamped after
    /// `now` is 0 ms ago).
    pub fn render(&self, now: Instant) -> Vec<RecentOutcome> {
        self.items
            .iter()
            .rev()
            .map(|(at, item)| RecentOutcome {
                ago_ms: now.saturating_duration_since(*at).as_millis() as u64,
                outcome: match item {
                    Recent::Outcome(o) => o.describe(),
                    Recent::Text(t) => t.clone(),
                },
            })
            .collect()
    }
}

impl Default for RecentRing {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_planes_outcome_is_described_when_rendered() {
        let t0 = Instant::now();
        let mut ring = RecentRing::new(2);
        ring.push_outcome(t0, Outcome::Refused);
        ring.push(t0, "check failed: timeout");
        ring.push_outcome(t0, Outcome::SynRetransmit(2));
        let texts: Vec<String> = ring.render(t0).into_iter().map(|r| r.outcome).collect();
        assert_eq!(texts, ["syn-retransmit #2", "check failed: timeout"]);
    }

    #[test]
    fn ring_keeps_the_last_outcomes_newest_first() {
        let t0 = Instant::now();
        let mut ring = RecentRing::new(3);
        assert!(ring.is_empty());
        for i in 0..5u64 {
            ring.push(t0 + Duration::from_millis(i * 100), format!("o{i}"));
        }
        assert_eq!(ring.len(), 3);
        let now = t0 + Duration::from_millis(1_000);
        assert_eq!(
            ring.render(now),
            vec![
                RecentOutcome {
                    ago_ms: 600,
                    outcome: "o4".into()
                },
                RecentOutcome {
                    ago_ms: 700,
                    outcome: "o3".into()
                },
                RecentOutcome {
                    ago_ms: 800,
                    outcome: "o2".into()
                },
            ]
        );
        // An outcome stamped after `now` is not in the future.
        assert_eq!(ring.render(t0)[0].ago_ms, 0);
        assert_eq!(RecentRing::default().capacity(), 8);
        assert_eq!(RecentRing::new(0).capacity(), 1);
    }

    #[test]
    fn view_round_trips_as_json() {
        let view = DaemonView {
            pid: 42,
            version: "0.1.0".into(),
            config: "/etc/vipd/vipd.toml".into(),
            started_unix_ms: 1,
            config_loaded_unix_ms: 2,
            dataplane: "ipvs".into(),
            last_reload: Some(ReloadView {
                unix_ms: 3,
                ok: false,
                message: "line 3: bad".into(),
                netlink_writes: 0,
            }),
            sysctls: vec!["net.ipv4.vs.conntrack=1".into()],
            watcher: WatcherView {
                mode: "full".into(),
                ..WatcherView::default()
            },
            services: vec![ServiceView {
                name: "web".into(),
                key: "198.18.0.10:80/tcp".into(),
                scheduler: "wlc".into(),
                panic: false,
                backends: vec![BackendView {
                    addr: "198.18.1.2:8080".into(),
                    state: "quarantined".into(),
                    config_weight: 100,
                    quarantine_left_ms: Some(1_500),
                    recent: vec![RecentOutcome {
                        ago_ms: 5,
                        outcome: "refused".into(),
                    }],
                    ..BackendView::default()
                }],
            }],
            dns: vec![crate::dns::NameView {
                service: "web".into(),
                kind: "dns".into(),
                name: "web.lab".into(),
                result: Some("ok".into()),
                answer: vec!["198.18.1.2:8080 (weight 1)".into()],
                ttl_s: Some(30),
                next_unix_ms: 4,
                ..Default::default()
            }],
        };
        let json = serde_json::to_string(&view).unwrap();
        assert_eq!(serde_json::from_str::<DaemonView>(&json).unwrap(), view);
        // Missing fields default, so an older or newer peer still parses.
        let sparse: DaemonView = serde_json::from_str(r#"{"pid":7}"#).unwrap();
        assert_eq!(sparse.pid, 7);
        assert!(sparse.services.is_empty());
    }
}
