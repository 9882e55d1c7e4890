//! Client load through a VIP: new TCP connections on a fixed schedule (attempt `k` is
//! due at `start + k / rate`, whether or not earlier attempts have finished: each runs on
//! its own thread, so a hanging connect never delays the schedule). Each attempt
//! connects, reads the backend's greeting (`hello from <ns>`, from
//! [`Lab::serve_greeting`](crate::lab::Lab::serve_greeting)) to learn which backend
//! served it, and closes. Every attempt's times and outcome are recorded, and its
//! source port, as soon as connect() has picked it: so that a SYN a backend receives can
//! be told to be a client's ([`Load::sent`]) and not a health checker's, though both
//! leave the client host from the same address.
//!
//! Also: [`hold_connection`], a long-lived connection to an echo service
//! ([`Lab::serve_echo`](crate::lab::Lab::serve_echo)) that can prove it still works.

use std::{
    collections::BTreeMap,
    fmt,
    io::{self, BufRead, BufReader, ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use crate::{syn::Syn, tcp_client::connect_telling_port};

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Connected and got a greeting from this backend (its namespace name, `vb1`, ...).
    Ok { backend: String },
    /// connect() failed with ECONNREFUSED (an RST answered the SYN).
    Refused,
    /// connect() or the read of the greeting did not finish within the timeout.
    TimedOut,
    /// The connection was reset after it was established (ECONNRESET, EPIPE).
    Reset,
    /// Anything else, described.
    OtherError(String),
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }

    pub fn backend(&self) -> Option<&str> {
        match self {
            Outcome::Ok { backend } => Some(backend),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok { backend } => write!(f, "ok({backend})"),
            Outcome::Refused => f.write_str("refused"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::Reset => f.write_str("reset"),
            Outcome::OtherError(e) => write!(f, "error({e})"),
        }
    }
}

/// One connection attempt.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// 0, 1, 2, ... in schedule order.
    pub seq: u64,
    /// When the schedule wanted it to start.
    pub scheduled: Instant,
    /// When its thread called connect().
    pub started: Instant,
    /// When the outcome was known (connect error, or the greeting read, or the timeout).
    pub ended: Instant,
    /// The client socket's port (None if no socket could be made).
    pub port: Option<u16>,
    pub outcome: Outcome,
}

/// The life of one client socket: its port, from when its attempt started until its
/// outcome (None while in flight).
#[derive(Clone, Copy, Debug)]
struct Socket {
    port: u16,
    started: Instant,
    ended: Option<Instant>,
}

/// A running load. Stop it with [`Load::stop`]; [`Load::report`] reads it meanwhile.
pub struct Load {
    vip: SocketAddr,
    rate: f64,
    started: Instant,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    /// Every client socket, by attempt number, from its connect on.
    sockets: Arc<Mutex<BTreeMap<u64, Socket>>>,
    stop: Arc<AtomicBool>,
    scheduler: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

fn classify(e: &io::Error) -> Outcome {
    match e.kind() {
        ErrorKind::ConnectionRefused => Outcome::Refused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => Outcome::TimedOut,
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted => {
            Outcome::Reset
        }
        _ => Outcome::OtherError(e.to_string()),
    }
}

/// Connects (telling `port` its port), reads the greeting, closes.
fn attempt(vip: SocketAddr, timeout: Duration, port: impl FnOnce(u16)) -> Outcome {
    let mut s = match connect_telling_port(vip, timeout, port) {
        Ok(s) => s,
        Err(e) => return classify(&e),
    };
    if let Err(e) = s.set_read_timeout(Some(timeout)) {
        return classify(&e);
    }
    let mut text = String::new();
    match s.read_to_string(&mut text) {
        Ok(_) => match text.strip_prefix("hello from ") {
            Some(ns) => Outcome::Ok {
                backend: ns.trim().to_string(),
            },
            None => Outcome::OtherError(format!("unexpected greeting {text:?}")),
        },
        Err(e) => classify(&e),
    }
}

impl Load {
    /// Starts opening `rate_per_s` new connections per second to `vip`, each with
    /// `connect_timeout` for the connect and again for reading the greeting.
    pub fn start(vip: SocketAddr, rate_per_s: f64, connect_timeout: Duration) -> Load {
        assert!(rate_per_s > 0.0, "rate must be positive");
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let sockets = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let period = Duration::from_secs_f64(1.0 / rate_per_s);
        let scheduler = {
            let (attempts, sockets, stop) = (attempts.clone(), sockets.clone(), stop.clone());
            thread::spawn(move || {
                // Keep the schedule under a busy VM; the attempts themselves run at
                // normal priority, as real clients would.
                crate::realtime_thread(10);
                let mut workers: Vec<JoinHandle<()>> = Vec::new();
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let due = started + period.mul_f64(seq as f64);
                    let now = Instant::now();
                    if due > now {
                        thread::sleep(due - now);
                        continue;
                    }
                    let (attempts, sockets) = (attempts.clone(), sockets.clone());
                    let worker = thread::Builder::new()
                        .name(format!("load-{seq}"))
                        .stack_size(128 * 1024)
                        .spawn(move || {
                            crate::normal_thread();
                            let begun = Instant::now();
                            let outcome = attempt(vip, connect_timeout, |port| {
                                let socket = Socket {
                                    port,
                                    started: begun,
                                    ended: None,
                                };
                                sockets.lock().unwrap().insert(seq, socket);
                            });
                            let ended = Instant::now();
                            let port = sockets.lock().unwrap().get_mut(&seq).map(|s| {
                                s.ended = Some(ended);
                                s.port
                            });
                            attempts.lock().unwrap().push(Attempt {
                                seq,
                                scheduled: due,
                                started: begun,
                                ended,
                                port,
                                outcome,
                            });
                        })
                        .expect("spawning a load thread");
                    workers.push(worker);
                    workers.retain(|w| !w.is_finished());
                    seq += 1;
                }
                workers
            })
        };
        Load {
            vip,
            rate: rate_per_s,
            started,
            attempts,
            sockets,
            stop,
            scheduler: Some(scheduler),
        }
    }

    pub fn vip(&self) -> SocketAddr {
        self.vip
    }

    /// Whether `syn`, received by a backend, was sent by one of this load's attempts: an
    /// attempt's socket had the SYN's source port when the SYN came. (Health checkers on
    /// the client host connect from the same address, from other ports but for a rare
    /// coincidence: the kernel may give one port at the same time to two connections
    /// whose destinations differ, here the VIP and the backend.)
    pub fn sent(&self, syn: &Syn) -> bool {
        let port = syn.src.port();
        self.sockets
            .lock()
            .unwrap()
            .values()
            .any(|s| s.port == port && s.started <= syn.at && s.ended.is_none_or(|e| syn.at <= e))
    }

    /// The attempts finished so far.
    pub fn report(&self) -> LoadReport {
        let mut attempts = self.attempts.lock().unwrap().clone();
        attempts.sort_by_key(|a| a.seq);
        LoadReport {
            rate: self.rate,
            started: self.started,
            attempts,
        }
    }

    /// Waits up to `timeout` for an attempt whose outcome came at or after `t` and that
    /// matches `pred`; returns the one that ended first. By end, not start: a connect
    /// that began just before a fault at `t` can still be the first one the fault fails.
    pub fn wait_for(
        &self,
        t: Instant,
        timeout: Duration,
        pred: impl Fn(&Attempt) -> bool,
    ) -> Option<Attempt> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .attempts
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.ended >= t && pred(a))
                .min_by_key(|a| a.ended)
                .cloned();
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops scheduling, waits for the attempts in flight, and returns every attempt.
    pub fn stop(mut self) -> LoadReport {
        self.halt();
        self.report()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.scheduler.take() {
            for w in s.join().unwrap_or_default() {
                let _ = w.join();
            }
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Every attempt of a load, in schedule order.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub rate: f64,
    pub started: Instant,
    pub attempts: Vec<Attempt>,
}

impl LoadReport {
    pub fn len(&self) -> usize {
        self.attempts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.attempts.is_empty()
    }

    /// Attempts that did not get a greeting.
    pub fn failures(&self) -> Vec<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| !a.outcome.is_ok())
            .collect()
    }

    /// Attempts that started in `[from, to)`.
    pub fn started_in(&self, from: Instant, to: Instant) -> Vec<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.started >= from && a.started < to)
            .collect()
    }

    /// Failed attempts whose failure came in `[from, to)` (by end, so that a connect
    /// begun just before a fault at `from` and failed by it is counted).
    pub fn failures_in(&self, from: Instant, to: Instant) -> Vec<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.ended >= from && a.ended < to && !a.outcome.is_ok())
            .collect()
    }

    /// The refused attempt that ended first at or after `t`.
    pub fn first_refused_after(&self, t: Instant) -> Option<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.ended >= t && a.outcome == Outcome::Refused)
            .min_by_key(|a| a.ended)
    }

    /// The failed attempt that ended first at or after `t`.
    pub fn first_failure_after(&self, t: Instant) -> Option<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.ended >= t && !a.outcome.is_ok())
            .min_by_key(|a| a.ended)
    }

    /// Successful attempts per backend.
    pub fn per_backend(&self) -> BTreeMap<String, usize> {
        count_backends(self.attempts.iter())
    }

    /// Successful attempts per backend among those that started in `[from, to)`.
    pub fn per_backend_in(&self, from: Instant, to: Instant) -> BTreeMap<String, usize> {
        count_backends(self.started_in(from, to).into_iter())
    }

    /// Start times of the attempts `backend` served.
    pub fn timeline(&self, backend: &str) -> Vec<Instant> {
        self.attempts
            .iter()
            .filter(|a| a.outcome.backend() == Some(backend))
            .map(|a| a.started)
            .collect()
    }

    /// Every backend's timeline.
    pub fn timelines(&self) -> BTreeMap<String, Vec<Instant>> {
        let mut out: BTreeMap<String, Vec<Instant>> = BTreeMap::new();
        for a in &self.attempts {
            if let Some(b) = a.outcome.backend() {
                out.entry(b.to_string()).or_default().push(a.started);
            }
        }
        out
    }

    /// The attempts whose outcome came at or after `t`.
    pub fn since(&self, t: Instant) -> LoadReport {
        LoadReport {
            rate: self.rate,
            started: self.started,
            attempts: self
                .attempts
                .iter()
                .filter(|a| a.ended >= t)
                .cloned()
                .collect(),
        }
    }

    /// Outcome counts: `ok`, `refused`, `timed out`, `reset`, `error`.
    pub fn outcome_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for a in &self.attempts {
            let k = match a.outcome {
                Outcome::Ok { .. } => "ok",
                Outcome::Refused => "refused",
                Outcome::TimedOut => "timed out",
                Outcome::Reset => "reset",
                Outcome::OtherError(_) => "error",
            };
            *out.entry(k).or_insert(0) += 1;
        }
        out
    }

    /// The largest delay between an attempt's due time and its start (schedule slip).
    pub fn max_start_lag(&self) -> Duration {
        self.attempts
            .iter()
            .map(|a| a.started.saturating_duration_since(a.scheduled))
            .max()
            .unwrap_or_default()
    }

    /// One line: attempts, outcome counts, per backend, schedule slip.
    pub fn summary(&self) -> String {
        format!(
            "{} attempts {:?} per backend {:?} max start lag {:.1} ms",
            self.len(),
            self.outcome_counts(),
            self.per_backend(),
            self.max_start_lag().as_secs_f64() * 1e3
        )
    }
}

fn count_backends<'a>(it: impl Iterator<Item = &'a Attempt>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for a in it {
        if let Some(b) = a.outcome.backend() {
            *out.entry(b.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// A long-lived connection to an echo service through a VIP.
pub struct HeldConn {
    /// The backend that answered the first round trip (`vb1`, ...).
    pub backend: String,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    sent: u64,
}

/// Connects to `vip` (an echo service: [`Lab::serve_echo`](crate::lab::Lab::serve_echo)
/// behind it) and makes one round trip to learn the backend.
pub fn hold_connection(vip: SocketAddr, timeout: Duration) -> io::Result<HeldConn> {
    let writer = TcpStream::connect_timeout(&vip, timeout)?;
    writer.set_read_timeout(Some(timeout))?;
    let reader = BufReader::new(writer.try_clone()?);
    let mut c = HeldConn {
        backend: String::new(),
        writer,
        reader,
        sent: 0,
    };
    c.backend = c.round_trip()?;
    Ok(c)
}

impl HeldConn {
    /// Sends a line and reads the answer; returns the backend that answered. Fails if
    /// the connection is broken, the answer does not come within the timeout, or it is
    /// not the echo of what was sent.
    pub fn round_trip(&mut self) -> io::Result<String> {
        self.sent += 1;
        let line = format!("ping {}", self.sent);
        writeln!(self.writer, "{line}")?;
        let mut answer = String::new();
        if self.reader.read_line(&mut answer)? == 0 {
            return Err(io::Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let (backend, echoed) = answer
            .trim_end()
            .split_once(": ")
            .ok_or_else(|| io::Error::other(format!("bad answer {answer:?}")))?;
        if echoed != line || (!self.backend.is_empty() && backend != self.backend) {
            return Err(io::Error::other(format!(
                "sent {line:?} to {}, got {answer:?}",
                self.backend
            )));
        }
        Ok(backend.to_string())
    }

    /// Whether a round trip works now.
    pub fn alive(&mut self) -> bool {
        self.round_trip().is_ok()
    }
}
