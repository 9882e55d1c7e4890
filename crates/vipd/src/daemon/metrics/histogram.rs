//! The one histogram vipd keeps: fault-to-quarantine times.

/// Upper bounds of the `vipd_fault_to_quarantine_seconds` buckets (`+Inf` is implied).
pub const FAULT_TO_QUARANTINE_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 5.0, 10.0,
];

#[derive(Debug, Clone, Default)]
pub(super) struct Histogram {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    pub buckets: [u64; FAULT_TO_QUARANTINE_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, v: f64) {
        let i = FAULT_TO_QUARANTINE_BUCKETS
            .iter()
            .position(|le| v <= *le)
            .unwrap_or(FAULT_TO_QUARANTINE_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += v;
        self.count += 1;
    }

    /// Each bucket's upper bound (`+Inf` last) with its cumulative count.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        FAULT_TO_QUARANTINE_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.buckets.iter().scan(0, |total, n| {
                *total += n;
                Some(*total)
            }))
    }
}
