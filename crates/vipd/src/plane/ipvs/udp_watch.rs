//! UDP backends, from the kernel's per-backend traffic counters (`UDP_TRAFFIC`: datagrams
//! IPVS sent, replies delivered to clients, since when a datagram waits for a reply).
//! Polled every [`POLL`]: new replies are a success for the backend; a wait longer than
//! the service's `silence_window` makes it silent, a failure. Pure: the IPVS plane feeds
//! in the counters and acts on the findings (and clears the wait it acted on).

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use vipd_common::{DestKey, UdpTraffic};

/// How often the counters are read. A silent backend is found at most this long after
/// its window has passed.
pub const POLL: Duration = Duration::from_millis(50);

/// What one poll found for one backend (one for every backend with counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: DestKey,
    pub vip: SocketAddr,
    pub backend: SocketAddr,
    /// Absolute kernel counters.
    pub sent: u64,
    pub replied: u64,
    /// Replies since the last poll (a success when > 0).
    pub new_replies: u64,
    /// The backend has owed a reply since this kernel time for longer than its window.
    pub silent_since_ns: Option<u64>,
}

#[derive(Debug, Default)]
pub struct UdpWatch {
    replied: HashMap<DestKey, u64>,
}

impl UdpWatch {
    /// Compares `counters` with the previous poll. `window` gives each VIP's
    /// `silence_window` (`None`: silence not watched, or not a configured service);
    /// `now_ns` is the kernel's monotonic clock.
    pub fn poll(
        &mut self,
        counters: &[(DestKey, UdpTraffic)],
        now_ns: u64,
        window: impl Fn(SocketAddr) -> Option<Duration>,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        for (key, t) in counters {
            let Some((vip, backend)) = crate::watcher::dest_addrs(key) else {
                continue;
            };
            let before = self.replied.insert(*key, t.replied);
            // A counter that went backwards is a new map entry (LRU eviction): start over.
            let new_replies = match before {
                Some(b) if t.replied >= b => t.replied - b,
                _ => t.replied,
            };
            let silent_since_ns = match (t.pending_since_ns, window(vip)) {
                (0, _) | (_, None) => None,
                (since, Some(w)) => {
                    (now_ns.saturating_sub(since) >= w.as_nanos() as u64).then_some(since)
                }
            };
            out.push(Finding {
                key: *key,
                vip,
                backend,
                sent: t.sent,
                replied: t.replied,
                new_replies,
                silent_since_ns,
            });
        }
        if self.replied.len() > counters.len() {
            let present: std::collections::HashSet<&DestKey> =
                counters.iter().map(|(k, _)| k).collect();
            self.replied.retain(|k, _| present.contains(k));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vipd_common::{AF_INET, IPPROTO_UDP};

    fn key(backend_last: u8) -> DestKey {
        let mut k = DestKey {
            vport: 53,
            bport: 53,
            family: AF_INET as u8,
            backend_family: AF_INET as u8,
            protocol: IPPROTO_UDP as u8,
            ..DestKey::default()
        };
        k.vip[..4].copy_from_slice(&[198, 18, 0, 10]);
        k.backend[..4].copy_from_slice(&[198, 18, backend_last, 2]);
        k
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn replies_are_successes_and_a_long_wait_is_silence() {
        let mut w = UdpWatch::default();
        let win = |_| Some(Duration::from_millis(500));
        let t = |sent, replied, pending| UdpTraffic {
            sent,
            replied,
            pending_since_ns: pending,
            last_reply_ns: 0,
        };
        // Both answer.
        let f = w.poll(
            &[(key(1), t(3, 3, 0)), (key(2), t(3, 3, 0))],
            1000 * MS,
            win,
        );
        assert_eq!(f.len(), 2);
        assert!(f
            .iter()
            .all(|f| f.new_replies == 3 && f.silent_since_ns.is_none()));
        // Backend 2 stops answering at 1100 ms: nothing to say until its window passes.
        let news = |f: Vec<Finding>| -> Vec<Finding> {
            f.into_iter()
                .filter(|f| f.new_replies > 0 || f.silent_since_ns.is_some())
                .collect()
        };
        let f = news(w.poll(
            &[(key(1), t(5, 5, 0)), (key(2), t(5, 3, 1100 * MS))],
            1400 * MS,
            win,
        ));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].backend, "198.18.1.2:53".parse().unwrap());
        let f = news(w.poll(
            &[(key(1), t(5, 5, 0)), (key(2), t(7, 3, 1100 * MS))],
            1600 * MS,
            win,
        ));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].backend, "198.18.2.2:53".parse().unwrap());
        assert_eq!(f[0].silent_since_ns, Some(1100 * MS));
        assert_eq!(f[0].new_replies, 0);
        // Without a window silence is not watched.
        let f = news(w.poll(&[(key(2), t(7, 3, 1100 * MS))], 9000 * MS, |_| None));
        assert!(f.is_empty());
    }

    #[test]
    fn a_counter_that_restarts_counts_from_zero() {
        let mut w = UdpWatch::default();
        let t = |replied| UdpTraffic {
            replied,
            ..UdpTraffic::default()
        };
        w.poll(&[(key(1), t(10))], 0, |_| None);
        let f = w.poll(&[(key(1), t(2))], 0, |_| None);
        assert_eq!(f[0].new_replies, 2);
    }
}
