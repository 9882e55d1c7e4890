//! Handshake deadlines: `syn_rto` on the XDP plane. The clients are on other hosts, so
//! their SYN timeout cannot be set as the IPVS plane sets it; instead the program
//! reports each SYN of a watched service as it leaves for its backend, and a SYN with no
//! answer by the VIP's timeout (fixed, or k × the p99 of the handshakes seen) counts as
//! a retransmission of its backend. The backend's failure then comes in round trips, not
//! at the client's own retransmission a second later.
//!
//! The rule for early retransmissions applies as with IPVS ([`syn_rto::early`]): under an
//! adaptive timeout the expired deadline is held for half a timeout more, and a handshake
//! completing meanwhile raises the timeout instead of failing the backend. The client's
//! own retransmission of a SYN whose deadline already counted is not counted again.
//!
//! [`syn_rto::early`]: crate::plane::syn_rto::early

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    time::Duration,
};

use crate::{
    config::SynRto,
    model::{Outcome, Report},
    plane::syn_rto::Timeouts,
};

/// Handshakes followed at once, at most; SYNs beyond it get no deadline (the client's
/// retransmission still reports them).
pub const CAPACITY: usize = 65_536;
/// How long a connection whose deadline passed is remembered, so that the client's
/// retransmission of the same SYN (1 s after it, then 2 s) is not a second failure.
pub const EXPIRED_FOR: Duration = Duration::from_secs(4);

/// (VIP, client).
type Conn = (SocketAddr, SocketAddr);

#[derive(Debug)]
struct Pending {
    deadline_ns: u64,
    /// The SYN as reported: its time, client, VIP and backend.
    syn: Report,
}

#[derive(Debug, Default)]
pub struct Deadlines {
    timeouts: Timeouts,
    /// Each watched VIP's timeout now.
    current: HashMap<SocketAddr, Duration>,
    pending: HashMap<Conn, Pending>,
    due: BTreeSet<(u64, Conn)>,
    /// Connections whose deadline passed: when it did, when their SYN left, and for
    /// which backend.
    expired: HashMap<Conn, (u64, u64, Option<SocketAddr>)>,
    /// SYNs that got no deadline because [`CAPACITY`] were followed.
    pub skipped: u64,
}

impl Deadlines {
    /// Exactly these TCP VIPs have deadlines. Handshakes to other VIPs are forgotten.
    pub fn configure(&mut self, vips: &[(SocketAddr, SynRto)]) {
        self.timeouts.configure(vips);
        self.refresh();
        let current = &self.current;
        self.pending.retain(|(vip, _), _| current.contains_key(vip));
        self.due.retain(|(_, (vip, _))| current.contains_key(vip));
    }

    /// Takes the VIPs' timeouts again if any changed (a configure always changes them).
    fn refresh(&mut self) {
        if self.timeouts.take_changed() {
            self.current = self.timeouts.timeouts().into_iter().collect();
        }
    }

    /// The VIPs with deadlines.
    pub fn vips(&self) -> impl Iterator<Item = &SocketAddr> {
        self.current.keys()
    }

    /// The VIP's timeout now.
    pub fn timeout(&self, vip: &SocketAddr) -> Option<Duration> {
        self.current.get(vip).copied()
    }

    /// A SYN left for its backend at `syn.ts_ns` (the program's `SynSent`): its
    /// deadline starts, replacing any earlier one of the connection.
    pub fn sent(&mut self, syn: Report) {
        let (Some(client), Some(timeout)) = (syn.client, self.timeout(&syn.vip)) else {
            return;
        };
        let conn = (syn.vip, client);
        if let Some(old) = self.pending.remove(&conn) {
            self.due.remove(&(old.deadline_ns, conn));
        } else if self.pending.len() >= CAPACITY {
            self.skipped += 1;
            return;
        }
        self.expired.remove(&conn);
        let deadline_ns = syn.ts_ns.saturating_add(timeout.as_nanos() as u64);
        self.due.insert((deadline_ns, conn));
        self.pending.insert(conn, Pending { deadline_ns, syn });
    }

    /// A report of the program, passed on to `out` (or held by the early rule): a
    /// SYN-ACK of a followed SYN gets its handshake time, which adaptive timeouts learn
    /// from; the client's retransmission of a SYN whose deadline already counted is
    /// dropped.
    pub fn feed(&mut self, mut r: Report, out: &mut Vec<Report>) {
        let Some(client) = r.client else {
            out.push(r);
            return;
        };
        let conn = (r.vip, client);
        if let Outcome::SynRetransmit(_) = r.outcome {
            if self
                .expired
                .get(&conn)
                .is_some_and(|(_, _, backend)| *backend == r.backend)
            {
                return;
            }
        }
        if let Some(p) = self.pending.remove(&conn) {
            self.due.remove(&(p.deadline_ns, conn));
            if let Outcome::Established { latency } = &mut r.outcome {
                if p.syn.backend == r.backend {
                    *latency = Some(Duration::from_nanos(r.ts_ns.saturating_sub(p.syn.ts_ns)));
                }
            }
        } else if let (Outcome::Established { latency }, Some((_, sent_ns, backend))) =
            (&mut r.outcome, self.expired.remove(&conn))
        {
            // Answered after its deadline, by the backend it waited for: a slow one.
            if backend == r.backend {
                *latency = Some(Duration::from_nanos(r.ts_ns.saturating_sub(sent_ns)));
            }
        }
        self.timeouts.feed(r, out);
    }

    /// The deadlines passed by `now_ns`, each a SYN retransmission of its backend, and
    /// the held ones whose grace ended.
    pub fn expire(&mut self, now_ns: u64, out: &mut Vec<Report>) {
        while let Some(&(deadline_ns, conn)) = self.due.first() {
            if deadline_ns > now_ns {
                break;
            }
            self.due.pop_first();
            let Some(p) = self.pending.remove(&conn) else {
                continue;
            };
            self.expired
                .insert(conn, (deadline_ns, p.syn.ts_ns, p.syn.backend));
            let r = Report {
                ts_ns: deadline_ns,
                outcome: Outcome::SynRetransmit(1),
                syn_ns: p.syn.ts_ns,
                ..p.syn
            };
            self.timeouts.feed(r, out);
        }
        self.timeouts.release_due(now_ns, out);
    }

    /// When the next deadline or held report is due (kernel monotonic ns).
    pub fn next_deadline_ns(&self) -> Option<u64> {
        let first = self.due.first().map(|(d, _)| *d);
        match (first, self.timeouts.next_deadline_ns()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Periodic upkeep: adaptive timeouts follow their handshakes' p99, and expired
    /// connections are forgotten after [`EXPIRED_FOR`].
    pub fn maintain(&mut self, now_ns: u64) {
        self.timeouts.update(now_ns);
        self.refresh();
        let oldest = now_ns.saturating_sub(EXPIRED_FOR.as_nanos() as u64);
        self.expired.retain(|_, (at, _, _)| *at >= oldest);
    }

    /// Followed handshakes now.
    pub fn followed(&self) -> usize {
        self.pending.len()
    }

    /// Deadlines that passed but were answered within the grace (slow, not failing).
    pub fn answered_late(&self) -> u64 {
        self.timeouts.answered_late()
    }
}

#[cfg(test)]
#[path = "deadlines_tests.rs"]
mod tests;
