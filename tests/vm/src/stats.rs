//! Small statistics the benchmarks share.

use std::time::Duration;

/// The `q` quantile (0..=1) of `sorted` (ascending), nearest rank; zero if empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    sorted[i]
}

/// The median of `xs` (the mean of the middle two for an even count); NaN if empty.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The smallest and largest of `xs`; NaNs if empty.
pub fn range(xs: &[f64]) -> (f64, f64) {
    xs.iter()
        .fold((f64::NAN, f64::NAN), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// A distribution-free 95 % confidence interval for the median of `xs`: the pair of
/// order statistics that the sign test puts the median between with at least 95 %
/// probability, whatever the distribution. NaNs for fewer than six values (no pair is
/// wide enough then).
pub fn median_ci95(xs: &[f64]) -> (f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // The most values `k` that may lie below the interval: P(Binomial(n, 1/2) < k) is at
    // most 2.5 %.
    let (mut k, mut below, mut p) = (0, 0.0, 0.5f64.powi(n as i32));
    while k < n / 2 && below + p <= 0.025 {
        below += p;
        p *= (n - k) as f64 / (k + 1) as f64;
        k += 1;
    }
    if k == 0 {
        return (f64::NAN, f64::NAN);
    }
    (v[k - 1], v[n - k])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(range(&[3.0, 1.0, 2.0]), (1.0, 3.0));
    }

    #[test]
    fn median_interval_from_the_sign_test() {
        let xs = |n: usize| (1..=n).rev().map(|i| i as f64).collect::<Vec<_>>();
        // Tables of the sign test: n = 9 gives the 2nd and 8th values, n = 40 the 14th
        // and 27th, n = 6 the 1st and 6th.
        assert_eq!(median_ci95(&xs(9)), (2.0, 8.0));
        assert_eq!(median_ci95(&xs(40)), (14.0, 27.0));
        assert_eq!(median_ci95(&xs(6)), (1.0, 6.0));
        let (lo, hi) = median_ci95(&xs(5));
        assert!(lo.is_nan() && hi.is_nan());
    }
}
