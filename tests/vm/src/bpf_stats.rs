//! The kernel's own count of each loaded BPF program's runs and run time (BPF
//! statistics, on while a guard from `aya::sys::enable_stats` lives), for benchmarks
//! that say where the time went.

use std::{collections::BTreeMap, time::Duration};

/// Runs and run time of each loaded program by name, summed over programs of one name.
pub fn snapshot() -> BTreeMap<String, (u64, Duration)> {
    let mut out: BTreeMap<String, (u64, Duration)> = BTreeMap::new();
    for p in aya::programs::loaded_programs().flatten() {
        let name = p.name_as_str().unwrap_or("?").to_owned();
        let e = out.entry(name).or_default();
        e.0 += p.run_count();
        e.1 += p.run_time();
    }
    out
}

/// Each program's runs and run time (seconds) from `before` to `after`, added to `into`.
pub fn add_delta(
    into: &mut BTreeMap<String, (u64, f64)>,
    before: &BTreeMap<String, (u64, Duration)>,
    after: &BTreeMap<String, (u64, Duration)>,
) {
    for (name, (runs, time)) in after {
        let (r0, t0) = before.get(name).copied().unwrap_or_default();
        let e = into.entry(name.clone()).or_default();
        e.0 += runs - r0;
        e.1 += time.saturating_sub(t0).as_secs_f64();
    }
}
