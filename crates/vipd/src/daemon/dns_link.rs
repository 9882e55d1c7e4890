//! The daemon's side of DNS backends: the resolver task it started, the config it
//! follows, and the backends each name gave last, to expand the file's config with.

use std::{collections::BTreeMap, sync::Arc};

use tokio::sync::{mpsc, watch};

use crate::{
    config::Config,
    dns::{self, DnsEvent, NameKey, Resolved},
};

/// Results waiting for the loop, at most.
const EVENT_QUEUE: usize = 256;

pub struct DnsLink {
    configs: watch::Sender<Arc<Config>>,
    pub events: mpsc::Receiver<DnsEvent>,
    sets: BTreeMap<NameKey, Vec<Resolved>>,
    /// The file's config in force (without the resolved backends).
    base: Config,
}

impl DnsLink {
    /// Starts the resolver task following `base` (idle while it has no DNS backend).
    pub fn start(base: &Config, seed: u64) -> Self {
        let (configs, rx) = watch::channel(Arc::new(base.clone()));
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(dns::task::run(Box::new(dns::hickory::make), rx, tx, seed));
        DnsLink {
            configs,
            events,
            sets: BTreeMap::new(),
            base: base.clone(),
        }
    }

    /// `config` with the backends its DNS names gave last.
    pub fn expand(&self, config: &Config) -> Config {
        dns::expand(config, &self.sets)
    }

    /// `config` (from the file) is now in force: the resolver follows it, and the sets
    /// of names it no longer has are forgotten.
    pub fn follow(&mut self, config: Config) {
        self.sets.retain(|k, _| {
            config
                .services
                .iter()
                .any(|s| s.name == k.service && s.dns.contains(&k.backend))
        });
        self.base = config.clone();
        let _ = self.configs.send(Arc::new(config));
    }

    /// Takes a result; the expanded config to apply if it changed a name's backends.
    pub fn on_event(&mut self, event: &DnsEvent) -> Option<Config> {
        let change = event.change.as_ref()?;
        if change.after.is_empty() {
            self.sets.remove(&change.key);
        } else {
            self.sets.insert(change.key.clone(), change.after.clone());
        }
        Some(dns::expand(&self.base, &self.sets))
    }
}
