//! The kernel's tick (`CONFIG_HZ`), in which some BPF replies are given: a `sock_ops`
//! program's initial SYN timeout is read in jiffies.

use std::time::Duration;

/// `d` in jiffies at `hz` ticks per second, rounded up and at least one: the kernel
/// reads the program's reply in jiffies, and 0 would mean its default.
pub fn jiffies(d: Duration, hz: u32) -> u32 {
    let j = (d.as_nanos() * u128::from(hz)).div_ceil(1_000_000_000);
    u32::try_from(j).unwrap_or(u32::MAX).max(1)
}

/// The kernel's tick rate (`CONFIG_HZ`): the coarse clocks advance once per tick, so
/// their resolution is the tick.
pub fn kernel_hz() -> std::io::Result<u32> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    if ns == 0 || ns > 1_000_000_000 {
        return Err(std::io::Error::other(format!(
            "coarse clock resolution {ns} ns is not a tick"
        )));
    }
    Ok(((1_000_000_000 + ns / 2) / ns) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jiffies_round_up_and_are_never_zero() {
        assert_eq!(jiffies(Duration::from_millis(200), 250), 50);
        assert_eq!(jiffies(Duration::from_millis(200), 1000), 200);
        assert_eq!(jiffies(Duration::from_millis(201), 250), 51);
        assert_eq!(jiffies(Duration::from_millis(20), 100), 2);
        assert_eq!(jiffies(Duration::from_millis(1), 100), 1);
        assert_eq!(jiffies(Duration::ZERO, 250), 1);
    }

    #[test]
    fn the_tick_rate_is_one_the_kernel_builds_with() {
        let hz = kernel_hz().expect("coarse clock resolution");
        assert!([100, 250, 300, 1000].contains(&hz), "HZ {hz}");
    }
}
