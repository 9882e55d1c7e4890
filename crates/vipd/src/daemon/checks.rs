//! Active TCP checks: periodic connects per backend where a service asks for them
//! (`[service.health] check = {...}`), and one-shot probation probes before a
//! quarantined backend is re-admitted. Each runs in its own task and reports through a
//! bounded channel; the passive signal from the watcher stays the first line.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{net::TcpStream, sync::mpsc, task::JoinHandle, time};
use vipd_ipvs::ServiceKey;

use super::services::Services;
use crate::{config::ActiveCheck, reconcile::desired::DestId};

/// Why a check ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// The service's periodic check.
    Periodic,
    /// The one probe before re-admission.
    Probe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub service: ServiceKey,
    pub dest: DestId,
    pub kind: CheckKind,
    pub passed: bool,
    /// "connected in 0.4ms", "refused", "timed out after 1s", ...
    pub detail: String,
}

/// Results the channel could not take (the daemon's loop is that far behind); counted.
#[derive(Debug, Default)]
pub struct Dropped(AtomicU64);

impl Dropped {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Checks {
    tx: mpsc::Sender<CheckResult>,
    periodic: HashMap<(ServiceKey, DestId), (ActiveCheck, JoinHandle<()>)>,
    dropped: Arc<Dropped>,
}

impl Drop for Checks {
    fn drop(&mut self) {
        for (_, (_, h)) in self.periodic.drain() {
            h.abort();
        }
    }
}

/// One TCP connect with a timeout.
pub async fn connect_check(addr: SocketAddr, timeout: Duration) -> (bool, String) {
    let started = time::Instant::now();
    match time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => (
            true,
            format!(
                "connected in {:.1}ms",
                started.elapsed().as_secs_f64() * 1e3
            ),
        ),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            (false, "refused".to_owned())
        }
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (
            false,
            format!(
                "timed out after {}",
                crate::config::format_duration(timeout)
            ),
        ),
    }
}

impl Checks {
    /// `capacity`: how many results may wait for the daemon's loop.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<CheckResult>) {
        let (tx, rx) = mpsc::channel(capacity);
        let checks = Checks {
            tx,
            periodic: HashMap::new(),
            dropped: Arc::new(Dropped::default()),
        };
        (checks, rx)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Starts, restarts (settings changed) or stops periodic checks to match `services`.
    pub fn sync(&mut self, services: &Services) {
        let mut wanted = HashMap::new();
        for (key, s) in &services.by_key {
            let Some(check) = s.check else { continue };
            for id in s.dests.keys().filter(|id| id.1 != 0) {
                wanted.insert((*key, *id), check);
            }
        }
        self.periodic.retain(|k, (check, handle)| {
            let keep = wanted.get(k) == Some(check);
            if !keep {
                handle.abort();
            }
            keep
        });
        for (k, check) in wanted {
            if self.periodic.contains_key(&k) {
                continue;
            }
            let handle = tokio::spawn(periodic(
                k.0,
                k.1,
                check,
                self.tx.clone(),
                self.dropped.clone(),
            ));
            self.periodic.insert(k, (check, handle));
        }
    }

    /// One probe of `dest` before its re-admission.
    pub fn probe(&self, service: ServiceKey, dest: DestId, timeout: Duration) {
        let tx = self.tx.clone();
        let dropped = self.dropped.clone();
        tokio::spawn(async move {
            let (passed, detail) = connect_check(SocketAddr::from(dest), timeout).await;
            let r = CheckResult {
                service,
                dest,
                kind: CheckKind::Probe,
                passed,
                detail,
            };
            // A probe result must not be lost: wait for room rather than drop it.
            if tx.send(r).await.is_err() {
                dropped.0.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

async fn periodic(
    service: ServiceKey,
    dest: DestId,
    check: ActiveCheck,
    tx: mpsc::Sender<CheckResult>,
    dropped: Arc<Dropped>,
) {
    // Spread the services' checks over the interval instead of firing them together.
    let spread = u64::from(dest.1) * 7919 + crate::daemon::clock::mono_ns() % 1000;
    let offset = check.interval.mul_f64((spread % 1000) as f64 / 1000.0);
    time::sleep(offset).await;
    let mut tick = time::interval(check.interval);
    tick.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (passed, detail) = connect_check(SocketAddr::from(dest), check.timeout).await;
        let r = CheckResult {
            service,
            dest,
            kind: CheckKind::Periodic,
            passed,
            detail,
        };
        match tx.try_send(r) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                dropped.0.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_check_passes_on_a_listener_and_fails_refused() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (ok, detail) = connect_check(addr, Duration::from_secs(2)).await;
        assert!(ok, "{detail}");
        assert!(detail.starts_with("connected in "), "{detail}");
        drop(l);
        let (ok, detail) = connect_check(addr, Duration::from_secs(2)).await;
        assert!(!ok);
        assert_eq!(detail, "refused");
    }
}
