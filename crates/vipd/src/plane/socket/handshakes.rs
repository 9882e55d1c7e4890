//! Handshake times on the socket plane. For a VIP whose SYN timeout is adaptive, the
//! `sock_ops` program reports each translated connection's SYN as it leaves (a
//! `SynRetransmit(0)` report, not an outcome); here it is paired with the connection's
//! later reports: its establishment gets the handshake time the shared learning needs,
//! and every outcome the time of its first SYN (the start of a fault such as a
//! blackhole). The SYN reports themselves go no further.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use crate::model::{Outcome, Report};

/// Handshakes followed at once, at most; beyond it all are forgotten (their reports
/// then go on without a handshake time).
pub const CAPACITY: usize = 65_536;

/// (VIP, client).
type Conn = (SocketAddr, SocketAddr);

#[derive(Debug, Default)]
pub struct SynTimes {
    /// When each followed connection's SYN left (kernel monotonic ns).
    sent: HashMap<Conn, u64>,
}

impl SynTimes {
    /// `r` with what its connection's SYN tells, or `None` for the SYN report itself.
    pub fn fill(&mut self, mut r: Report) -> Option<Report> {
        let Some(client) = r.client else {
            return Some(r);
        };
        // No handshake followed (no adaptive VIP, the usual case): nothing to pair, and
        // no key hashed for every connection's report.
        if self.sent.is_empty() && r.outcome != Outcome::SynRetransmit(0) {
            return Some(r);
        }
        let conn = (r.vip, client);
        match r.outcome {
            Outcome::SynRetransmit(0) => {
                if self.sent.len() >= CAPACITY {
                    self.sent.clear();
                }
                self.sent.insert(conn, r.ts_ns);
                return None;
            }
            Outcome::Established { latency: None } => {
                if let Some(syn) = self.sent.remove(&conn) {
                    r.outcome = Outcome::Established {
                        latency: Some(Duration::from_nanos(r.ts_ns.saturating_sub(syn))),
                    };
                    r.syn_ns = syn;
                }
            }
            // The handshake goes on: an answer may still come.
            Outcome::SynRetransmit(_) => {
                if let Some(&syn) = self.sent.get(&conn) {
                    r.syn_ns = syn;
                }
            }
            _ => {
                if let Some(syn) = self.sent.remove(&conn) {
                    r.syn_ns = syn;
                }
            }
        }
        Some(r)
    }

    /// Connections followed now.
    #[cfg(test)]
    pub fn followed(&self) -> usize {
        self.sent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn report(port: u16, ts_ms: u64, outcome: Outcome) -> Report {
        Report {
            ts_ns: ts_ms * MS,
            client: Some(SocketAddr::new([10, 0, 0, 1].into(), port)),
            vip: "198.18.0.10:80".parse().unwrap(),
            backend: Some("198.18.1.2:80".parse().unwrap()),
            outcome,
            syn_ns: ts_ms * MS,
            protocol: 6,
            fwmark: None,
        }
    }

    #[test]
    fn an_establishment_gets_its_handshake_time_and_the_syn_goes_no_further() {
        let mut t = SynTimes::default();
        assert_eq!(t.fill(report(1000, 100, Outcome::SynRetransmit(0))), None);
        let r = t
            .fill(report(1000, 103, Outcome::Established { latency: None }))
            .unwrap();
        assert_eq!(
            r.outcome,
            Outcome::Established {
                latency: Some(Duration::from_millis(3))
            }
        );
        assert_eq!(r.syn_ns, 100 * MS);
        assert_eq!(t.followed(), 0);
        // Another connection's establishment, with no SYN seen: unchanged.
        let r = t
            .fill(report(1001, 110, Outcome::Established { latency: None }))
            .unwrap();
        assert_eq!(r.outcome, Outcome::Established { latency: None });
    }

    #[test]
    fn a_retransmission_dates_from_the_syn_and_the_answer_after_it_counts_in_full() {
        let mut t = SynTimes::default();
        t.fill(report(1000, 100, Outcome::SynRetransmit(0)));
        let r = t
            .fill(report(1000, 300, Outcome::SynRetransmit(1)))
            .unwrap();
        assert_eq!((r.outcome, r.syn_ns), (Outcome::SynRetransmit(1), 100 * MS));
        let r = t
            .fill(report(1000, 350, Outcome::Established { latency: None }))
            .unwrap();
        assert_eq!(
            r.outcome,
            Outcome::Established {
                latency: Some(Duration::from_millis(250))
            }
        );
        // A refusal ends the handshake.
        t.fill(report(1002, 400, Outcome::SynRetransmit(0)));
        let r = t.fill(report(1002, 401, Outcome::Refused)).unwrap();
        assert_eq!(r.syn_ns, 400 * MS);
        assert_eq!(t.followed(), 0);
    }
}
