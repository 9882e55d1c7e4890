use std::{net::SocketAddr, time::Duration};

use super::{handshakes::MIN_SAMPLES, Timeouts};
use crate::{
    config::{AutoRto, SynRto},
    model::{Outcome, Report},
};

const MS: u64 = 1_000_000;

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn vip() -> SocketAddr {
    a("198.18.0.10:80")
}

fn report(port: u16, syn_ms: u64, ts_ms: u64, outcome: Outcome) -> Report {
    Report {
        ts_ns: ts_ms * MS,
        client: Some(SocketAddr::new([10, 0, 0, 1].into(), port)),
        vip: vip(),
        backend: Some(a("198.18.1.2:80")),
        outcome,
        syn_ns: syn_ms * MS,
        protocol: 6,
        fwmark: None,
    }
}

fn handshake(port: u16, at_ms: u64, took: u64) -> Report {
    let outcome = Outcome::Established {
        latency: Some(ms(took)),
    };
    report(port, at_ms - took, at_ms, outcome)
}

fn auto() -> Timeouts {
    let mut t = Timeouts::default();
    t.configure(&[
        (vip(), SynRto::Auto(AutoRto::default())),
        (a("198.18.0.11:80"), SynRto::Fixed(ms(200))),
    ]);
    t
}

fn current(t: &Timeouts) -> Duration {
    t.timeouts()
        .into_iter()
        .find(|(v, _)| *v == vip())
        .unwrap()
        .1
}

#[test]
fn an_adaptive_vip_starts_at_the_ceiling_and_learns_down_to_the_floor() {
    let mut t = auto();
    assert!(t.take_changed());
    assert_eq!(
        t.timeouts(),
        [(a("198.18.0.11:80"), ms(200)), (vip(), ms(1_000))]
    );
    let mut out = Vec::new();
    for i in 0..MIN_SAMPLES as u16 {
        t.feed(handshake(i, 1_000 + u64::from(i), 3), &mut out);
    }
    assert_eq!(out.len(), MIN_SAMPLES);
    assert!(!t.take_changed());
    t.update(2_000 * MS);
    assert!(t.take_changed());
    assert_eq!(current(&t), ms(50));
    t.update(2_001 * MS);
    assert!(!t.take_changed());
}

#[test]
fn slow_handshakes_raise_the_timeout_to_k_times_their_p99() {
    let mut t = auto();
    let mut out = Vec::new();
    for i in 0..300u16 {
        let took = if i % 3 == 0 { 101 } else { 3 };
        t.feed(handshake(i, 1_000 + u64::from(i), took), &mut out);
    }
    t.update(2_000 * MS);
    assert_eq!(current(&t), ms(303));
}

#[test]
fn a_sudden_jump_answered_after_an_early_retransmission_is_no_failure_and_raises_the_timeout() {
    let mut t = auto();
    let mut out = Vec::new();
    for i in 0..100u16 {
        t.feed(handshake(i, 1_000 + u64::from(i), 3), &mut out);
    }
    t.update(2_000 * MS);
    assert_eq!(current(&t), ms(50));
    t.take_changed();
    out.clear();
    // The backend now takes 70 ms: the SYN of 3000 is resent at 3050 and answered at
    // 3070, before the deadline at 3075.
    t.feed(
        report(7000, 3_000, 3_050, Outcome::SynRetransmit(1)),
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!(t.next_deadline_ns(), Some(3_075 * MS));
    t.feed(handshake(7000, 3_070, 70), &mut out);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].outcome, Outcome::Established { .. }));
    assert_eq!(t.answered_late(), 1);
    assert!(t.take_changed());
    assert_eq!(current(&t), ms(210));
    t.release_due(5_000 * MS, &mut out);
    assert_eq!(out.len(), 1, "nothing was left to release");
}

#[test]
fn a_blackhole_is_reported_half_a_timeout_after_the_retransmission() {
    let mut t = auto();
    let mut out = Vec::new();
    t.feed(
        report(7000, 3_000, 3_050, Outcome::SynRetransmit(1)),
        &mut out,
    );
    t.release_due(3_074 * MS, &mut out);
    assert!(out.is_empty());
    t.release_due(3_075 * MS, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].outcome, Outcome::SynRetransmit(1));
    assert_eq!(out[0].syn_ns, 3_000 * MS);
}

#[test]
fn fixed_vips_pass_retransmissions_at_once_and_learn_nothing() {
    let mut t = auto();
    let mut out = Vec::new();
    let mut r = report(7000, 3_000, 3_200, Outcome::SynRetransmit(1));
    r.vip = a("198.18.0.11:80");
    t.feed(r.clone(), &mut out);
    assert_eq!(out, [r]);
}

#[test]
fn reconfiguring_keeps_what_an_unchanged_adaptive_vip_learnt() {
    let mut t = auto();
    let mut out = Vec::new();
    for i in 0..100u16 {
        t.feed(handshake(i, 1_000 + u64::from(i), 30), &mut out);
    }
    t.update(2_000 * MS);
    assert_eq!(current(&t), ms(90));
    t.configure(&[(vip(), SynRto::Auto(AutoRto::default()))]);
    assert_eq!(t.timeouts(), [(vip(), ms(90))]);
    let other = AutoRto {
        k: 4,
        ..AutoRto::default()
    };
    t.configure(&[(vip(), SynRto::Auto(other))]);
    assert_eq!(t.timeouts(), [(vip(), ms(1_000))]);
    t.configure(&[]);
    assert!(!t.any());
}
