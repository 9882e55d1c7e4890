//! DNS client load through a VIP: queries for [`WHICH`] (TXT) on a fixed schedule (query
//! `k` is due at `start + k / rate`, whether or not earlier ones were answered), each
//! with a timeout, from one thread that polls every socket it has open. Every query's
//! times and outcome are recorded: answered by backend X (the TXT text) after some
//! latency, timed out, or refused (ECONNREFUSED: an ICMP port or host unreachable came
//! back for it).
//!
//! Two kinds of client:
//! * [`UdpLoad::start`]: ONE socket bound to a fixed source port and connected to the
//!   VIP, as a resolver keeps its socket: every query is the same UDP flow to IPVS, so
//!   they all go to one backend while the flow lives. Several queries may be in flight;
//!   replies are matched by ID. An ICMP error is reported by the kernel on the socket,
//!   not per datagram: it is charged to the oldest query still waiting.
//! * [`UdpLoad::start_many_ports`]: a new socket (a new ephemeral source port, so a new
//!   flow) per query, as a stub resolver that randomises ports does.
//!
//! The kernel rate-limits the ICMP errors it sends to the same host (about one a second
//! after a burst of a few, `net.ipv4.icmp_ratelimit`): past that, queries to a closed
//! port time out instead of being refused.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use super::wire::{self, WHICH};

/// How one query ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpOutcome {
    /// A NOERROR reply whose TXT answer names this backend (`vb1`, ...).
    Answered { backend: String },
    /// No reply within the timeout.
    TimedOut,
    /// ECONNREFUSED on the socket (an ICMP unreachable came back) while it waited.
    Refused,
    /// Anything else: a reply with an error rcode or no TXT answer, a socket error.
    Error(String),
}

impl UdpOutcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, UdpOutcome::Answered { .. })
    }

    pub fn backend(&self) -> Option<&str> {
        match self {
            UdpOutcome::Answered { backend } => Some(backend),
            _ => None,
        }
    }
}

impl fmt::Display for UdpOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UdpOutcome::Answered { backend } => write!(f, "ok({backend})"),
            UdpOutcome::TimedOut => f.write_str("timed out"),
            UdpOutcome::Refused => f.write_str("refused"),
            UdpOutcome::Error(e) => write!(f, "error({e})"),
        }
    }
}

/// One query.
#[derive(Clone, Debug)]
pub struct UdpQuery {
    /// 0, 1, 2, ... in schedule order.
    pub seq: u64,
    /// The client's source port.
    pub src_port: u16,
    /// When the schedule wanted it sent.
    pub scheduled: Instant,
    /// When it was sent.
    pub sent: Instant,
    /// When the outcome was known (reply, error, or the timeout).
    pub ended: Instant,
    pub outcome: UdpOutcome,
}

impl UdpQuery {
    /// From send to outcome (for an answered query: its latency).
    pub fn latency(&self) -> Duration {
        self.ended.saturating_duration_since(self.sent)
    }
}

/// Which source ports the client uses.
#[derive(Clone, Copy, Debug)]
enum Ports {
    Fixed(u16),
    PerQuery,
}

/// A running load. Stop it with [`UdpLoad::stop`]; [`UdpLoad::report`] reads it meanwhile.
pub struct UdpLoad {
    target: SocketAddr,
    rate: f64,
    started: Instant,
    queries: Arc<Mutex<Vec<UdpQuery>>>,
    late: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpLoad {
    /// Starts `rate_per_s` queries per second to `target` from one socket bound to
    /// source port `src_port` (panics if the port is taken), each waiting up to
    /// `timeout` for its reply.
    pub fn start(target: SocketAddr, src_port: u16, rate_per_s: f64, timeout: Duration) -> Self {
        Self::spawn(target, Ports::Fixed(src_port), rate_per_s, timeout)
    }

    /// Like [`UdpLoad::start`], with a new socket (ephemeral source port) per query.
    pub fn start_many_ports(target: SocketAddr, rate_per_s: f64, timeout: Duration) -> Self {
        Self::spawn(target, Ports::PerQuery, rate_per_s, timeout)
    }

    fn spawn(target: SocketAddr, ports: Ports, rate: f64, timeout: Duration) -> Self {
        assert!(rate > 0.0, "rate must be positive");
        let fixed = match ports {
            // Bound here so that a port in use fails the caller, not the thread.
            Ports::Fixed(p) => Some(
                client_socket(target, p)
                    .unwrap_or_else(|e| panic!("binding the client's source port {p}: {e}")),
            ),
            Ports::PerQuery => None,
        };
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (late, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let started = Instant::now();
        let mut engine = Engine {
            target,
            fixed,
            period: Duration::from_secs_f64(1.0 / rate),
            timeout,
            started,
            queries: queries.clone(),
            late: late.clone(),
            stop: stop.clone(),
            socks: HashMap::new(),
            pending: Vec::new(),
            seq: 0,
        };
        let thread = thread::Builder::new()
            .name("udp-load".into())
            .spawn(move || {
                // Keep the schedule and the timestamps under a busy VM.
                crate::realtime_thread(10);
                engine.run();
            })
            .expect("spawning the UDP load thread");
        UdpLoad {
            target,
            rate,
            started,
            queries,
            late,
            stop,
            thread: Some(thread),
        }
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The queries finished so far.
    pub fn report(&self) -> UdpReport {
        let mut queries = self.queries.lock().unwrap().clone();
        queries.sort_by_key(|q| q.seq);
        UdpReport {
            rate: self.rate,
            started: self.started,
            queries,
            late_replies: self.late.load(Ordering::SeqCst),
        }
    }

    /// Waits up to `timeout` for a finished query sent at or after `t` that matches
    /// `pred`; returns the first such (in schedule order).
    pub fn wait_for(
        &self,
        t: Instant,
        timeout: Duration,
        pred: impl Fn(&UdpQuery) -> bool,
    ) -> Option<UdpQuery> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .queries
                .lock()
                .unwrap()
                .iter()
                .filter(|q| q.sent >= t && pred(q))
                .min_by_key(|q| q.seq)
                .cloned();
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops sending, waits for the queries in flight (at most the timeout), and
    /// returns every query.
    pub fn stop(mut self) -> UdpReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for UdpLoad {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A UDP socket bound to `port` (0: ephemeral) of `target`'s family, connected to it.
pub fn client_socket(target: SocketAddr, port: u16) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], port))
    } else {
        SocketAddr::from(([0u16; 8], port))
    };
    let s = UdpSocket::bind(any)?;
    s.connect(target)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// A query waiting for its reply.
struct Pending {
    seq: u64,
    id: u16,
    sock: u64,
    src_port: u16,
    scheduled: Instant,
    sent: Instant,
}

/// The load's thread: sends on schedule, polls the sockets, settles queries.
struct Engine {
    target: SocketAddr,
    fixed: Option<UdpSocket>,
    period: Duration,
    timeout: Duration,
    started: Instant,
    queries: Arc<Mutex<Vec<UdpQuery>>>,
    late: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// Per-query sockets by key (the fixed socket is key 0 and lives in `fixed`).
    socks: HashMap<u64, UdpSocket>,
    pending: Vec<Pending>,
    seq: u64,
}

impl Engine {
    fn run(&mut self) {
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            if stopping && self.pending.is_empty() {
                return;
            }
            let now = Instant::now();
            if !stopping {
                while self.due(self.seq) <= now {
                    self.send();
                }
            }
            self.expire(Instant::now());
            let mut wake = self
                .pending
                .iter()
                .map(|p| p.sent + self.timeout)
                .min()
                .unwrap_or(now + Duration::from_millis(50));
            if !stopping {
                wake = wake.min(self.due(self.seq));
            }
            self.poll(wake.saturating_duration_since(Instant::now()));
        }
    }

    fn due(&self, seq: u64) -> Instant {
        self.started + self.period.mul_f64(seq as f64)
    }

    fn sock(&self, key: u64) -> Option<&UdpSocket> {
        match key {
            0 => self.fixed.as_ref(),
            k => self.socks.get(&k),
        }
    }

    fn send(&mut self) {
        let seq = self.seq;
        self.seq += 1;
        let scheduled = self.due(seq);
        let key = match self.fixed {
            Some(_) => 0,
            None => match client_socket(self.target, 0) {
                Ok(s) => {
                    self.socks.insert(seq + 1, s);
                    seq + 1
                }
                Err(e) => {
                    let now = Instant::now();
                    return self.record(seq, 0, scheduled, now, UdpOutcome::Error(e.to_string()));
                }
            },
        };
        let id = wire::random_id();
        let msg = wire::query(id, WHICH, wire::TXT);
        let src_port = self.sock(key).unwrap().local_addr().map_or(0, |a| a.port());
        let mut res = self.sock(key).unwrap().send(&msg);
        if matches!(&res, Err(e) if e.kind() == ErrorKind::ConnectionRefused) {
            // An ICMP error for an earlier datagram, reported on this send: charge it
            // to the oldest query still waiting on this socket, and send again.
            self.settle_oldest(key, UdpOutcome::Refused);
            res = self.sock(key).unwrap().send(&msg);
        }
        let sent = Instant::now();
        match res {
            Ok(_) => self.pending.push(Pending {
                seq,
                id,
                sock: key,
                src_port,
                scheduled,
                sent,
            }),
            Err(e) => {
                let outcome = match e.kind() {
                    ErrorKind::ConnectionRefused => UdpOutcome::Refused,
                    _ => UdpOutcome::Error(format!("send: {e}")),
                };
                self.record(seq, src_port, scheduled, sent, outcome);
                self.socks.remove(&key);
            }
        }
    }

    fn record(&self, seq: u64, src_port: u16, scheduled: Instant, sent: Instant, o: UdpOutcome) {
        self.queries.lock().unwrap().push(UdpQuery {
            seq,
            src_port,
            scheduled,
            sent,
            ended: Instant::now(),
            outcome: o,
        });
    }

    fn settle(&mut self, index: usize, outcome: UdpOutcome) {
        let p = self.pending.swap_remove(index);
        self.record(p.seq, p.src_port, p.scheduled, p.sent, outcome);
        if p.sock != 0 {
            self.socks.remove(&p.sock);
        }
    }

    fn settle_oldest(&mut self, key: u64, outcome: UdpOutcome) -> bool {
        let oldest = (0..self.pending.len())
            .filter(|&i| self.pending[i].sock == key)
            .min_by_key(|&i| self.pending[i].seq);
        match oldest {
            Some(i) => {
                self.settle(i, outcome);
                true
            }
            None => false,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(i) = self
            .pending
            .iter()
            .position(|p| now >= p.sent + self.timeout)
        {
            self.settle(i, UdpOutcome::TimedOut);
        }
    }

    fn poll(&mut self, wait: Duration) {
        let mut keys: Vec<u64> = self.pending.iter().map(|p| p.sock).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut fds: Vec<libc::pollfd> = keys
            .iter()
            .map(|&k| libc::pollfd {
                fd: self.sock(k).unwrap().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = wait.as_micros().div_ceil(1000).min(1000) as libc::c_int;
        if fds.is_empty() {
            thread::sleep(Duration::from_millis(ms as u64));
            return;
        }
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n <= 0 {
            return;
        }
        for (k, fd) in keys.into_iter().zip(fds) {
            if fd.revents != 0 {
                self.drain(k);
            }
        }
    }

    /// Reads everything socket `key` has: replies and errors.
    fn drain(&mut self, key: u64) {
        let mut buf = [0u8; 1500];
        loop {
            let Some(s) = self.sock(key) else { return };
            match s.recv(&mut buf) {
                Ok(n) => {
                    let outcome = match wire::parse(&buf[..n]) {
                        Ok(r) if r.rcode != wire::NOERROR => {
                            (r.id, UdpOutcome::Error(format!("rcode {}", r.rcode)))
                        }
                        Ok(r) => match r.first_txt() {
                            Some(t) => (
                                r.id,
                                UdpOutcome::Answered {
                                    backend: t.to_owned(),
                                },
                            ),
                            None => (r.id, UdpOutcome::Error("no TXT answer".into())),
                        },
                        Err(_) => {
                            self.late.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                    };
                    match self
                        .pending
                        .iter()
                        .position(|p| p.sock == key && p.id == outcome.0)
                    {
                        Some(i) => self.settle(i, outcome.1),
                        // A reply to a query that already timed out (or a stray).
                        None => {
                            self.late.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    self.settle_oldest(key, UdpOutcome::Refused);
                }
                Err(e) => {
                    self.settle_oldest(key, UdpOutcome::Error(format!("recv: {e}")));
                    return;
                }
            }
        }
    }
}

/// Every query of a load, in schedule order.
#[derive(Clone, Debug)]
pub struct UdpReport {
    pub rate: f64,
    pub started: Instant,
    pub queries: Vec<UdpQuery>,
    /// Replies that matched no waiting query (answers after the timeout).
    pub late_replies: u64,
}

impl UdpReport {
    pub fn len(&self) -> usize {
        self.queries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// Queries not answered by a backend.
    pub fn failures(&self) -> Vec<&UdpQuery> {
        self.queries.iter().filter(|q| !q.outcome.is_ok()).collect()
    }

    /// Queries sent in `[from, to)`.
    pub fn sent_in(&self, from: Instant, to: Instant) -> Vec<&UdpQuery> {
        self.queries
            .iter()
            .filter(|q| q.sent >= from && q.sent < to)
            .collect()
    }

    /// Failed queries sent in `[from, to)`.
    pub fn failures_in(&self, from: Instant, to: Instant) -> Vec<&UdpQuery> {
        self.sent_in(from, to)
            .into_iter()
            .filter(|q| !q.outcome.is_ok())
            .collect()
    }

    /// The failed query sent last (its `sent` and `ended` bound the failures' end).
    pub fn last_failure(&self) -> Option<&UdpQuery> {
        self.queries
            .iter()
            .filter(|q| !q.outcome.is_ok())
            .max_by_key(|q| q.sent)
    }

    /// The failed query that ended first at or after `t`.
    pub fn first_failure_after(&self, t: Instant) -> Option<&UdpQuery> {
        self.queries
            .iter()
            .filter(|q| q.ended >= t && !q.outcome.is_ok())
            .min_by_key(|q| q.ended)
    }

    /// Answered queries per backend.
    pub fn per_backend(&self) -> BTreeMap<String, usize> {
        count_backends(self.queries.iter())
    }

    /// Answered queries per backend among those sent in `[from, to)`.
    pub fn per_backend_in(&self, from: Instant, to: Instant) -> BTreeMap<String, usize> {
        count_backends(self.sent_in(from, to).into_iter())
    }

    /// Send times of the queries `backend` answered.
    pub fn timeline(&self, backend: &str) -> Vec<Instant> {
        self.queries
            .iter()
            .filter(|q| q.outcome.backend() == Some(backend))
            .map(|q| q.sent)
            .collect()
    }

    /// Outcome counts: `ok`, `timed out`, `refused`, `error`.
    pub fn outcome_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for q in &self.queries {
            let k = match q.outcome {
                UdpOutcome::Answered { .. } => "ok",
                UdpOutcome::TimedOut => "timed out",
                UdpOutcome::Refused => "refused",
                UdpOutcome::Error(_) => "error",
            };
            *out.entry(k).or_insert(0) += 1;
        }
        out
    }

    /// The largest latency among answered queries.
    pub fn max_latency(&self) -> Duration {
        self.queries
            .iter()
            .filter(|q| q.outcome.is_ok())
            .map(UdpQuery::latency)
            .max()
            .unwrap_or_default()
    }

    /// The largest delay between a query's due time and its send (schedule slip).
    pub fn max_send_lag(&self) -> Duration {
        self.queries
            .iter()
            .map(|q| q.sent.saturating_duration_since(q.scheduled))
            .max()
            .unwrap_or_default()
    }

    /// One line: queries, outcome counts, per backend, latency, slip, late replies.
    pub fn summary(&self) -> String {
        format!(
            "{} queries {:?} per backend {:?} max latency {:.1} ms max send lag {:.1} ms late replies {}",
            self.len(),
            self.outcome_counts(),
            self.per_backend(),
            self.max_latency().as_secs_f64() * 1e3,
            self.max_send_lag().as_secs_f64() * 1e3,
            self.late_replies
        )
    }
}

fn count_backends<'a>(it: impl Iterator<Item = &'a UdpQuery>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for q in it {
        if let Some(b) = q.outcome.backend() {
            *out.entry(b.to_string()).or_insert(0) += 1;
        }
    }
    out
}
