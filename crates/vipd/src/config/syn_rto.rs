//! `[service.health] syn_rto`: the initial SYN retransmission timeout of clients'
//! connections to a TCP VIP, or `"off"` for the kernel's default (1 s).

use std::time::Duration;

use super::{duration::format_duration, error::Reporter, raw::Table, validate::Traffic};

/// The shortest `syn_rto` accepted: below it a handshake that is merely slow (a loaded
/// backend, a queue in the path) retransmits and counts as a failure.
pub const SYN_RTO_MIN: Duration = Duration::from_millis(20);
/// The longest `syn_rto` accepted: the kernel's own initial timeout. A longer one would
/// only delay detection.
pub const SYN_RTO_MAX: Duration = Duration::from_secs(1);

/// `Some(None)`: absent or `"off"`; `Some(Some(d))`: a timeout in range; `None`: an
/// error was reported.
pub(crate) fn syn_rto(
    t: Table<'_>,
    traffic: Traffic,
    r: &mut Reporter<'_>,
) -> Option<Option<Duration>> {
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
    if f.str(r)?.value == "off" {
        return Some(None);
    }
    let d = f.duration(r)?;
    if !(SYN_RTO_MIN..=SYN_RTO_MAX).contains(&d.value) {
        r.error(
            d.at,
            format!(
                "syn_rto {} out of range ({}..={}, or \"off\" for the kernel's default)",
                format_duration(d.value),
                format_duration(SYN_RTO_MIN),
                format_duration(SYN_RTO_MAX),
            ),
        );
        return None;
    }
    Some(Some(d.value))
}
