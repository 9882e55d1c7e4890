//! The rule for a SYN retransmitted early: under an adaptive timeout, a connection's
//! first SYN retransmission is not yet a failure of its backend. It is held for one
//! half a timeout more (half the time from the first SYN to that retransmission); if
//! the handshake
//! completes meanwhile, the backend is slow, not dead: the retransmission is dropped and
//! the handshake time raises the VIP's timeout at once. If not, the held report goes on
//! as the failure it is, at the deadline, or earlier if a later outcome of the same
//! connection (another retransmission, an RST, the client giving up) arrives first.
//!
//! So a backend whose handshakes jump to up to 1.5 times the VIP's timeout is never
//! quarantined for it, and a blackholed one is quarantined about 1.5 timeouts after the
//! first dropped SYN.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    time::Duration,
};

use crate::model::{Outcome, Report};

/// Held and recently released connections followed at most (beyond it every held
/// report is released, and the released ones forgotten).
pub const CAPACITY: usize = 16_384;
/// How long a released connection is remembered, so that its completion on another
/// backend does not count as a handshake time.
pub const RELEASED_FOR: Duration = Duration::from_secs(30);

type Conn = (SocketAddr, SocketAddr);

#[derive(Debug)]
enum Entry {
    Held { deadline_ns: u64, report: Report },
    Released { at_ns: u64 },
}

/// What [`Early::feed`] learnt of a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// A handshake that completed without retransmission.
    Normal(Duration),
    /// One that completed after its first SYN was retransmitted early: the backend is
    /// slow but answers.
    AnsweredLate(Duration),
}

#[derive(Debug, Default)]
pub struct Early {
    conns: HashMap<Conn, Entry>,
    /// Held connections by deadline.
    deadlines: BTreeMap<(u64, Conn), ()>,
    /// Retransmissions dropped because the handshake completed.
    pub answered_late: u64,
}

impl Early {
    /// Passes `r` on to `out`, or holds it if it is the first SYN retransmission of a
    /// connection to a VIP `adaptive` says has an adaptive timeout. Returns the
    /// handshake time `r` gives, if it is one to learn from (a connection rescued by
    /// another backend after its retransmission was released is not).
    pub fn feed(
        &mut self,
        r: Report,
        adaptive: impl Fn(SocketAddr) -> bool,
        out: &mut Vec<Report>,
    ) -> Option<Handshake> {
        let Some(client) = r.client else {
            out.push(r);
            return None;
        };
        // Nothing held or released (the usual case): no key to hash for every report.
        if self.conns.is_empty() && !matches!(r.outcome, Outcome::SynRetransmit(1)) {
            let learnt = match r.outcome {
                Outcome::Established { latency } => latency.map(Handshake::Normal),
                _ => None,
            };
            out.push(r);
            return learnt;
        }
        let conn = (r.vip, client);
        match r.outcome {
            Outcome::SynRetransmit(1)
                if adaptive(r.vip)
                    && !matches!(self.conns.get(&conn), Some(Entry::Held { .. })) =>
            {
                let grace = r.ts_ns.saturating_sub(r.syn_ns) / 2;
                let deadline_ns = r.ts_ns.saturating_add(grace);
                if self.conns.len() >= CAPACITY {
                    self.release_all(out);
                }
                self.deadlines.insert((deadline_ns, conn), ());
                self.conns.insert(
                    conn,
                    Entry::Held {
                        deadline_ns,
                        report: r,
                    },
                );
                None
            }
            Outcome::Established { latency } => {
                let learnt = match self.conns.remove(&conn) {
                    // Answered by the backend that left the first SYN unanswered: slow,
                    // not dead.
                    Some(Entry::Held {
                        deadline_ns,
                        report,
                    }) if report.backend == r.backend => {
                        self.deadlines.remove(&(deadline_ns, conn));
                        self.answered_late += 1;
                        latency.map(Handshake::AnsweredLate)
                    }
                    // Completed on another backend (IPVS moved the retransmitted SYN
                    // off a quarantined one): the first backend never answered.
                    Some(Entry::Held {
                        deadline_ns,
                        report,
                    }) => {
                        self.deadlines.remove(&(deadline_ns, conn));
                        out.push(report);
                        None
                    }
                    Some(Entry::Released { .. }) => None,
                    None => latency.map(Handshake::Normal),
                };
                out.push(r);
                learnt
            }
            _ => {
                if let Some(Entry::Held { deadline_ns, .. }) = self.conns.get(&conn) {
                    let deadline_ns = *deadline_ns;
                    self.release(deadline_ns, conn, r.ts_ns, out);
                }
                out.push(r);
                None
            }
        }
    }

    /// Moves the held reports whose deadline is at or before `now_ns` to `out`, and
    /// forgets released connections older than [`RELEASED_FOR`].
    pub fn release_due(&mut self, now_ns: u64, out: &mut Vec<Report>) {
        while let Some((&(deadline_ns, conn), ())) = self.deadlines.first_key_value() {
            if deadline_ns > now_ns {
                break;
            }
            self.release(deadline_ns, conn, now_ns, out);
        }
        let old = now_ns.saturating_sub(RELEASED_FOR.as_nanos() as u64);
        self.conns
            .retain(|_, e| !matches!(e, Entry::Released { at_ns } if *at_ns < old));
    }

    /// The earliest deadline of a held report (kernel monotonic ns).
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.deadlines.first_key_value().map(|(&(d, _), ())| d)
    }

    /// Reports held now.
    pub fn held(&self) -> usize {
        self.deadlines.len()
    }

    fn release(&mut self, deadline_ns: u64, conn: Conn, now_ns: u64, out: &mut Vec<Report>) {
        self.deadlines.remove(&(deadline_ns, conn));
        if let Some(Entry::Held { report, .. }) =
            self.conns.insert(conn, Entry::Released { at_ns: now_ns })
        {
            out.push(report);
        }
    }

    fn release_all(&mut self, out: &mut Vec<Report>) {
        let held: Vec<(u64, Conn)> = self.deadlines.keys().copied().collect();
        for (d, c) in held {
            self.release(d, c, d, out);
        }
        self.conns.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const VIP: &str = "198.18.0.10:80";
    const OTHER_VIP: &str = "198.18.0.11:80";

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn report(vip: &str, port: u16, syn_ms: u64, ts_ms: u64, outcome: Outcome) -> Report {
        Report {
            ts_ns: ts_ms * MS,
            client: Some(SocketAddr::new([10, 0, 0, 1].into(), port)),
            vip: a(vip),
            backend: Some(a("198.18.1.2:80")),
            outcome,
            syn_ns: syn_ms * MS,
            protocol: 6,
            fwmark: None,
        }
    }

    fn adaptive(vip: SocketAddr) -> bool {
        vip == a(VIP)
    }

    fn established(ms: u64) -> Outcome {
        Outcome::Established {
            latency: Some(Duration::from_millis(ms)),
        }
    }

    #[test]
    fn a_retransmission_answered_before_the_deadline_is_no_failure() {
        let mut e = Early::default();
        let mut out = Vec::new();
        // Timeout 100 ms: the SYN at 1000 ms is resent at 1100, held until 1150.
        let retx = report(VIP, 5000, 1_000, 1_100, Outcome::SynRetransmit(1));
        assert_eq!(e.feed(retx, adaptive, &mut out), None);
        assert!(out.is_empty());
        assert_eq!(e.next_deadline_ns(), Some(1_150 * MS));
        e.release_due(1_140 * MS, &mut out);
        assert!(out.is_empty());
        let done = report(VIP, 5000, 1_000, 1_145, established(145));
        assert_eq!(
            e.feed(done.clone(), adaptive, &mut out),
            Some(Handshake::AnsweredLate(Duration::from_millis(145)))
        );
        assert_eq!(out, [done]);
        assert_eq!(e.held(), 0);
        assert_eq!(e.answered_late, 1);
        e.release_due(2_000 * MS, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn an_unanswered_retransmission_goes_on_at_its_deadline() {
        let mut e = Early::default();
        let mut out = Vec::new();
        let retx = report(VIP, 5000, 1_000, 1_050, Outcome::SynRetransmit(1));
        e.feed(retx.clone(), adaptive, &mut out);
        e.release_due(1_074 * MS, &mut out);
        assert!(out.is_empty());
        e.release_due(1_075 * MS, &mut out);
        assert_eq!(out, [retx]);
        assert_eq!(e.next_deadline_ns(), None);
        // The connection then completes on another backend: not a handshake time.
        out.clear();
        let rescued = report(VIP, 5000, 1_000, 1_160, established(160));
        assert_eq!(e.feed(rescued, adaptive, &mut out), None);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_handshake_completed_on_another_backend_releases_the_retransmission() {
        let mut e = Early::default();
        let mut out = Vec::new();
        let retx = report(VIP, 5000, 1_000, 1_100, Outcome::SynRetransmit(1));
        e.feed(retx.clone(), adaptive, &mut out);
        let mut moved = report(VIP, 5000, 1_000, 1_130, established(130));
        moved.backend = Some(a("198.18.1.3:80"));
        assert_eq!(e.feed(moved.clone(), adaptive, &mut out), None);
        assert_eq!(out, [retx, moved]);
        assert_eq!(e.answered_late, 0);
        assert_eq!(e.held(), 0);
    }

    #[test]
    fn a_later_outcome_of_the_connection_releases_the_held_one_first() {
        let mut e = Early::default();
        let mut out = Vec::new();
        let retx = report(VIP, 5000, 1_000, 1_050, Outcome::SynRetransmit(1));
        e.feed(retx.clone(), adaptive, &mut out);
        let abort = report(VIP, 5000, 1_000, 1_070, Outcome::ClientAbort);
        e.feed(abort.clone(), adaptive, &mut out);
        assert_eq!(out, [retx, abort]);
        assert_eq!(e.held(), 0);
    }

    #[test]
    fn only_first_retransmissions_to_adaptive_vips_are_held() {
        let mut e = Early::default();
        let mut out = Vec::new();
        let fixed = report(OTHER_VIP, 5000, 1_000, 1_200, Outcome::SynRetransmit(1));
        let second = report(VIP, 5001, 1_000, 1_150, Outcome::SynRetransmit(2));
        let refused = report(VIP, 5002, 1_000, 1_001, Outcome::Refused);
        let mut anonymous = report(VIP, 5003, 1_000, 1_050, Outcome::SynRetransmit(1));
        anonymous.client = None;
        for r in [&fixed, &second, &refused, &anonymous] {
            e.feed(r.clone(), adaptive, &mut out);
        }
        assert_eq!(out, [fixed, second, refused, anonymous]);
        assert_eq!(e.held(), 0);
    }

    #[test]
    fn normal_handshakes_are_learnt() {
        let mut e = Early::default();
        let mut out = Vec::new();
        let done = report(VIP, 5000, 1_000, 1_003, established(3));
        assert_eq!(
            e.feed(done, adaptive, &mut out),
            Some(Handshake::Normal(Duration::from_millis(3)))
        );
    }

    #[test]
    fn released_connections_are_forgotten_after_a_while() {
        let mut e = Early::default();
        let mut out = Vec::new();
        e.feed(
            report(VIP, 5000, 1_000, 1_050, Outcome::SynRetransmit(1)),
            adaptive,
            &mut out,
        );
        e.release_due(1_100 * MS, &mut out);
        e.release_due(1_100 * MS + RELEASED_FOR.as_nanos() as u64 + 1, &mut out);
        // The same client port later: a new connection, learnt normally.
        let done = report(VIP, 5000, 40_000, 40_002, established(2));
        assert_eq!(
            e.feed(done, adaptive, &mut out),
            Some(Handshake::Normal(Duration::from_millis(2)))
        );
    }

    #[test]
    fn a_full_table_releases_everything_held() {
        let mut e = Early::default();
        let mut out = Vec::new();
        for port in 0..CAPACITY as u16 {
            e.feed(
                report(VIP, port, 1_000, 1_050, Outcome::SynRetransmit(1)),
                adaptive,
                &mut out,
            );
        }
        assert!(out.is_empty());
        e.feed(
            report(VIP, 60_000, 1_000, 1_050, Outcome::SynRetransmit(1)),
            adaptive,
            &mut out,
        );
        assert_eq!(out.len(), CAPACITY);
        assert_eq!(e.held(), 1);
    }
}
