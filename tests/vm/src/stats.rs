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
