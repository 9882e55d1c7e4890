//! How long a quarantine lasts: exponential backoff, capped, with jitter from a small
//! seeded generator (deterministic in tests, different per service in the daemon).

use std::time::Duration;

use super::Policy;

/// xorshift64* (Vigna): tiny, fast, and plenty for spreading re-admissions in time.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from any seed (0 included): the seed is mixed with SplitMix64 first.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_f491_4f6c_dd1d } else { z })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..=max` (the modulo bias is negligible for the ranges used here).
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

/// The quarantine for a backend's `ejections`-th ejection (1-based) before jitter:
/// `base_ejection * 2^(ejections-1)`, at most `max_ejection`.
pub fn backoff(policy: &Policy, ejections: u32) -> Duration {
    let exponent = ejections.saturating_sub(1);
    let doubled = 2u32
        .checked_pow(exponent)
        .and_then(|factor| policy.base_ejection.checked_mul(factor));
    match doubled {
        Some(d) => d.min(policy.max_ejection),
        None => policy.max_ejection,
    }
}

/// `d` plus a uniform random 0..=`percent` % of it, at millisecond resolution.
pub fn jittered(d: Duration, percent: u8, rng: &mut Rng) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let spread = ms.saturating_mul(u64::from(percent)) / 100;
    d.saturating_add(Duration::from_millis(rng.up_to(spread)))
}
