//! Closed-loop DNS throughput, for benchmarks: `clients` sockets (each its own source
//! port, so its own UDP flow), each with exactly one query for [`WHICH`] in flight: a
//! reply, a timeout or an error sends the next one at once. One thread polls them all,
//! so the same client measures a VIP and a backend straight. A warm-up first; then only
//! what happens in the measured window counts.

use std::{
    collections::BTreeMap,
    io::ErrorKind,
    net::SocketAddr,
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use super::{
    load::client_socket,
    wire::{self, WHICH},
};

/// What one closed-loop run measured.
#[derive(Clone, Debug, Default)]
pub struct Throughput {
    pub clients: usize,
    /// The measured window.
    pub window: Duration,
    /// Answered queries (NOERROR with a TXT answer) received in the window.
    pub answered: u64,
    pub timed_out: u64,
    pub refused: u64,
    /// Other errors: bad rcodes, replies without a TXT answer, socket errors.
    pub errors: u64,
    /// Replies that came after their query's timeout.
    pub late: u64,
    pub per_backend: BTreeMap<String, u64>,
    /// Latencies of the answered queries, sorted.
    pub latencies: Vec<Duration>,
}

impl Throughput {
    /// Answered queries per second.
    pub fn qps(&self) -> f64 {
        self.answered as f64 / self.window.as_secs_f64()
    }

    /// Queries that did not get an answer in time, over all that finished.
    pub fn loss(&self) -> f64 {
        let failed = self.timed_out + self.refused + self.errors;
        failed as f64 / (failed + self.answered).max(1) as f64
    }

    /// The `q` quantile (0..=1) of the answered queries' latency.
    pub fn latency(&self, q: f64) -> Duration {
        crate::stats::quantile(&self.latencies, q)
    }

    /// One line: rate, loss, latency quantiles, per backend.
    pub fn line(&self) -> String {
        format!(
            "{:8.0} queries/s ({} answered in {:.1} s, {} clients), timed out {}, refused {}, errors {}, late {}, loss {:.3} %, latency p50 {:.2} ms p99 {:.2} ms, per backend {:?}",
            self.qps(),
            self.answered,
            self.window.as_secs_f64(),
            self.clients,
            self.timed_out,
            self.refused,
            self.errors,
            self.late,
            self.loss() * 100.0,
            self.latency(0.5).as_secs_f64() * 1e3,
            self.latency(0.99).as_secs_f64() * 1e3,
            self.per_backend
        )
    }
}

/// One client socket and its query in flight.
struct Client {
    sock: std::net::UdpSocket,
    id: u16,
    sent: Instant,
}

impl Client {
    fn send(&mut self, msg_for: impl Fn(u16) -> Vec<u8>) -> std::io::Result<()> {
        self.id = wire::random_id();
        self.sent = Instant::now();
        self.sock.send(&msg_for(self.id)).map(|_| ())
    }
}

/// Runs `clients` closed-loop clients, client `i` querying `targets[i % targets.len()]`,
/// for `warmup` and then `window`; each query times out after `timeout`.
pub fn closed_loop(
    targets: &[SocketAddr],
    clients: usize,
    warmup: Duration,
    window: Duration,
    timeout: Duration,
) -> Throughput {
    assert!(!targets.is_empty() && clients > 0);
    let msg_for = |id| wire::query(id, WHICH, wire::TXT);
    let now = Instant::now();
    let mut cs: Vec<Client> = (0..clients)
        .map(|i| Client {
            sock: client_socket(targets[i % targets.len()], 0).expect("a client socket"),
            id: 0,
            sent: now,
        })
        .collect();
    let (from, to) = (now + warmup, now + warmup + window);
    let mut t = Throughput {
        clients,
        window,
        ..Default::default()
    };
    for c in &mut cs {
        let _ = c.send(msg_for);
    }
    let mut fds: Vec<libc::pollfd> = cs
        .iter()
        .map(|c| libc::pollfd {
            fd: c.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= to {
            break;
        }
        let counting = |at: Instant| at >= from && at < to;
        // Timeouts: count and send the next query.
        for c in cs.iter_mut().filter(|c| now >= c.sent + timeout) {
            if counting(now) {
                t.timed_out += 1;
            }
            let _ = c.send(msg_for);
        }
        let next = cs.iter().map(|c| c.sent + timeout).min().unwrap().min(to);
        let ms = next
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000) as libc::c_int;
        // SAFETY: `fds` is a valid pollfd array for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            continue;
        }
        for (c, fd) in cs.iter_mut().zip(fds.iter_mut()) {
            if std::mem::take(&mut fd.revents) == 0 {
                continue;
            }
            loop {
                match c.sock.recv(&mut buf) {
                    Ok(len) => {
                        let got = Instant::now();
                        let Ok(r) = wire::parse(&buf[..len]) else {
                            t.errors += u64::from(counting(got));
                            continue;
                        };
                        if r.id != c.id {
                            t.late += u64::from(counting(got));
                            continue;
                        }
                        if counting(got) {
                            match r.first_txt() {
                                Some(name) if r.rcode == wire::NOERROR => {
                                    t.answered += 1;
                                    *t.per_backend.entry(name.to_owned()).or_default() += 1;
                                    t.latencies.push(got - c.sent);
                                }
                                _ => t.errors += 1,
                            }
                        }
                        let _ = c.send(msg_for);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        let got = Instant::now();
                        if counting(got) {
                            match e.kind() {
                                ErrorKind::ConnectionRefused => t.refused += 1,
                                _ => t.errors += 1,
                            }
                        }
                        let _ = c.send(msg_for);
                    }
                }
            }
        }
    }
    t.latencies.sort_unstable();
    t
}
