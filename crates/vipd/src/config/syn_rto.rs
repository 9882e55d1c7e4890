//! `[service.health] syn_rto`: the initial SYN retransmission timeout of clients'
//! connections to a TCP VIP: a fixed duration, `"auto"` (k × the handshake p99 vipd
//! observes, between a floor and a ceiling), an `{ k, floor, ceiling }` table (auto with
//! those bounds), or `"off"` for the kernel's default (1 s).

use std::time::Duration;

use super::{
    duration::format_duration,
    error::Reporter,
    raw::{Field, Table},
    validate::Traffic,
};

/// The shortest `syn_rto` accepted: below it a handshake that is merely slow (a loaded
/// backend, a queue in the path) retransmits and counts as a failure.
pub const SYN_RTO_MIN: Duration = Duration::from_millis(20);
/// The longest `syn_rto` accepted: the kernel's own initial timeout. A longer one would
/// only delay detection.
pub const SYN_RTO_MAX: Duration = Duration::from_secs(1);

const AUTO_KEYS: &[&str] = &["k", "floor", "ceiling"];

/// A VIP's initial SYN timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynRto {
    /// This timeout, always.
    Fixed(Duration),
    /// Adapted to the handshakes vipd observes.
    Auto(AutoRto),
}

/// `syn_rto = "auto"`: the timeout is `k` × the p99 of the VIP's recent handshake times,
/// never below `floor` nor above `ceiling` (`ceiling` until enough handshakes were
/// seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AutoRto {
    pub k: u32,
    pub floor: Duration,
    pub ceiling: Duration,
}

impl Default for AutoRto {
    /// k = 3, floor 50 ms, ceiling 1 s: see docs/blackhole.md for how they were chosen.
    fn default() -> Self {
        AutoRto {
            k: 3,
            floor: Duration::from_millis(50),
            ceiling: SYN_RTO_MAX,
        }
    }
}

impl SynRto {
    /// The timeout new connections get before anything was observed.
    pub fn initial(&self) -> Duration {
        match self {
            SynRto::Fixed(d) => *d,
            SynRto::Auto(a) => a.ceiling,
        }
    }
}

/// `Some(None)`: absent or `"off"`; `Some(Some(_))`: valid; `None`: an error was
/// reported.
pub(crate) fn syn_rto(
    t: Table<'_>,
    traffic: Traffic,
    r: &mut Reporter<'_>,
) -> Option<Option<SynRto>> {
    let Some(f) = t.get("syn_rto") else {
        return Some(None);
    };
    if matches!(traffic, Traffic::Udp | Traffic::Any) {
        r.error(
            f.at,
            "`syn_rto` only applies to TCP VIP:port services (it is the timeout of the first SYN of a connection to the VIP)",
        );
        return None;
    }
    if f.item_str().is_none() {
        return auto_table(f, r).map(|a| Some(SynRto::Auto(a)));
    }
    match f.str(r)?.value {
        "off" => return Some(None),
        "auto" => return Some(Some(SynRto::Auto(AutoRto::default()))),
        _ => {}
    }
    in_range(f, "syn_rto", r).map(|d| Some(SynRto::Fixed(d)))
}

/// A duration field within `SYN_RTO_MIN..=SYN_RTO_MAX`.
fn in_range(f: Field<'_>, what: &str, r: &mut Reporter<'_>) -> Option<Duration> {
    let d = f.duration(r)?;
    if !(SYN_RTO_MIN..=SYN_RTO_MAX).contains(&d.value) {
        r.error(
            d.at,
            format!(
                "{what} {} out of range ({}..={}{})",
                format_duration(d.value),
                format_duration(SYN_RTO_MIN),
                format_duration(SYN_RTO_MAX),
                if what == "syn_rto" {
                    ", \"auto\", or \"off\" for the kernel's default"
                } else {
                    ""
                },
            ),
        );
        return None;
    }
    Some(d.value)
}

/// `syn_rto = { k = 3, floor = "50ms", ceiling = "1s" }`, each key optional.
fn auto_table(f: Field<'_>, r: &mut Reporter<'_>) -> Option<AutoRto> {
    let t = f.table("in `syn_rto`", r)?;
    t.deny_unknown(AUTO_KEYS, r);
    let defaults = AutoRto::default();
    let k = match t.get("k") {
        None => Some(defaults.k),
        Some(f) => f
            .int_in("syn_rto k", 1, 100, r)
            .and_then(|n| u32::try_from(n.value).ok()),
    };
    let bound =
        |key: &'static str, what: &str, default: Duration, r: &mut Reporter<'_>| match t.get(key) {
            None => Some(default),
            Some(f) => in_range(f, what, r),
        };
    let floor = bound("floor", "syn_rto floor", defaults.floor, r);
    let ceiling = bound("ceiling", "syn_rto ceiling", defaults.ceiling, r);
    let (k, floor, ceiling) = (k?, floor?, ceiling?);
    if floor > ceiling {
        let at = t.get("floor").and_then(|f| f.at);
        r.error(
            at,
            format!(
                "syn_rto floor {} is above its ceiling {}",
                format_duration(floor),
                format_duration(ceiling)
            ),
        );
        return None;
    }
    Some(AutoRto { k, floor, ceiling })
}
