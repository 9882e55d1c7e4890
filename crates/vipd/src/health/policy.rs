//! The numbers a service's health machine runs on: the config's `[service.health]` with
//! the daemon's defaults filled in.

use std::time::Duration;

use crate::config::{ActiveCheck, HealthPolicy};

/// A service's health policy, every value set.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Consecutive refusals (RST in SYN_SENT) that quarantine a backend. >= 1.
    pub refuse_threshold: u32,
    /// Consecutive SYN retransmissions that quarantine a backend. >= 1.
    pub retransmit_threshold: u32,
    /// Consecutive failed active checks that quarantine a backend. >= 1.
    pub check_fall: u32,
    /// Consecutive passed checks (the probation probe included) that re-admit a backend
    /// on probation. >= 1.
    pub check_rise: u32,
    /// The first quarantine; each further one doubles, up to `max_ejection`.
    pub base_ejection: Duration,
    /// The longest quarantine (before jitter); also how long a backend must stay
    /// healthy for its ejection count to go back to 0.
    pub max_ejection: Duration,
    /// A quarantine is lengthened by a random 0..=`jitter_percent` % of itself.
    pub jitter_percent: u8,
    /// At most this share of the backends (with a configured weight) are out of
    /// rotation at a time; at least one when there are two or more (and this is > 0).
    pub max_ejection_percent: u8,
    /// Panic when fewer than this share of the backends are healthy. 0: only when none is.
    pub panic_threshold: u8,
    /// How long a re-admitted backend takes to ramp back to full weight. Zero: at once.
    pub slow_start: Duration,
    /// Probe (TCP: one connect; UDP: one probe datagram) before re-admitting a backend
    /// after a quarantine.
    pub probe: bool,
}

impl Policy {
    pub const DEFAULT_REFUSE_THRESHOLD: u32 = 1;
    pub const DEFAULT_RETRANSMIT_THRESHOLD: u32 = 1;
    pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(5);
    pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
    pub const DEFAULT_JITTER_PERCENT: u8 = 10;
    pub const DEFAULT_MAX_EJECTION_PERCENT: u8 = 100;
    pub const DEFAULT_PANIC_THRESHOLD: u8 = 0;
    pub const DEFAULT_SLOW_START: Duration = Duration::from_secs(10);

    /// The policy of a service with `[service.health]` `p` (`None`: no section). `probe`
    /// defaults to true where a probe is possible: a TCP service (a connect), or a UDP
    /// service with a probe payload; it is always false otherwise.
    pub fn from_config(p: Option<&HealthPolicy>, protocol_is_tcp: bool) -> Self {
        let d = Policy::default();
        let Some(p) = p else {
            return Policy {
                probe: protocol_is_tcp,
                ..d
            };
        };
        let check = p.check.unwrap_or_default();
        let mut base_ejection = p.base_ejection.unwrap_or(d.base_ejection);
        let mut max_ejection = p.max_ejection.unwrap_or(d.max_ejection);
        // The config checks base <= max only when both are given; a default never
        // contradicts a value the user set.
        if p.max_ejection.is_none() {
            max_ejection = max_ejection.max(base_ejection);
        } else if p.base_ejection.is_none() {
            base_ejection = base_ejection.min(max_ejection);
        }
        Policy {
            refuse_threshold: p.refuse_threshold.unwrap_or(d.refuse_threshold).max(1),
            retransmit_threshold: p
                .retransmit_threshold
                .unwrap_or(d.retransmit_threshold)
                .max(1),
            check_fall: check.fall.max(1),
            check_rise: check.rise.max(1),
            base_ejection,
            max_ejection,
            jitter_percent: d.jitter_percent,
            max_ejection_percent: p
                .max_ejection_percent
                .unwrap_or(d.max_ejection_percent)
                .min(100),
            panic_threshold: p.panic_threshold.unwrap_or(d.panic_threshold).min(100),
            slow_start: p.slow_start.unwrap_or(d.slow_start),
            probe: (protocol_is_tcp || p.udp_probe.is_some()) && p.probe.unwrap_or(true),
        }
    }
}

impl Default for Policy {
    /// The documented defaults (a TCP service without `[service.health]`).
    fn default() -> Self {
        Policy {
            refuse_threshold: Self::DEFAULT_REFUSE_THRESHOLD,
            retransmit_threshold: Self::DEFAULT_RETRANSMIT_THRESHOLD,
            check_fall: ActiveCheck::DEFAULT_FALL,
            check_rise: ActiveCheck::DEFAULT_RISE,
            base_ejection: Self::DEFAULT_BASE_EJECTION,
            max_ejection: Self::DEFAULT_MAX_EJECTION,
            jitter_percent: Self::DEFAULT_JITTER_PERCENT,
            max_ejection_percent: Self::DEFAULT_MAX_EJECTION_PERCENT,
            panic_threshold: Self::DEFAULT_PANIC_THRESHOLD,
            slow_start: Self::DEFAULT_SLOW_START,
            probe: true,
        }
    }
}
