//! The resolver task: follows the config's DNS backends, asks the resolver for each
//! name when it is due (at most [`MAX_IN_FLIGHT`] at once, each bounded by `[dns]
//! timeout`), and sends every result to the daemon as a [`DnsEvent`].

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
    time::{sleep_until, Instant},
};

use super::{
    tracker::{Change, NameKey, NameState, ResultKind, Tracker},
    Outcome, Resolve, Resolved,
};
use crate::{
    clock,
    config::{Config, DnsQuery, DnsSettings},
};

/// Resolutions running at once, at most: a thousand names due together are asked a
/// few dozen at a time, not in one burst.
pub const MAX_IN_FLIGHT: usize = 32;

/// One name as `vipd status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameView {
    pub service: String,
    /// `dns` (A/AAAA) or `srv`.
    pub kind: String,
    pub name: String,
    /// `ok`, `empty`, `nxdomain`, `failed`; absent before the first result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// What the last result did.
    pub note: String,
    /// The backends the name gives now.
    pub answer: Vec<String>,
    /// The TTL of the last good answer, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_s: Option<u64>,
    /// When the last result came and when the next resolution is due (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_unix_ms: Option<u64>,
    pub next_unix_ms: u64,
}

/// A finished resolution.
#[derive(Debug, Clone)]
pub struct DnsEvent {
    pub key: NameKey,
    pub result: ResultKind,
    /// The name's backends, if they changed.
    pub change: Option<Change>,
    /// The name as status shows it, after this result.
    pub view: NameView,
}

fn view(key: &NameKey, s: &NameState, now: Instant, wall: SystemTime) -> NameView {
    let at = |t: Instant| {
        let wall_t = if t >= now {
            wall + (t - now)
        } else {
            wall - (now - t)
        };
        clock::unix_ms(wall_t)
    };
    NameView {
        service: key.service.clone(),
        kind: match key.backend.query {
            DnsQuery::Host { .. } => "dns".into(),
            DnsQuery::Srv => "srv".into(),
        },
        name: key.backend.name.clone(),
        result: s.last.map(|r| r.as_str().to_owned()),
        note: s.note.clone(),
        answer: s
            .current
            .iter()
            .map(|r| format!("{} (weight {})", r.addr, r.weight))
            .collect(),
        ttl_s: s.ttl.map(|t| t.as_secs()),
        last_unix_ms: s.last_at.map(at),
        next_unix_ms: at(s.next),
    }
}

/// Makes the resolver for `[dns]`'s settings.
pub type MakeResolver = Box<dyn Fn(&DnsSettings) -> Arc<dyn Resolve> + Send>;

/// Runs until `configs` closes (the daemon stops) or `events` does. Each config sent on
/// `configs` is followed from then on (names still configured keep their answers; new
/// `[dns]` settings get a new resolver from `make`). The names start from `restored`
/// (the sets of the last run) until they are resolved.
pub async fn run(
    make: MakeResolver,
    mut configs: watch::Receiver<Arc<Config>>,
    events: mpsc::Sender<DnsEvent>,
    seed: u64,
    restored: BTreeMap<NameKey, Vec<Resolved>>,
) {
    let mut tracker = Tracker::new(seed);
    let mut settings = configs.borrow().dns.clone();
    let mut resolver = make(&settings);
    tracker.sync(&configs.borrow_and_update(), Instant::now());
    tracker.restore(&restored);
    let mut running: JoinSet<(NameKey, Outcome)> = JoinSet::new();
    loop {
        let now = Instant::now();
        let settings_timeout = settings.timeout;
        for (key, lookup) in tracker.take_due(now, MAX_IN_FLIGHT - running.len()) {
            let resolver = resolver.clone();
            running.spawn(async move {
                let timeout = settings_timeout;
                let outcome = match tokio::time::timeout(timeout, resolver.resolve(lookup)).await {
                    Ok(o) => o,
                    Err(_) => Outcome::Failed(format!(
                        "no answer within {}",
                        crate::config::format_duration(timeout)
                    )),
                };
                (key, outcome)
            });
        }
        // Nothing due and nothing running: wait for a config (a far wake-up otherwise).
        let wake = tracker
            .next_due()
            .unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            changed = configs.changed() => {
                if changed.is_err() {
                    return;
                }
                let config = configs.borrow_and_update().clone();
                if config.dns != settings {
                    settings = config.dns.clone();
                    resolver = make(&settings);
                }
                tracker.sync(&config, Instant::now());
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                let Ok((key, outcome)) = done else { continue };
                let now = Instant::now();
                let Some((result, change)) = tracker.on_outcome(&key, outcome, now) else {
                    continue;
                };
                let Some(state) = tracker.state(&key) else { continue };
                let event = DnsEvent {
                    view: view(&key, state, now, SystemTime::now()),
                    key,
                    result,
                    change,
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            _ = sleep_until(wake), if running.len() < MAX_IN_FLIGHT => {}
        }
    }
}
