use std::{net::SocketAddr, time::Duration};

use super::{Deadlines, CAPACITY, EXPIRED_FOR};
use crate::{
    config::{AutoRto, SynRto},
    model::{Outcome, Report},
};

const MS: u64 = 1_000_000;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const VIP: &str = "198.18.0.10:80";
const AUTO_VIP: &str = "198.18.0.11:80";
const B1: &str = "198.18.1.2:80";
const B2: &str = "198.18.2.2:80";

fn report(vip: &str, port: u16, backend: &str, ts_ms: u64, outcome: Outcome) -> Report {
    Report {
        ts_ns: ts_ms * MS,
        client: Some(SocketAddr::new([10, 0, 0, 1].into(), port)),
        vip: a(vip),
        backend: Some(a(backend)),
        outcome,
        syn_ns: ts_ms * MS,
        protocol: 6,
        fwmark: None,
    }
}

fn syn(vip: &str, port: u16, backend: &str, ts_ms: u64) -> Report {
    report(vip, port, backend, ts_ms, Outcome::SynRetransmit(0))
}

fn syn_ack(vip: &str, port: u16, backend: &str, ts_ms: u64) -> Report {
    report(
        vip,
        port,
        backend,
        ts_ms,
        Outcome::Established { latency: None },
    )
}

/// A fixed 200 ms deadline on `VIP`, an adaptive one (k 3, floor 50 ms, ceiling 1 s) on
/// `AUTO_VIP`.
fn deadlines() -> Deadlines {
    let mut d = Deadlines::default();
    d.configure(&[
        (a(VIP), SynRto::Fixed(Duration::from_millis(200))),
        (
            a(AUTO_VIP),
            SynRto::Auto(AutoRto {
                k: 3,
                floor: Duration::from_millis(50),
                ceiling: Duration::from_millis(1_000),
            }),
        ),
    ]);
    d
}

#[test]
fn an_unanswered_syn_is_a_retransmission_of_its_backend_at_the_deadline() {
    let mut d = deadlines();
    let mut out = Vec::new();
    d.sent(syn(VIP, 1000, B1, 10));
    assert_eq!(d.next_deadline_ns(), Some(210 * MS));
    d.expire(209 * MS, &mut out);
    assert!(out.is_empty(), "{out:?}");
    d.expire(210 * MS, &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    let r = &out[0];
    assert_eq!(r.outcome, Outcome::SynRetransmit(1));
    assert_eq!(r.backend, Some(a(B1)));
    assert_eq!((r.ts_ns, r.syn_ns), (210 * MS, 10 * MS));
    assert_eq!(d.next_deadline_ns(), None);

    // The client's own retransmission to the same backend is not a second failure;
    // one that went to another backend (the first is out) is that backend's.
    out.clear();
    d.feed(
        report(VIP, 1000, B1, 1010, Outcome::SynRetransmit(1)),
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    d.feed(
        report(VIP, 1000, B2, 1011, Outcome::SynRetransmit(1)),
        &mut out,
    );
    assert_eq!(out.len(), 1);
}

#[test]
fn an_answered_syn_has_no_deadline_and_gives_its_handshake_time() {
    let mut d = deadlines();
    let mut out = Vec::new();
    d.sent(syn(VIP, 1000, B1, 10));
    d.feed(syn_ack(VIP, 1000, B1, 14), &mut out);
    assert_eq!(
        out[0].outcome,
        Outcome::Established {
            latency: Some(Duration::from_millis(4))
        }
    );
    assert_eq!(d.next_deadline_ns(), None);
    d.expire(1_000 * MS, &mut out);
    assert_eq!(out.len(), 1);
    // A refusal ends the deadline too (and goes on as the failure it is).
    d.sent(syn(VIP, 1001, B1, 20));
    d.feed(report(VIP, 1001, B1, 21, Outcome::Refused), &mut out);
    d.expire(1_000 * MS, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].outcome, Outcome::Refused);
}

#[test]
fn vips_without_syn_rto_get_no_deadline() {
    let mut d = deadlines();
    let mut out = Vec::new();
    d.sent(syn("198.18.0.99:80", 1000, B1, 10));
    assert_eq!(d.next_deadline_ns(), None);
    d.configure(&[]);
    d.sent(syn(VIP, 1000, B1, 10));
    d.expire(10_000 * MS, &mut out);
    assert!(out.is_empty());
}

#[test]
fn a_syn_sent_again_to_another_backend_restarts_its_deadline() {
    let mut d = deadlines();
    let mut out = Vec::new();
    d.sent(syn(VIP, 1000, B1, 10));
    d.sent(syn(VIP, 1000, B2, 100));
    assert_eq!(d.next_deadline_ns(), Some(300 * MS));
    d.expire(300 * MS, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].backend, Some(a(B2)));
}

#[test]
fn under_an_adaptive_timeout_a_late_answer_raises_the_timeout_instead_of_failing() {
    let mut d = deadlines();
    let mut out = Vec::new();
    // Fast handshakes: the timeout comes down to the floor.
    for i in 0..50u16 {
        let t = 10 + u64::from(i);
        d.sent(syn(AUTO_VIP, 2000 + i, B1, t));
        d.feed(syn_ack(AUTO_VIP, 2000 + i, B1, t + 2), &mut out);
    }
    d.maintain(100 * MS);
    assert_eq!(d.timeout(&a(AUTO_VIP)), Some(Duration::from_millis(50)));
    out.clear();
    // A SYN answered at 70 ms: past the deadline (50 ms), within the grace (25 ms more).
    d.sent(syn(AUTO_VIP, 3000, B1, 200));
    d.expire(250 * MS, &mut out);
    assert!(out.is_empty(), "held for the grace: {out:?}");
    d.feed(syn_ack(AUTO_VIP, 3000, B1, 270), &mut out);
    assert!(
        out.iter()
            .all(|r| matches!(r.outcome, Outcome::Established { .. })),
        "{out:?}"
    );
    assert_eq!(d.answered_late(), 1);
    d.maintain(300 * MS);
    assert!(
        d.timeout(&a(AUTO_VIP)).unwrap() >= Duration::from_millis(210),
        "raised to k x 70 ms: {:?}",
        d.timeout(&a(AUTO_VIP))
    );
    // A SYN never answered fails its backend after the grace.
    out.clear();
    d.sent(syn(AUTO_VIP, 3001, B1, 400));
    let deadline = d.next_deadline_ns().unwrap();
    d.expire(deadline, &mut out);
    assert!(out.is_empty());
    d.expire(10_000 * MS, &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].outcome, Outcome::SynRetransmit(1));
}

#[test]
fn expired_connections_are_forgotten_and_followed_ones_are_bounded() {
    let mut d = deadlines();
    let mut out = Vec::new();
    d.sent(syn(VIP, 1000, B1, 10));
    d.expire(300 * MS, &mut out);
    d.maintain(300 * MS + EXPIRED_FOR.as_nanos() as u64);
    // Remembered no more: a retransmission now counts.
    d.feed(
        report(VIP, 1000, B1, 5_000, Outcome::SynRetransmit(2)),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    for i in 0..CAPACITY as u64 + 5 {
        let port = (i % 60_000) as u16;
        let mut s = syn(VIP, port, B1, 10_000);
        s.client = Some(SocketAddr::new([10, 0, (i / 60_000) as u8, 2].into(), port));
        d.sent(s);
    }
    assert_eq!(d.followed(), CAPACITY);
    assert_eq!(d.skipped, 5);
}
