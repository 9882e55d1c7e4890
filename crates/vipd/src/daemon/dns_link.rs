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

    /// `config` (from the file) is now in force: the resolver follows it.
    pub fn follow(&mut self, config: Config) {
        self.base = config.clone();
        let _ = self.configs.send(Arc::new(config));
    }

    /// Takes a result's sets; the expanded config to apply if the result changed a
    /// name's backends.
    pub fn on_event(&mut self, event: &DnsEvent) -> Option<Config> {
        self.sets = event.sets.clone();
        event.change.as_ref()?;
        Some(dns::expand(&self.base, &self.sets))
    }
}
