//! Turns raw kernel events into connection outcomes attributed to (VIP, real backend).
//!
//! Events of one client socket are tied together by the kernel socket address; the real
//! backend comes with the events (joined in the kernel on the connection's addresses) or,
//! failing that, from the `ip_vs_conn_new` event for the same client and VIP. The table
//! of open connections is bounded: past `capacity` the oldest entry is dropped and
//! counted, never silently.

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    time::Duration,
};

use super::event::{Event, TcpState};
pub use crate::model::{Counters, IcmpCode, Outcome, Report};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

#[derive(Debug)]
struct Conn {
    vip: SocketAddr,
    client: Option<SocketAddr>,
    backend: Option<SocketAddr>,
    syn_ns: u64,
    state: TcpState,
    retransmits: u32,
    reset: bool,
    by_peer: bool,
    /// The backend the previous SYN went to, when IPVS sent a retransmitted SYN to
    /// another one (see [`Correlator`]): the one that failed to answer.
    unanswered: Option<SocketAddr>,
    fwmark: Option<u32>,
}

impl Conn {
    fn syn_sent(vip: SocketAddr, syn_ns: u64) -> Self {
        Self {
            vip,
            client: None,
            backend: None,
            syn_ns,
            state: TcpState::SynSent,
            retransmits: 0,
            reset: false,
            by_peer: false,
            unanswered: None,
            fwmark: None,
        }
    }
}

/// What `ip_vs_conn_new` said about a connection no socket has claimed yet.
#[derive(Debug, Clone, Copy)]
struct Scheduled {
    backend: SocketAddr,
    ts_ns: u64,
    fwmark: Option<u32>,
}

pub struct Correlator {
    conns: HashMap<u64, Conn>,
    order: VecDeque<u64>,
    /// Backends named by `ip_vs_conn_new`, by (client, VIP), until a socket claims them.
    ipvs: HashMap<(SocketAddr, SocketAddr), Scheduled>,
    /// Open connections by (client, VIP), once their source port is known.
    by_client: HashMap<(SocketAddr, SocketAddr), u64>,
    capacity: usize,
    counters: Counters,
}

impl Correlator {
    pub fn new(capacity: usize) -> Self {
        Self {
            conns: HashMap::new(),
            order: VecDeque::new(),
            ipvs: HashMap::new(),
            by_client: HashMap::new(),
            capacity: capacity.max(1),
            counters: Counters::default(),
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Connections in the table now.
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// The clients of connections to `vip` still in their handshake with `backend`
    /// (SYN sent, no answer yet), whose source port is known.
    pub fn handshaking(&self, vip: SocketAddr, backend: SocketAddr) -> Vec<SocketAddr> {
        self.conns
            .values()
            .filter(|c| c.vip == vip && c.backend == Some(backend) && c.state == TcpState::SynSent)
            .filter_map(|c| c.client)
            .collect()
    }

    /// Drops a connection and its client index entry; false if it was not open.
    fn forget(&mut self, sock: u64) -> bool {
        let Some(c) = self.conns.remove(&sock) else {
            return false;
        };
        if let Some(client) = c.client {
            if self.by_client.get(&(client, c.vip)) == Some(&sock) {
                self.by_client.remove(&(client, c.vip));
            }
        }
        true
    }

    fn insert(&mut self, sock: u64, conn: Conn) {
        // A kernel socket reused for a new connection: the old one is gone.
        let reused = self.forget(sock);
        self.conns.insert(sock, conn);
        if !reused {
            self.order.push_back(sock);
        }
        while self.conns.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) if self.forget(old) => self.counters.evicted += 1,
                Some(_) => {}
                None => break,
            }
        }
        if self.order.len() > 2 * self.capacity {
            let conns = &self.conns;
            self.order.retain(|s| conns.contains_key(s));
        }
        if self.ipvs.len() > self.capacity {
            self.ipvs.clear();
            self.counters.evicted += 1;
        }
    }

    fn report(&mut self, ts_ns: u64, sock: u64, outcome: Outcome) -> Report {
        self.report_for(ts_ns, sock, outcome, None)
    }

    /// A report naming `backend` instead of the connection's current one, if given.
    fn report_for(
        &mut self,
        ts_ns: u64,
        sock: u64,
        outcome: Outcome,
        backend: Option<SocketAddr>,
    ) -> Report {
        let c = &self.conns[&sock];
        let r = Report {
            ts_ns,
            client: c.client,
            vip: c.vip,
            backend: backend.or(c.backend),
            outcome,
            syn_ns: c.syn_ns,
            protocol: IPPROTO_TCP,
            fwmark: c.fwmark,
        };
        self.counters.reports += 1;
        if r.backend.is_none() {
            self.counters.unattributed += 1;
        }
        r
    }

    /// Learns the backend for `sock` from the event or the IPVS side table.
    fn learn(&mut self, sock: u64, src: SocketAddr, backend: Option<SocketAddr>) {
        let Some(c) = self.conns.get_mut(&sock) else {
            return;
        };
        if src.port() != 0 && c.client != Some(src) {
            c.client = Some(src);
            self.by_client.insert((src, c.vip), sock);
        }
        if c.backend.is_none() {
            let scheduled = c.client.and_then(|cl| self.ipvs.remove(&(cl, c.vip)));
            c.backend = backend.or(scheduled.map(|s| s.backend));
            if let Some(s) = scheduled {
                c.fwmark = c.fwmark.or(s.fwmark);
            }
        }
    }

    /// A socket first seen past its SYN_SENT entry, by an event that names its source
    /// port: a connection of a fwmark service (its destination is no VIP, so the kernel
    /// follows it only from `ip_vs_conn_new` on) or one whose first events were
    /// filtered. Adopted as in SYN_SENT since IPVS scheduled it, if IPVS did.
    fn adopt(&mut self, sock: u64, src: SocketAddr, dst: SocketAddr) {
        if self.conns.contains_key(&sock) || src.port() == 0 {
            return;
        }
        let Some(s) = self.ipvs.get(&(src, dst)).copied() else {
            return;
        };
        let mut conn = Conn::syn_sent(dst, s.ts_ns);
        conn.fwmark = s.fwmark;
        self.insert(sock, conn);
    }

    /// Feeds one event; returns the outcome it completes, if any.
    pub fn feed(&mut self, event: &Event) -> Option<Report> {
        use TcpState::*;
        match *event {
            Event::IcmpError {
                ts_ns,
                client,
                vip,
                icmp,
                backend,
            } => {
                self.counters.reports += 1;
                if backend.is_none() {
                    self.counters.unattributed += 1;
                }
                Some(Report {
                    ts_ns,
                    client: Some(client),
                    vip,
                    backend,
                    outcome: Outcome::Unreachable(icmp),
                    syn_ns: ts_ns,
                    protocol: IPPROTO_UDP,
                    fwmark: None,
                })
            }
            // UDP flows have no socket events to join; the kernel joins their ICMP
            // errors and replies itself.
            Event::IpvsConn { protocol, .. } if protocol != IPPROTO_TCP => None,
            Event::IpvsConn {
                ts_ns,
                client,
                vip,
                backend,
                fwmark,
                ..
            } => {
                let open = self
                    .by_client
                    .get(&(client, vip))
                    .and_then(|s| self.conns.get_mut(s))
                    .filter(|c| c.state == SynSent);
                match open {
                    // IPVS scheduled a SYN of a connection we follow. A second
                    // scheduling of the same connection is a retransmitted SYN that
                    // IPVS moved (its backend got weight 0; expire_nodest_conn): the
                    // previous backend left the SYN unanswered.
                    Some(c) => {
                        if let Some(old) = c.backend.filter(|b| *b != backend) {
                            c.unanswered = Some(old);
                        }
                        c.backend = Some(backend);
                        c.fwmark = fwmark;
                    }
                    None => {
                        let s = Scheduled {
                            backend,
                            ts_ns,
                            fwmark,
                        };
                        self.ipvs.insert((client, vip), s);
                    }
                }
                None
            }
            Event::StateChange {
                ts_ns,
                sock,
                src,
                dst,
                old,
                new,
                backend,
                ..
            } => {
                if new == SynSent {
                    self.insert(sock, Conn::syn_sent(dst, ts_ns));
                } else if old == SynSent {
                    self.adopt(sock, src, dst);
                }
                self.learn(sock, src, backend);
                let c = self.conns.get_mut(&sock)?;
                c.state = new;
                if new == CloseWait {
                    c.by_peer = true;
                }
                match (old, new) {
                    (SynSent, Established) => {
                        let latency = Duration::from_nanos(ts_ns.saturating_sub(c.syn_ns));
                        Some(self.report(
                            ts_ns,
                            sock,
                            Outcome::Established {
                                latency: Some(latency),
                            },
                        ))
                    }
                    (_, Close) => {
                        // The kernel programs skip the steps between established and
                        // closed; a close from CLOSE_WAIT or LAST_ACK follows the peer's.
                        let by_peer = c.by_peer || matches!(old, CloseWait | LastAck);
                        let reset = c.reset;
                        let outcome = match old {
                            // A refusal was reported when the RST arrived.
                            SynSent if reset => None,
                            SynSent => Some(Outcome::ClientAbort),
                            _ => Some(Outcome::Closed {
                                by_peer: by_peer || reset,
                                reset,
                            }),
                        };
                        let r = outcome.map(|o| self.report(ts_ns, sock, o));
                        self.forget(sock);
                        r
                    }
                    _ => None,
                }
            }
            Event::Connect { sock, src, .. } => {
                self.learn(sock, src, None);
                None
            }
            Event::Retransmit {
                ts_ns,
                sock,
                src,
                dst,
                state,
                backend,
                ..
            } => {
                if state == SynSent {
                    self.adopt(sock, src, dst);
                }
                self.learn(sock, src, backend);
                let c = self.conns.get_mut(&sock)?;
                if state != SynSent {
                    return None;
                }
                c.retransmits += 1;
                let n = c.retransmits;
                // The retransmission says the previous SYN went unanswered: blame the
                // backend that SYN went to, even if IPVS sent this one elsewhere.
                let failed = c.unanswered.take();
                Some(self.report_for(ts_ns, sock, Outcome::SynRetransmit(n), failed))
            }
            Event::ReceiveReset {
                ts_ns,
                sock,
                src,
                dst,
                backend,
                ..
            } => {
                self.adopt(sock, src, dst);
                self.learn(sock, src, backend);
                let c = self.conns.get_mut(&sock)?;
                c.reset = true;
                (c.state == SynSent).then(|| self.report(ts_ns, sock, Outcome::Refused))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCK: u64 = 0xffff_8880_0000_1000;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn state(ts: u64, src: &str, old: TcpState, new: TcpState, backend: Option<&str>) -> Event {
        Event::StateChange {
            ts_ns: ts,
            sock: SOCK,
            src: a(src),
            dst: a("198.18.0.10:80"),
            old,
            new,
            backend: backend.map(a),
            fwmark: None,
        }
    }

    const CLIENT: &str = "198.18.0.1:40000";
    const UNBOUND: &str = "198.18.0.1:0";
    const BACKEND: &str = "198.18.1.2:8080";

    fn outcomes(c: &mut Correlator, events: &[Event]) -> Vec<Outcome> {
        events
            .iter()
            .filter_map(|e| c.feed(e))
            .map(|r| {
                assert_eq!(r.backend, Some(a(BACKEND)), "{r:?}");
                assert_eq!(r.client, Some(a(CLIENT)));
                r.outcome
            })
            .collect()
    }

    #[test]
    fn accepted_connection_is_established_then_closed_by_peer() {
        use TcpState::*;
        let mut c = Correlator::new(16);
        let got = outcomes(
            &mut c,
            &[
                state(1_000, UNBOUND, Close, SynSent, None),
                Event::Connect {
                    ts_ns: 1_100,
                    sock: SOCK,
                    src: a(CLIENT),
                    dst: a("198.18.0.10:80"),
                },
                state(1_500_000, CLIENT, SynSent, Established, Some(BACKEND)),
                state(9_000_000, CLIENT, Established, CloseWait, Some(BACKEND)),
                state(9_100_000, CLIENT, CloseWait, LastAck, Some(BACKEND)),
                state(9_200_000, CLIENT, LastAck, Close, Some(BACKEND)),
            ],
        );
        assert_eq!(
            got,
            [
                Outcome::Established {
                    latency: Some(Duration::from_nanos(1_499_000))
                },
                Outcome::Closed {
                    by_peer: true,
                    reset: false
                },
            ]
        );
        assert_eq!(c.open(), 0);
    }

    /// What the kernel programs send: no steps between established and closed. The
    /// close's old state tells who closed first.
    #[test]
    fn who_closed_first_comes_from_the_state_before_close() {
        use TcpState::*;
        for (before_close, by_peer) in [
            (LastAck, true),
            (CloseWait, true),
            (FinWait2, false),
            (FinWait1, false),
            (Established, false),
        ] {
            let mut c = Correlator::new(16);
            let got = outcomes(
                &mut c,
                &[
                    state(1_000, UNBOUND, Close, SynSent, None),
                    state(1_500_000, CLIENT, SynSent, Established, Some(BACKEND)),
                    state(9_200_000, CLIENT, before_close, Close, Some(BACKEND)),
                ],
            );
            assert_eq!(
                got[1],
                Outcome::Closed {
                    by_peer,
                    reset: false
                },
                "closed from {before_close:?}"
            );
            assert_eq!(c.open(), 0);
        }
    }

    #[test]
    fn refused_is_reported_once_at_the_rst() {
        use TcpState::*;
        let mut c = Correlator::new(16);
        let got = outcomes(
            &mut c,
            &[
                state(1_000, UNBOUND, Close, SynSent, None),
                Event::ReceiveReset {
                    ts_ns: 2_000,
                    sock: SOCK,
                    src: a(CLIENT),
                    dst: a("198.18.0.10:80"),
                    backend: Some(a(BACKEND)),
                    fwmark: None,
                },
                state(2_100, CLIENT, SynSent, Close, Some(BACKEND)),
            ],
        );
        assert_eq!(got, [Outcome::Refused]);
        assert_eq!(c.open(), 0);
    }

    #[test]
    fn blackholed_counts_syn_retransmits_then_client_aborts() {
        use TcpState::*;
        let mut c = Correlator::new(16);
        let rtx = |ts| Event::Retransmit {
            ts_ns: ts,
            sock: SOCK,
            src: a(CLIENT),
            dst: a("198.18.0.10:80"),
            state: SynSent,
            backend: Some(a(BACKEND)),
            fwmark: None,
        };
        let got = outcomes(
            &mut c,
            &[
                state(0, UNBOUND, Close, SynSent, None),
                rtx(1_000_000_000),
                rtx(3_000_000_000),
                state(4_000_000_000, CLIENT, SynSent, Close, Some(BACKEND)),
            ],
        );
        assert_eq!(
            got,
            [
                Outcome::SynRetransmit(1),
                Outcome::SynRetransmit(2),
                Outcome::ClientAbort
            ]
        );
    }

    #[test]
    fn handshakes_waiting_on_a_backend_are_listed_until_answered() {
        use TcpState::*;
        let mut c = Correlator::new(16);
        let vip = a("198.18.0.10:80");
        c.feed(&state(0, UNBOUND, Close, SynSent, None));
        c.feed(&Event::Retransmit {
            ts_ns: 1_000_000_000,
            sock: SOCK,
            src: a(CLIENT),
            dst: vip,
            state: SynSent,
            backend: Some(a(BACKEND)),
            fwmark: None,
        });
        assert_eq!(c.handshaking(vip, a(BACKEND)), [a(CLIENT)]);
        assert!(c.handshaking(vip, a("198.18.2.2:8080")).is_empty());
        c.feed(&state(
            1_500_000_000,
            CLIENT,
            SynSent,
            Established,
            Some(BACKEND),
        ));
        assert!(c.handshaking(vip, a(BACKEND)).is_empty());
    }

    /// Seen in the VM: a backend goes to weight 0 while a SYN to it waits; with
    /// expire_nodest_conn IPVS sends the retransmitted SYN to another backend (a second
    /// ip_vs_conn_new for the same connection), and the kernel join names that one in the
    /// retransmit event. The SYN that went unanswered was the first backend's.
    #[test]
    fn syn_retransmit_blames_the_backend_that_left_the_syn_unanswered() {
        use TcpState::*;
        const OTHER: &str = "198.18.3.2:8080";
        let mut c = Correlator::new(16);
        let ipvs = |ts, backend| Event::IpvsConn {
            ts_ns: ts,
            protocol: 6,
            client: a(CLIENT),
            vip: a("198.18.0.10:80"),
            backend: a(backend),
            fwmark: None,
        };
        let events = [
            state(1_000, UNBOUND, Close, SynSent, None),
            Event::Connect {
                ts_ns: 1_100,
                sock: SOCK,
                src: a(CLIENT),
                dst: a("198.18.0.10:80"),
            },
            ipvs(1_200, BACKEND),
            ipvs(1_000_000_000, OTHER),
            Event::Retransmit {
                ts_ns: 1_000_000_100,
                sock: SOCK,
                src: a(CLIENT),
                dst: a("198.18.0.10:80"),
                state: SynSent,
                backend: Some(a(OTHER)),
                fwmark: None,
            },
            state(1_000_500_000, CLIENT, SynSent, Established, Some(OTHER)),
        ];
        let got: Vec<(Option<SocketAddr>, Outcome)> = events
            .iter()
            .filter_map(|e| c.feed(e))
            .map(|r| (r.backend, r.outcome))
            .collect();
        assert_eq!(
            got,
            [
                (Some(a(BACKEND)), Outcome::SynRetransmit(1)),
                (
                    Some(a(OTHER)),
                    Outcome::Established {
                        latency: Some(Duration::from_nanos(1_000_499_000))
                    }
                ),
            ]
        );
        // Without a reschedule the retransmit stays with the connection's backend.
        let mut c = Correlator::new(16);
        let same = Event::Retransmit {
            ts_ns: 1_000_000_100,
            sock: SOCK,
            src: a(CLIENT),
            dst: a("198.18.0.10:80"),
            state: SynSent,
            backend: Some(a(BACKEND)),
            fwmark: None,
        };
        let got: Vec<_> = events[..3]
            .iter()
            .chain([&same])
            .filter_map(|e| c.feed(e))
            .map(|r| (r.backend, r.outcome))
            .collect();
        assert_eq!(got, [(Some(a(BACKEND)), Outcome::SynRetransmit(1))]);
    }

    #[test]
    fn backend_from_ipvs_event_when_the_kernel_join_missed() {
        use TcpState::*;
        let mut c = Correlator::new(16);
        let got = outcomes(
            &mut c,
            &[
                Event::IpvsConn {
                    ts_ns: 1,
                    protocol: 6,
                    client: a(CLIENT),
                    vip: a("198.18.0.10:80"),
                    backend: a(BACKEND),
                    fwmark: None,
                },
                state(1_000, UNBOUND, Close, SynSent, None),
                state(2_000, CLIENT, SynSent, Established, None),
            ],
        );
        assert_eq!(
            got,
            [Outcome::Established {
                latency: Some(Duration::from_nanos(1_000))
            }]
        );
    }

    #[test]
    fn unattributed_outcomes_are_counted() {
        use TcpState::*;
        let mut c = Correlator::new(16);
        c.feed(&state(1_000, UNBOUND, Close, SynSent, None));
        let r = c
            .feed(&state(2_000, CLIENT, SynSent, Established, None))
            .unwrap();
        assert_eq!(r.backend, None);
        assert_eq!(c.counters().unattributed, 1);
    }

    #[test]
    fn table_is_bounded_and_evictions_counted() {
        use TcpState::*;
        let mut c = Correlator::new(100);
        for i in 0..1_000u64 {
            c.feed(&Event::StateChange {
                ts_ns: i,
                sock: i,
                src: a(UNBOUND),
                dst: a("198.18.0.10:80"),
                old: Close,
                new: SynSent,
                backend: None,
                fwmark: None,
            });
        }
        assert_eq!(c.open(), 100);
        assert_eq!(c.counters().evicted, 900);
    }

    /// A fwmark service's connection: the kernel follows it only from IPVS's choice on
    /// (its destination is no VIP), so the socket's SYN_SENT entry is never seen. The
    /// correlator adopts the socket from the scheduling, and reports carry the mark.
    fn fwmark_flow(then: Event) -> Vec<Report> {
        let mut c = Correlator::new(16);
        let scheduled = Event::IpvsConn {
            ts_ns: 1_000,
            protocol: IPPROTO_TCP,
            client: a(CLIENT),
            vip: a("203.0.113.7:80"),
            backend: a(BACKEND),
            fwmark: Some(7),
        };
        assert_eq!(c.feed(&scheduled), None);
        let reports: Vec<Report> = c.feed(&then).into_iter().collect();
        for r in &reports {
            assert_eq!(
                (r.client, r.vip, r.backend, r.fwmark, r.syn_ns),
                (
                    Some(a(CLIENT)),
                    a("203.0.113.7:80"),
                    Some(a(BACKEND)),
                    Some(7),
                    1_000
                )
            );
        }
        reports
    }

    #[test]
    fn fwmark_connection_is_adopted_when_established() {
        let r = fwmark_flow(Event::StateChange {
            ts_ns: 501_000,
            sock: SOCK,
            src: a(CLIENT),
            dst: a("203.0.113.7:80"),
            old: TcpState::SynSent,
            new: TcpState::Established,
            backend: Some(a(BACKEND)),
            fwmark: None,
        });
        assert_eq!(
            r.iter().map(|r| r.outcome).collect::<Vec<_>>(),
            [Outcome::Established {
                latency: Some(Duration::from_micros(500))
            }]
        );
    }

    #[test]
    fn fwmark_connection_refused_and_blackholed() {
        let r = fwmark_flow(Event::ReceiveReset {
            ts_ns: 2_000,
            sock: SOCK,
            src: a(CLIENT),
            dst: a("203.0.113.7:80"),
            backend: Some(a(BACKEND)),
            fwmark: None,
        });
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].outcome, Outcome::Refused);
        let r = fwmark_flow(Event::Retransmit {
            ts_ns: 1_001_000,
            sock: SOCK,
            src: a(CLIENT),
            dst: a("203.0.113.7:80"),
            state: TcpState::SynSent,
            backend: Some(a(BACKEND)),
            fwmark: None,
        });
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].outcome, Outcome::SynRetransmit(1));
    }

    /// Without IPVS's word the correlator adopts nothing: a socket past SYN_SENT that
    /// nobody scheduled stays unknown.
    #[test]
    fn nothing_is_adopted_without_a_scheduling() {
        let mut c = Correlator::new(16);
        let e = Event::ReceiveReset {
            ts_ns: 2_000,
            sock: SOCK,
            src: a(CLIENT),
            dst: a("203.0.113.7:80"),
            backend: Some(a(BACKEND)),
            fwmark: None,
        };
        assert_eq!(c.feed(&e), None);
        assert_eq!(c.open(), 0);
    }
}
