//! Active checks: periodic checks per backend where a service asks for them
//! (`[service.health] check = {...}`), and one-shot probation probes before a
//! quarantined backend is re-admitted. TCP: a connect. UDP: the service's probe
//! datagram, passed by a reply that starts with the expected bytes. Each runs in its own
//! task and reports through a bounded channel; the passive signals from the watcher stay
//! the first line.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use super::services::Services;
use crate::{
    config::{ActiveCheck, UdpProbe},
    model::{BackendId, ServiceKey},
};
use tokio::{
    net::{TcpStream, UdpSocket},
    sync::mpsc,
    task::JoinHandle,
    time,
};

/// What a check does: a TCP connect, or a UDP exchange.
type How = Option<UdpProbe>;

/// A running periodic check: its settings and its task.
type Running = ((ActiveCheck, How), JoinHandle<()>);

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
    pub dest: BackendId,
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
    periodic: HashMap<(ServiceKey, BackendId), Running>,
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

/// One UDP exchange with a timeout: send `probe.payload` from a fresh socket, pass on a
/// reply starting with `probe.expect`.
pub async fn udp_check(addr: SocketAddr, probe: &UdpProbe, timeout: Duration) -> (bool, String) {
    let started = time::Instant::now();
    let exchange = async {
        let local: SocketAddr = if addr.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local).await?;
        // Connected, so that an ICMP error comes back as ECONNREFUSED.
        sock.connect(addr).await?;
        sock.send(&probe.payload).await?;
        let mut buf = vec![0u8; 65_536];
        let n = sock.recv(&mut buf).await?;
        buf.truncate(n);
        Ok::<_, std::io::Error>(buf)
    };
    match time::timeout(timeout, exchange).await {
        Ok(Ok(reply)) if reply.starts_with(&probe.expect) => (
            true,
            format!("replied in {:.1}ms", started.elapsed().as_secs_f64() * 1e3),
        ),
        Ok(Ok(reply)) => (
            false,
            format!(
                "unexpected reply ({} bytes, not starting with the {} expected)",
                reply.len(),
                probe.expect.len()
            ),
        ),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            (false, "refused (ICMP unreachable)".to_owned())
        }
        Ok(Err(e)) => (false, e.to_string()),
        Err(_) => (
            false,
            format!(
                "no reply within {}",
                crate::config::format_duration(timeout)
            ),
        ),
    }
}

/// One check of `addr`, as `how` says.
async fn check_once(addr: SocketAddr, how: &How, timeout: Duration) -> (bool, String) {
    match how {
        None => connect_check(addr, timeout).await,
        Some(p) => udp_check(addr, p, timeout).await,
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
            for id in s.dests.keys().filter(|id| id.port != 0) {
                wanted.insert((*key, *id), (check, s.udp_probe.clone()));
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
                check.clone(),
                self.tx.clone(),
                self.dropped.clone(),
            ));
            self.periodic.insert(k, (check, handle));
        }
    }

    /// One probe of `dest` before its re-admission (`udp`: the UDP service's probe).
    pub fn probe(&self, service: ServiceKey, dest: BackendId, timeout: Duration, udp: How) {
        let tx = self.tx.clone();
        let dropped = self.dropped.clone();
        tokio::spawn(async move {
            let (passed, detail) = check_once(SocketAddr::from(dest), &udp, timeout).await;
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
    dest: BackendId,
    (check, how): (ActiveCheck, How),
    tx: mpsc::Sender<CheckResult>,
    dropped: Arc<Dropped>,
) {
    // Spread the services' checks over the interval instead of firing them together.
    let spread = u64::from(dest.port) * 7919 + crate::clock::mono_ns() % 1000;
    let offset = check.interval.mul_f64((spread % 1000) as f64 / 1000.0);
    time::sleep(offset).await;
    let mut tick = time::interval(check.interval);
    tick.set_missed_tick_behavior(time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (passed, detail) = check_once(SocketAddr::from(dest), &how, check.timeout).await;
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

    #[tokio::test]
    async fn udp_check_passes_on_the_expected_reply_and_fails_otherwise() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            for _ in 0..2 {
                let (n, from) = server.recv_from(&mut buf).await.unwrap();
                server.send_to(&buf[..n], from).await.unwrap();
            }
            server
        });
        let probe = |expect: &[u8]| UdpProbe {
            payload: b"ping".to_vec(),
            expect: expect.to_vec(),
        };
        let (ok, detail) = udp_check(addr, &probe(b"pi"), Duration::from_secs(2)).await;
        assert!(ok, "{detail}");
        assert!(detail.starts_with("replied in "), "{detail}");
        let (ok, detail) = udp_check(addr, &probe(b"pong"), Duration::from_secs(2)).await;
        assert!(!ok);
        assert!(detail.starts_with("unexpected reply"), "{detail}");
        let server = echo.await.unwrap();
        let (ok, detail) = udp_check(addr, &probe(b""), Duration::from_millis(200)).await;
        assert!(!ok, "nobody answers the third datagram");
        assert!(detail.starts_with("no reply within"), "{detail}");
        drop(server);
        let (ok, detail) = udp_check(addr, &probe(b""), Duration::from_secs(2)).await;
        assert!(!ok);
        assert_eq!(detail, "refused (ICMP unreachable)");
    }
}
