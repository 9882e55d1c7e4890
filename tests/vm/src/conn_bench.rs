//! Measuring TCP through a target for the benchmarks: connection setup (closed-loop
//! clients that each connect, read a greeting and close, again and again) and a bulk
//! upload (one stream into a sink). Each figure is what the client sees.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

/// What closed-loop connection setup measured.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// Connections completed (connect, greeting read) inside the window.
    pub done: usize,
    /// Attempts that failed (any error or timeout) inside the window.
    pub failed: usize,
    /// Every connection attempt of the run, warm-up and tail included (for costs the
    /// kernel counts over the whole run).
    pub attempts: usize,
    pub window: Duration,
    /// Each completed connection's time from connect() to the greeting's end, sorted.
    pub latencies: Vec<Duration>,
    /// Each completed connection's time in connect() (until the handshake's end),
    /// sorted.
    pub connects: Vec<Duration>,
}

impl Setup {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.window.as_secs_f64()
    }

    /// The `q` quantile (0..=1) of the latencies; zero if there are none.
    pub fn quantile(&self, q: f64) -> Duration {
        crate::stats::quantile(&self.latencies, q)
    }

    /// The `q` quantile (0..=1) of the time in connect(); zero if there are none.
    pub fn connect_quantile(&self, q: f64) -> Duration {
        crate::stats::quantile(&self.connects, q)
    }
}

/// One connection: connect, read until the server closes. Returns the time connect()
/// took.
fn once(to: SocketAddr, timeout: Duration) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&to, timeout)?;
    let connected = start.elapsed();
    s.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 128];
    while s.read(&mut buf)? > 0 {}
    Ok(connected)
}

/// `clients` threads connecting in a closed loop, each connection to one of `to` at
/// random (a target that is several backends straight is spread over them as a VIP of
/// random choice spreads its connections, bursts on one backend included);
/// connections that end inside `warmup..warmup + window` count.
pub fn setup(to: &[SocketAddr], clients: usize, warmup: Duration, window: Duration) -> Setup {
    assert!(!to.is_empty(), "a setup target needs an address");
    let start = Instant::now();
    let (from, until) = (start + warmup, start + warmup + window);
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let to = to.to_vec();
            // xorshift64, seeded per client: no two clients draw the same sequence.
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ ((i as u64 + 1) << 32);
            thread::spawn(move || {
                let mut out = Setup {
                    window,
                    ..Default::default()
                };
                loop {
                    let t = Instant::now();
                    if t >= until {
                        return out;
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let r = once(to[(x % to.len() as u64) as usize], Duration::from_secs(2));
                    let end = Instant::now();
                    out.attempts += 1;
                    if end < from || end >= until {
                        continue;
                    }
                    match r {
                        Ok(connected) => {
                            out.done += 1;
                            out.latencies.push(end - t);
                            out.connects.push(connected);
                        }
                        Err(_) => out.failed += 1,
                    }
                }
            })
        })
        .collect();
    let mut all = Setup {
        window,
        ..Default::default()
    };
    for t in threads {
        let s = t.join().expect("a client thread");
        all.done += s.done;
        all.failed += s.failed;
        all.attempts += s.attempts;
        all.latencies.extend(s.latencies);
        all.connects.extend(s.connects);
    }
    all.latencies.sort();
    all.connects.sort();
    all
}

/// A bulk upload to a sink ([`crate::lab::Lab::serve_sink`]) for `window`: bytes per
/// second, counted from connect() until the sink has read everything and closed.
pub fn upload(to: SocketAddr, window: Duration) -> std::io::Result<f64> {
    let chunk = vec![0x5au8; 64 * 1024];
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = stop.clone();
        thread::spawn(move || {
            thread::sleep(window);
            stop.store(true, Ordering::SeqCst);
        })
    };
    let mut sent = 0u64;
    while !stop.load(Ordering::SeqCst) {
        s.write_all(&chunk)?;
        sent += chunk.len() as u64;
    }
    let _ = timer.join();
    s.shutdown(Shutdown::Write)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = [0u8; 16];
    while s.read(&mut buf)? > 0 {}
    Ok(sent as f64 / start.elapsed().as_secs_f64())
}
