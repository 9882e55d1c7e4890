//! Records every TCP or UDP packet the sink receives, as IPVS forwarded it: a packet
//! socket on the sink's `eth0`, read by a thread until the capture is dropped.

use std::{
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use super::{
    packet::{parse, Forwarded},
    topology::SINK,
};
use crate::packet_socket::{packet_socket, FrameReader};

#[derive(Default)]
struct Seen {
    packets: Vec<Forwarded>,
    /// Packets that could not be read (a broken checksum, a malformed header).
    errors: Vec<String>,
}

pub struct Capture {
    seen: Arc<(Mutex<Seen>, Condvar)>,
    /// Reads until the capture is dropped.
    _reader: FrameReader,
}

impl Capture {
    pub fn start() -> Self {
        let fd = packet_socket(SINK, "eth0");
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let reader = {
            let seen = seen.clone();
            FrameReader::spawn(fd, 2048, move |frame, pkttype, _| {
                if pkttype == libc::PACKET_OUTGOING {
                    return;
                }
                let (lock, wake) = &*seen;
                match parse(frame) {
                    Ok(Some(p)) => lock.lock().unwrap().packets.push(p),
                    Ok(None) => return,
                    Err(e) => lock.lock().unwrap().errors.push(e),
                }
                wake.notify_all();
            })
        };
        Capture {
            seen,
            _reader: reader,
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
