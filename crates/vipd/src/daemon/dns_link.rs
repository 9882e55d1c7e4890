//! The daemon's side of DNS backends: the resolver task it started, the config it
//! follows, and the backends each name gave last, to expand the file's config with
//! (kept in the DNS record, [`super::dns_record`], when the daemon gives it one).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use tokio::sync::{mpsc, watch};

use crate::{
    config::Config,
    dns::{self, DnsEvent, NameKey, Resolved},
};

/// Results waiting for the loop, at most: room for about a minute of results of 1,000
/// names at a 5 s TTL, so that a loop busy for a while (a large apply) does not hold up
/// the resolver's schedule (it waits when this is full, and then catches up in a burst).
const EVENT_QUEUE: usize = 16 * 1024;
/// Results taken (and their changes applied at once) per loop turn, at most.
const BATCH: usize = 1024;

pub struct DnsLink {
    configs: watch::Sender<Arc<Config>>,
    events: mpsc::Receiver<DnsEvent>,
    sets: BTreeMap<NameKey, Vec<Resolved>>,
    /// The file's config in force (without the resolved backends).
    base: Config,
    /// Where the sets are written when they change.
    record: Option<PathBuf>,
}

impl DnsLink {
    /// Starts the resolver task, on a thread of its own, following `base` (idle while it
    /// has no DNS backend). Its names start from `restored` (the sets of the last run,
    /// vetted against `base`) until they are resolved.
    pub fn start(base: &Config, seed: u64, restored: BTreeMap<NameKey, Vec<Resolved>>) -> Self {
        let sets = restored.clone();
        let (configs, rx) = watch::channel(Arc::new(base.clone()));
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        // Its own thread: the daemon's loop runs on one thread and does synchronous work
        // (a large apply), which must not hold up the resolver's schedule.
        let spawned = std::thread::Builder::new()
            .name("vipd-dns".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(dns::task::run(
                        Box::new(dns::hickory::make),
                        rx,
                        tx,
                        seed,
                        restored,
                    )),
                    Err(e) => tracing::error!("DNS backends cannot be resolved: {e}"),
                }
            });
        if let Err(e) = spawned {
            tracing::error!("DNS backends cannot be resolved: starting the resolver: {e}");
        }
        DnsLink {
            configs,
            events,
            sets,
            base: base.clone(),
            record: None,
        }
    }

    /// Writes the sets to `path` whenever they change, from now on (and now).
    pub fn keep_record(&mut self, path: PathBuf) {
        self.record = Some(path);
        self.save();
    }

    fn save(&self) {
        let Some(path) = &self.record else { return };
        if let Err(e) = super::dns_record::store(path, &self.sets) {
            tracing::warn!("cannot write the DNS record: {e}");
        }
    }

    /// Waits for the first result of every DNS name of the config it follows, at most
    /// until `deadline`, so that the first apply at start already has their backends
    /// (a restart must not take out of the kernel what DNS put there). Returns the
    /// results, for the core to count and show once it exists.
    pub async fn first_round(&mut self, deadline: tokio::time::Instant) -> Vec<DnsEvent> {
        let mut waiting: std::collections::BTreeSet<NameKey> = self
            .base
            .services
            .iter()
            .flat_map(|s| {
                s.dns.iter().map(|d| NameKey {
                    service: s.name.clone(),
                    backend: d.clone(),
                })
            })
            .collect();
        let mut got = Vec::new();
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => {
                    waiting.remove(&e.key);
                    self.on_events(std::slice::from_ref(&e));
                    got.push(e);
                }
                _ => break,
            }
        }
        got
    }

    /// `config` with the backends its DNS names gave last.
    pub fn expand(&self, config: &Config) -> Config {
        dns::expand(config, &self.sets)
    }

    /// `config` (from the file) is now in force: the resolver follows it, and the sets
    /// of names it no longer has are forgotten.
    pub fn follow(&mut self, config: Config) {
        let before = self.sets.len();
        self.sets.retain(|k, _| {
            config
                .services
                .iter()
                .any(|s| s.name == k.service && s.dns.contains(&k.backend))
        });
        if self.sets.len() != before {
            self.save();
        }
        self.base = config.clone();
        let _ = self.configs.send(Arc::new(config));
    }

    /// The results waiting, at most [`BATCH`], the first awaited.
    pub async fn next_batch(&mut self) -> Option<Vec<DnsEvent>> {
        let mut batch = vec![self.events.recv().await?];
        while batch.len() < BATCH {
            match self.events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Takes results; the expanded config to apply if any changed a name's backends.
    pub fn on_events(&mut self, events: &[DnsEvent]) -> Option<Config> {
        let mut changed = false;
        for change in events.iter().filter_map(|e| e.change.as_ref()) {
            changed = true;
            if change.after.is_empty() {
                self.sets.remove(&change.key);
            } else {
                self.sets.insert(change.key.clone(), change.after.clone());
            }
        }
        if changed {
            self.save();
        }
        changed.then(|| dns::expand(&self.base, &self.sets))
    }
}
