//! The two clocks the daemon compares: the kernel's monotonic clock (what the eBPF
//! programs stamp events with, `bpf_ktime_get_ns`) and wall-clock time for records that
//! outlive the process.

use std::time::{SystemTime, UNIX_EPOCH};

/// `CLOCK_MONOTONIC` in nanoseconds: comparable with event timestamps.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the valid timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Seconds from a kernel timestamp to now (0 if the timestamp is in the future).
pub fn seconds_since(kernel_ns: u64) -> f64 {
    mono_ns().saturating_sub(kernel_ns) as f64 / 1e9
}
