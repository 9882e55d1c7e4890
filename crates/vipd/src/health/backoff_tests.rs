//! Backoff, jitter, the generator, the policy defaults and the small pure rules.

use std::time::Duration;

use super::{backoff, ejection_allowance, jittered, slow_start_weight, test_util::*, Policy, Rng};
use crate::config::{ActiveCheck, HealthPolicy};

#[test]
fn backoff_doubles_from_base_and_is_capped() {
    let p = Policy {
        base_ejection: secs(5),
        max_ejection: secs(300),
        ..Policy::default()
    };
    let got: Vec<u64> = (1..=8).map(|n| backoff(&p, n).as_secs()).collect();
    assert_eq!(got, [5, 10, 20, 40, 80, 160, 300, 300]);
    // No overflow for absurd counts; 0 behaves like the first.
    assert_eq!(backoff(&p, 40), secs(300));
    assert_eq!(backoff(&p, u32::MAX), secs(300));
    assert_eq!(backoff(&p, 0), secs(5));
}

#[test]
fn jitter_adds_up_to_the_percentage_and_spreads() {
    let mut rng = Rng::new(1);
    let base = secs(10);
    let draws: Vec<Duration> = (0..2000).map(|_| jittered(base, 10, &mut rng)).collect();
    assert!(
        draws.iter().all(|d| *d >= base && *d <= secs(11)),
        "{draws:?}"
    );
    let (lo, hi) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
    assert!(*lo < ms(10_050) && *hi > ms(10_950), "{lo:?} {hi:?}");
    assert_eq!(jittered(base, 0, &mut rng), base);
    assert_eq!(jittered(Duration::ZERO, 10, &mut rng), Duration::ZERO);
}

#[test]
fn the_generator_is_seeded() {
    let (mut a, mut b, mut c) = (Rng::new(42), Rng::new(42), Rng::new(43));
    let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
    let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
    let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
    assert_eq!(xs, ys);
    assert_ne!(xs, zs);
    // Seed 0 is fine too.
    let mut z = Rng::new(0);
    assert!((0..8).map(|_| z.next_u64()).any(|x| x != 0));
    assert!((0..1000).all(|_| z.up_to(3) <= 3));
    let _ = z.up_to(u64::MAX);
}

#[test]
fn policy_defaults_are_the_documented_ones() {
    let p = Policy::default();
    assert_eq!(
        p,
        Policy {
            refuse_threshold: 1,
            retransmit_threshold: 1,
            check_fall: 2,
            check_rise: 1,
            base_ejection: secs(5),
            max_ejection: secs(300),
            jitter_percent: 10,
            max_ejection_percent: 100,
            panic_threshold: 0,
            slow_start: secs(10),
            probe: true,
        }
    );
    assert_eq!(Policy::from_config(None, true), p);
    assert_eq!(Policy::from_config(Some(&HealthPolicy::default()), true), p);
    // UDP: no probe.
    let udp = Policy::from_config(None, false);
    assert!(!udp.probe);
    assert_eq!(Policy { probe: true, ..udp }, p);
}

#[test]
fn policy_from_config_takes_every_field() {
    let h = HealthPolicy {
        refuse_threshold: Some(3),
        retransmit_threshold: Some(4),
        base_ejection: Some(secs(2)),
        max_ejection: Some(secs(60)),
        max_ejection_percent: Some(50),
        panic_threshold: Some(30),
        slow_start: Some(Duration::ZERO),
        probe: Some(false),
        probe_timeout: Some(secs(3)),
        check: Some(ActiveCheck {
            interval: secs(5),
            timeout: secs(1),
            fall: 5,
            rise: 3,
        }),
        silence_window: None,
        syn_rto: None,
        udp_probe: None,
    };
    assert_eq!(
        Policy::from_config(Some(&h), true),
        Policy {
            refuse_threshold: 3,
            retransmit_threshold: 4,
            check_fall: 5,
            check_rise: 3,
            base_ejection: secs(2),
            max_ejection: secs(60),
            jitter_percent: 10,
            max_ejection_percent: 50,
            panic_threshold: 30,
            slow_start: Duration::ZERO,
            probe: false,
        }
    );
    // probe = true cannot reach a UDP policy.
    let probing = HealthPolicy {
        probe: Some(true),
        ..HealthPolicy::default()
    };
    assert!(!Policy::from_config(Some(&probing), false).probe);
    assert!(Policy::from_config(Some(&probing), true).probe);
}

#[test]
fn a_lone_base_or_max_never_contradicts_the_other_default() {
    let long_base = HealthPolicy {
        base_ejection: Some(secs(600)),
        ..HealthPolicy::default()
    };
    let p = Policy::from_config(Some(&long_base), true);
    assert_eq!((p.base_ejection, p.max_ejection), (secs(600), secs(600)));
    let short_max = HealthPolicy {
        max_ejection: Some(secs(2)),
        ..HealthPolicy::default()
    };
    let p = Policy::from_config(Some(&short_max), true);
    assert_eq!((p.base_ejection, p.max_ejection), (secs(2), secs(2)));
}

#[test]
fn the_ejection_allowance_is_at_least_one_for_two_or_more() {
    let cases = [
        ((3, 10), 1),
        ((3, 50), 1),
        ((3, 67), 2),
        ((3, 100), 3),
        ((2, 1), 1),
        ((2, 0), 0),
        ((10, 25), 2),
        ((1, 100), 1),
        ((1, 50), 0),
        ((0, 100), 0),
    ];
    for ((n, pct), want) in cases {
        assert_eq!(ejection_allowance(n, pct), want, "n={n} pct={pct}");
    }
}

#[test]
fn slow_start_weights_ramp_in_tenths_and_never_reach_zero() {
    let ramp = |w: u32| {
        (1..=10)
            .map(|k| slow_start_weight(w, k))
            .collect::<Vec<_>>()
    };
    assert_eq!(ramp(100), [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    assert_eq!(ramp(15), [2, 3, 5, 6, 8, 9, 11, 12, 14, 15]);
    assert_eq!(ramp(1), [1; 10]);
    assert_eq!(ramp(65535)[9], 65535);
    assert_eq!(slow_start_weight(u32::MAX, 10), u32::MAX);
}
