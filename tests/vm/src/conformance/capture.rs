//! Records every TCP or UDP packet the sink receives, as IPVS forwarded it: a packet
//! socket on the sink's `eth0`, read by a thread until the capture is dropped.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use super::{
    packet::{parse, Forwarded},
    topology::SINK,
};
use crate::packet_socket::{packet_socket, receive};

#[derive(Default)]
struct Seen {
    packets: Vec<Forwarded>,
    /// Packets that could not be read (a broken checksum, a malformed header).
    errors: Vec<String>,
}

pub struct Capture {
    seen: Arc<(Mutex<Seen>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    pub fn start() -> Self {
        let fd = packet_socket(SINK, "eth0");
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Some((n, pkttype, _)) = receive(&fd, &mut buf) else {
                        continue;
                    };
                    if pkttype == libc::PACKET_OUTGOING {
                        continue;
                    }
                    let (lock, wake) = &*seen;
                    match parse(&buf[..n]) {
                        Ok(Some(p)) => lock.lock().unwrap().packets.push(p),
                        Ok(None) => continue,
                        Err(e) => lock.lock().unwrap().errors.push(e),
                    }
                    wake.notify_all();
                }
            })
        };
        Capture {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// How many packets have been recorded so far.
    pub fn len(&self) -> usize {
        self.seen.0.lock().unwrap().packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits up to `timeout` for the first packet after the first `from` that `want`
    /// accepts, then returns it with every packet recorded after `from` so far. Panics
    /// on a packet that could not be read.
    pub fn wait_after(
        &self,
        from: usize,
        timeout: Duration,
        want: impl Fn(&Forwarded) -> bool,
    ) -> (Option<Forwarded>, Vec<Forwarded>) {
        let deadline = Instant::now() + timeout;
        let (lock, wake) = &*self.seen;
        let mut seen = lock.lock().unwrap();
        loop {
            assert!(
                seen.errors.is_empty(),
                "unreadable packets at the sink: {:?}",
                seen.errors
            );
            let after = seen.packets.get(from..).unwrap_or_default();
            if let Some(p) = after.iter().find(|p| want(p)) {
                return (Some(*p), after.to_vec());
            }
            let now = Instant::now();
            if now >= deadline {
                return (None, after.to_vec());
            }
            seen = wake.wait_timeout(seen, deadline - now).unwrap().0;
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
