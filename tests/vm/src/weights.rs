//! Watches the destinations of one IPVS service: a thread dumps them over generic netlink
//! (`vipd_ipvs::Client`; or asks another source, [`WeightWatcher::start_with`]) every
//! `period` and records each change of a destination's
//! weight, its appearance and its removal, with the time the dump that showed it
//! returned. The change itself happened between the previous dump and that one, so a
//! time in the log is late by at most one poll interval (see [`WeightLog::max_gap`]).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use vipd_ipvs::{Client, ServiceKey};

/// A destination's state: its weight, or None when it is not in the service (removed, or
/// the service does not exist).
pub type Weight = Option<u32>;

/// Whether a destination takes no new connections: weight 0 or not in the service.
pub fn quarantined(w: Weight) -> bool {
    w.unwrap_or(0) == 0
}

/// One change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightEvent {
    /// When the dump that first showed the new state returned.
    pub at: Instant,
    /// When the previous dump was sent: the change happened after this.
    pub not_before: Instant,
    pub dest: SocketAddr,
    pub weight: Weight,
}

/// Everything a watcher saw.
#[derive(Clone, Debug)]
pub struct WeightLog {
    pub started: Instant,
    pub events: Vec<WeightEvent>,
    /// Dumps made.
    pub polls: u64,
    /// Dumps that failed (netlink errors).
    pub errors: u64,
    /// The longest time between the starts of two successive dumps.
    pub max_gap: Duration,
}

impl WeightLog {
    /// Every state `dest` had, in order (the first is its state at the first dump, or
    /// its appearance).
    pub fn history(&self, dest: SocketAddr) -> Vec<(Instant, Weight)> {
        self.events
            .iter()
            .filter(|e| e.dest == dest)
            .map(|e| (e.at, e.weight))
            .collect()
    }

    /// The first time `dest` entered a state matching `pred`.
    pub fn first_time(&self, dest: SocketAddr, pred: impl Fn(Weight) -> bool) -> Option<Instant> {
        self.first_time_after(dest, self.started, pred)
    }

    /// The first time, at or after `t`, that `dest` entered a state matching `pred`
    /// (a state it was already in at `t` does not count).
    pub fn first_time_after(
        &self,
        dest: SocketAddr,
        t: Instant,
        pred: impl Fn(Weight) -> bool,
    ) -> Option<Instant> {
        self.first_event_after(dest, t, pred).map(|e| e.at)
    }

    /// Like [`WeightLog::first_time_after`], the whole event.
    pub fn first_event_after(
        &self,
        dest: SocketAddr,
        t: Instant,
        pred: impl Fn(Weight) -> bool,
    ) -> Option<WeightEvent> {
        self.events
            .iter()
            .find(|e| e.dest == dest && e.at >= t && pred(e.weight))
            .copied()
    }

    /// `dest`'s state as last seen at or before `t` (None if never seen by then).
    pub fn state_at(&self, dest: SocketAddr, t: Instant) -> Weight {
        self.events
            .iter()
            .rev()
            .find(|e| e.dest == dest && e.at <= t)
            .and_then(|e| e.weight)
    }

    /// Every destination ever seen.
    pub fn dests(&self) -> Vec<SocketAddr> {
        let mut v: Vec<SocketAddr> = self.events.iter().map(|e| e.dest).collect();
        v.sort();
        v.dedup();
        v
    }
}

pub struct WeightWatcher {
    log: Arc<Mutex<WeightLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WeightWatcher {
    /// Starts polling `service`'s destinations every `period` (2 ms is fine: a dump of a
    /// few destinations takes well under a millisecond, even under TCG). The polling
    /// thread runs at a real-time priority so that a busy VM does not stall it. Returns
    /// after the first dump.
    pub fn start(service: ServiceKey, period: Duration) -> WeightWatcher {
        let mut client = None;
        Self::start_with(period, move || {
            let c = match client.as_mut() {
                Some(c) => c,
                None => client.insert(Client::connect().map_err(|_| ())?),
            };
            match c.destinations(&service) {
                Ok(dests) => Ok(dests
                    .iter()
                    .map(|d| (SocketAddr::new(d.addr, d.port), d.weight))
                    .collect()),
                Err(_) => {
                    client = None;
                    Err(())
                }
            }
        })
    }

    /// Like [`WeightWatcher::start`], with the destinations and weights from `dump`
    /// (e.g. a daemon's status, for a data plane other than IPVS); a dump that fails
    /// counts as an error and changes nothing.
    pub fn start_with(
        period: Duration,
        mut dump: impl FnMut() -> Result<BTreeMap<SocketAddr, u32>, ()> + Send + 'static,
    ) -> WeightWatcher {
        let started = Instant::now();
        let log = Arc::new(Mutex::new(WeightLog {
            started,
            events: Vec::new(),
            polls: 0,
            errors: 0,
            max_gap: Duration::ZERO,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            thread::spawn(move || {
                crate::realtime_thread(20);
                let mut seen: BTreeMap<SocketAddr, u32> = BTreeMap::new();
                let mut prev_sent = started;
                let mut ready = Some(ready_tx);
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let dump = dump();
                    let at = Instant::now();
                    let mut log = log.lock().unwrap();
                    log.polls += 1;
                    if log.polls > 1 {
                        log.max_gap = log.max_gap.max(sent - prev_sent);
                    }
                    match dump {
                        Ok(now) => {
                            let mut change = |dest, weight| {
                                log.events.push(WeightEvent {
                                    at,
                                    not_before: prev_sent,
                                    dest,
                                    weight,
                                })
                            };
                            for (d, w) in &now {
                                if seen.get(d) != Some(w) {
                                    change(*d, Some(*w));
                                }
                            }
                            for d in seen.keys().filter(|d| !now.contains_key(d)) {
                                change(*d, None);
                            }
                            seen = now;
                        }
                        Err(()) => log.errors += 1,
                    }
                    drop(log);
                    prev_sent = sent;
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    thread::sleep(period);
                }
            })
        };
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        WeightWatcher {
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// What it has seen so far.
    pub fn snapshot(&self) -> WeightLog {
        self.log.lock().unwrap().clone()
    }

    /// `dest`'s state now (as of the last dump).
    pub fn current(&self, dest: SocketAddr) -> Weight {
        self.snapshot().state_at(dest, Instant::now())
    }

    /// Waits up to `timeout` for `dest` to enter a state matching `pred` at or after `t`;
    /// returns when it was seen.
    pub fn wait_for(
        &self,
        dest: SocketAddr,
        t: Instant,
        timeout: Duration,
        pred: impl Fn(Weight) -> bool,
    ) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.log.lock().unwrap().first_time_after(dest, t, &pred) {
                return Some(at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits up to `timeout` until `dest`'s current state matches `pred`.
    pub fn wait_state(
        &self,
        dest: SocketAddr,
        timeout: Duration,
        pred: impl Fn(Weight) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self.current(dest)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stops polling; returns the log.
    pub fn stop(mut self) -> WeightLog {
        self.halt();
        self.snapshot()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WeightWatcher {
    fn drop(&mut self) {
        self.halt();
    }
}
