//! A service's optional sections: `tunnel`, `persistence`, `flags` and `[service.health]`.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use super::{
    duration::format_duration,
    error::Reporter,
    model::{
        ActiveCheck, Family, HealthPolicy, Persistence, Scheduler, ServiceFlag, Tunnel,
        TunnelChecksum, TunnelEncap, UdpProbe,
    },
    payload,
    raw::{Field, Table},
    suggest,
    syn_rto::syn_rto,
    validate::Traffic,
};

const TUNNEL_KEYS: &[&str] = &["type", "port", "checksum"];
const TUNNEL_TYPES: &[&str] = &["ipip", "gue", "gre"];
const PERSISTENCE_KEYS: &[&str] = &["timeout", "netmask"];
/// The `[service.health]` keys that mean the same for every protocol, which
/// `[defaults.health]` may set too.
pub(crate) const GENERIC_HEALTH_KEYS: &[&str] = &[
    "refuse_threshold",
    "retransmit_threshold",
    "base_ejection",
    "max_ejection",
    "max_ejection_percent",
    "panic_threshold",
    "slow_start",
];
/// The `[service.health]` keys that depend on the service: `syn_rto` is TCP's,
/// `silence_window` and the payload UDP's, `probe` and `check` need a payload on UDP
/// (and `probe_timeout` goes with `probe`).
pub(crate) const PER_SERVICE_HEALTH_KEYS: &[&str] = &[
    "probe",
    "probe_timeout",
    "check",
    "silence_window",
    "syn_rto",
    "payload",
    "payload_hex",
    "expect",
    "expect_hex",
];
const CHECK_KEYS: &[&str] = &["interval", "timeout", "fall", "rise"];

/// `ipvsadm`'s default persistence timeout.
pub(crate) const DEFAULT_PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(300);
/// `ipvsadm`'s maximum persistence timeout (31 days); the kernel keeps it in jiffies in
/// 32 bits, which wraps not far above (at HZ=1000, after ~49 days).
pub(crate) const MAX_PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(31 * 24 * 3600);

/// `tunnel = { type = "gue", port = 6080, checksum = "csum" }`.
pub(crate) fn tunnel(f: Field<'_>, r: &mut Reporter<'_>) -> Option<Tunnel> {
    let t = f.table("in `tunnel`", r)?;
    t.deny_unknown(TUNNEL_KEYS, r);
    let kind = match t.get("type") {
        None => Some("ipip"),
        Some(f) => f
            .keyword(
                "tunnel type",
                TUNNEL_TYPES,
                |s| TUNNEL_TYPES.iter().copied().find(|t| *t == s),
                r,
            )
            .map(|k| k.value),
    };
    let port = t.get("port");
    let encap = match (kind, port) {
        (Some("gue"), None) => {
            r.error(
                t.at,
                "tunnel type \"gue\" needs a `port` (1..=65535): the UDP port GUE packets are sent to",
            );
            None
        }
        (Some("gue"), Some(p)) => p
            .int_in("tunnel port", 1, 65535, r)
            .and_then(|p| u16::try_from(p.value).ok())
            .map(|port| TunnelEncap::Gue { port }),
        (Some(k), p) => {
            let given = p.and_then(|p| p.int_in("tunnel port", 0, 65535, r));
            if let Some(p) = given.filter(|p| p.value != 0) {
                r.error(
                    p.at,
                    format!(
                        "tunnel port {} is only used with type \"gue\" (this tunnel is {k:?})",
                        p.value
                    ),
                );
            }
            Some(if k == "gre" {
                TunnelEncap::Gre
            } else {
                TunnelEncap::Ipip
            })
        }
        (None, p) => {
            p.and_then(|p| p.int_in("tunnel port", 0, 65535, r));
            None
        }
    };
    let checksum = match t.get("checksum") {
        None => Some(TunnelChecksum::None),
        Some(f) => f
            .keyword(
                "tunnel checksum",
                TunnelChecksum::NAMES,
                TunnelChecksum::from_name,
                r,
            )
            .and_then(|c| {
                let refused = match (kind, c.value) {
                    (Some("ipip"), TunnelChecksum::Csum | TunnelChecksum::RemCsum) => {
                        Some("IPIP has no checksum; use \"none\"")
                    }
                    (Some("gre"), TunnelChecksum::RemCsum) => {
                        Some("GRE supports \"none\" or \"csum\"")
                    }
                    _ => None,
                };
                match (refused, kind) {
                    (Some(why), Some(k)) => {
                        r.error(
                            c.at,
                            format!(
                                "tunnel checksum {:?} is not supported with type {k:?} ({why})",
                                c.value.as_str()
                            ),
                        );
                        None
                    }
                    _ => Some(c.value),
                }
            }),
    };
    Some(Tunnel {
        encap: encap?,
        checksum: checksum?,
    })
}

/// `persistence = { timeout = "300s", netmask = 24 }`. `family` is the service's, if known.
pub(crate) fn persistence(
    f: Field<'_>,
    family: Option<Family>,
    r: &mut Reporter<'_>,
) -> Option<Persistence> {
    let t = f.table("in `persistence`", r)?;
    t.deny_unknown(PERSISTENCE_KEYS, r);
    let timeout = match t.get("timeout") {
        None => Some(DEFAULT_PERSISTENCE_TIMEOUT),
        Some(f) => f.duration(r).and_then(|d| {
            let shown = format_duration(d.value);
            let problem = if d.value.is_zero() {
                Some(format!("persistence timeout {shown} must be at least 1s"))
            } else if d.value.subsec_nanos() != 0 {
                Some(format!(
                    "persistence timeout {shown} is not a whole number of seconds (IPVS counts seconds)"
                ))
            } else if d.value > MAX_PERSISTENCE_TIMEOUT {
                Some(format!(
                    "persistence timeout {shown} is above the maximum of {} (31 days)",
                    format_duration(MAX_PERSISTENCE_TIMEOUT)
                ))
            } else {
                None
            };
            match problem {
                Some(message) => {
                    r.error(d.at, message);
                    None
                }
                None => Some(d.value),
            }
        }),
    };
    let netmask = match t.get("netmask") {
        None => family.map(Family::max_prefix),
        Some(f) => f.int(r).and_then(|n| {
            // The kernel refuses an IPv6 prefix length of 0; an IPv4 mask of 0 is fine.
            let (lo, hi, of) = match family {
                Some(Family::Ipv4) => (0, 32, " for an IPv4 service"),
                Some(Family::Ipv6) => (1, 128, " for an IPv6 service"),
                None => (0, 128, ""),
            };
            if (lo..=hi).contains(&n.value) {
                u8::try_from(n.value).ok()
            } else {
                r.error(
                    n.at,
                    format!(
                        "persistence netmask {} out of range{of} ({lo}..={hi})",
                        n.value
                    ),
                );
                None
            }
        }),
    };
    Some(Persistence {
        timeout: timeout?,
        netmask: netmask?,
    })
}

/// `flags = ["sh-fallback", "sh-port"]`. `scheduler` is the service's, if known.
pub(crate) fn flags(
    f: Field<'_>,
    scheduler: Option<Scheduler>,
    traffic: Traffic,
    r: &mut Reporter<'_>,
) -> Option<BTreeSet<ServiceFlag>> {
    let items = f.strings(r)?;
    let mut valid = true;
    let mut first_at: HashMap<ServiceFlag, Option<usize>> = HashMap::new();
    for s in items {
        let Some(flag) = ServiceFlag::from_name(s.value) else {
            let hint = if s.value == "persistent" {
                "(persistence is set with `persistence = { timeout = \"300s\" }`)".to_owned()
            } else {
                let close = suggest::closest(s.value, ServiceFlag::NAMES);
                suggest::expected(ServiceFlag::NAMES, close.map(|c| format!("{c:?}")))
            };
            r.error(s.at, format!("unknown flag {:?} {hint}", s.value));
            valid = false;
            continue;
        };
        if let Some(first) = first_at.get(&flag) {
            r.error(
                s.at,
                format!(
                    "duplicate flag {:?} (first given at {})",
                    s.value,
                    r.place(*first)
                ),
            );
            valid = false;
            continue;
        }
        first_at.insert(flag, s.at);
        if let (Some(needed), Some(have)) = (flag.scheduler(), scheduler) {
            if needed != have {
                r.error(
                    s.at,
                    format!(
                        "flag {:?} needs scheduler {:?} (this service uses {:?})",
                        s.value,
                        needed.as_str(),
                        have.as_str()
                    ),
                );
                valid = false;
            }
        }
        if flag == ServiceFlag::OnePacket && traffic == Traffic::Tcp {
            r.error(
                s.at,
                "flag \"one-packet\" only applies to UDP (this service is tcp)",
            );
            valid = false;
        }
    }
    valid.then(|| first_at.into_keys().collect())
}

/// `[service.health]`: every field optional, each range-checked. `traffic` is the
/// service's: TCP probes and checks are connects; UDP ones send `payload` and wait for a
/// reply, so a UDP service needs a payload for them; `silence_window` is UDP only.
pub(crate) fn health(f: Field<'_>, traffic: Traffic, r: &mut Reporter<'_>) -> Option<HealthPolicy> {
    let t = f.table("in [service.health]", r)?;
    t.deny_unknown(&[GENERIC_HEALTH_KEYS, PER_SERVICE_HEALTH_KEYS].concat(), r);
    let refuse_threshold = count(t, "refuse_threshold", "refuse_threshold", r);
    let retransmit_threshold = count(t, "retransmit_threshold", "retransmit_threshold", r);
    let base_ejection = positive_duration(t, "base_ejection", "base_ejection", r);
    let max_ejection = positive_duration(t, "max_ejection", "max_ejection", r);
    let max_ejection_percent = percent(t, "max_ejection_percent", r);
    let panic_threshold = percent(t, "panic_threshold", r);
    let slow_start = match t.get("slow_start") {
        None => Some(None),
        Some(f) => f.duration(r).map(|d| Some(d.value)),
    };
    let udp_probe = udp_probe(t, traffic, r);
    let has_payload = matches!(udp_probe, Some(Some(_)));
    let probe = match t.get("probe") {
        None => Some(None),
        Some(f) => f.bool(r).and_then(|b| {
            if b.value && traffic == Traffic::Udp && !has_payload && udp_probe.is_some() {
                r.error(
                    b.at,
                    "probe = true on a udp service needs `payload` or `payload_hex`: the datagram the probe sends (its reply passes the probe)",
                );
                None
            } else {
                Some(Some(b.value))
            }
        }),
    };
    let probe_timeout = positive_duration(t, "probe_timeout", "probe_timeout", r);
    let check = match t.get("check") {
        None => Some(None),
        Some(f) => {
            let needs_payload = traffic == Traffic::Udp && !has_payload && udp_probe.is_some();
            if needs_payload {
                r.error(
                    f.at,
                    "`check` on a udp service needs `payload` or `payload_hex`: the datagram each check sends (its reply passes the check)",
                );
            }
            active_check(f, r).filter(|_| !needs_payload).map(Some)
        }
    };
    let silence_window = match t.get("silence_window") {
        None => Some(None),
        Some(f) => {
            let d = positive_duration(t, "silence_window", "silence_window", r);
            if matches!(traffic, Traffic::Tcp) {
                r.error(
                    f.at,
                    "`silence_window` only applies to UDP services (this service is tcp; a TCP backend that does not answer is found by its SYN retransmissions)",
                );
                None
            } else {
                d
            }
        }
    };
    let syn_rto = syn_rto(t, traffic, r);
    if let (Some(Some(base)), Some(Some(max))) = (base_ejection, max_ejection) {
        if base > max {
            let at = t.get("base_ejection").and_then(|f| f.at);
            r.error(
                at,
                format!(
                    "base_ejection {} is longer than max_ejection {}",
                    format_duration(base),
                    format_duration(max)
                ),
            );
            return None;
        }
    }
    Some(HealthPolicy {
        refuse_threshold: refuse_threshold?,
        retransmit_threshold: retransmit_threshold?,
        base_ejection: base_ejection?,
        max_ejection: max_ejection?,
        max_ejection_percent: max_ejection_percent?,
        panic_threshold: panic_threshold?,
        slow_start: slow_start?,
        probe: probe?,
        probe_timeout: probe_timeout?,
        check: check?,
        silence_window: silence_window?,
        syn_rto: syn_rto?,
        udp_probe: udp_probe?,
    })
}

/// `payload`/`payload_hex` and `expect`/`expect_hex`: UDP only; `expect` needs a payload.
fn udp_probe(t: Table<'_>, traffic: Traffic, r: &mut Reporter<'_>) -> Option<Option<UdpProbe>> {
    let sent = payload::bytes(t, "payload", "payload_hex", r);
    let expect = payload::bytes(t, "expect", "expect_hex", r);
    if traffic == Traffic::Tcp {
        for key in ["payload", "payload_hex", "expect", "expect_hex"] {
            if let Some(f) = t.get(key) {
                r.error(
                    f.at,
                    format!("`{key}` only applies to UDP services (this service is tcp: its checks and probes are TCP connects)"),
                );
            }
        }
        return Some(None);
    }
    match (sent?, expect?) {
        (Some(payload), expect) => Some(Some(UdpProbe {
            payload,
            expect: expect.unwrap_or_default(),
        })),
        (None, Some(_)) => {
            let at = t
                .get("expect")
                .or_else(|| t.get("expect_hex"))
                .and_then(|f| f.at);
            r.error(
                at,
                "`expect` needs `payload` or `payload_hex`: the datagram whose reply it checks",
            );
            None
        }
        (None, None) => Some(None),
    }
}

/// `check = { interval = "2s", timeout = "1s", fall = 2, rise = 1 }`; absent keys take
/// [`ActiveCheck::default`]'s values.
fn active_check(f: Field<'_>, r: &mut Reporter<'_>) -> Option<ActiveCheck> {
    let t = f.table("in `check`", r)?;
    t.deny_unknown(CHECK_KEYS, r);
    let defaults = ActiveCheck::default();
    let interval = positive_duration(t, "interval", "check interval", r);
    let timeout = positive_duration(t, "timeout", "check timeout", r);
    let fall = count(t, "fall", "check fall", r);
    let rise = count(t, "rise", "check rise", r);
    let interval = interval?.unwrap_or(defaults.interval);
    let timeout = timeout?.unwrap_or(defaults.timeout);
    if timeout > interval {
        let at = t
            .get("timeout")
            .or_else(|| t.get("interval"))
            .and_then(|f| f.at);
        r.error(
            at,
            format!(
                "check timeout {} is longer than its interval {} (a check must end before the next one starts)",
                format_duration(timeout),
                format_duration(interval)
            ),
        );
        return None;
    }
    Some(ActiveCheck {
        interval,
        timeout,
        fall: fall?.unwrap_or(defaults.fall),
        rise: rise?.unwrap_or(defaults.rise),
    })
}

/// `Some(None)` when absent, `None` when invalid (reported). `what` names the value in
/// messages.
fn count(t: Table<'_>, key: &'static str, what: &str, r: &mut Reporter<'_>) -> Option<Option<u32>> {
    match t.get(key) {
        None => Some(None),
        Some(f) => f
            .int_in(what, 1, i64::from(u32::MAX), r)
            .map(|n| u32::try_from(n.value).ok()),
    }
}

fn percent(t: Table<'_>, key: &'static str, r: &mut Reporter<'_>) -> Option<Option<u8>> {
    match t.get(key) {
        None => Some(None),
        Some(f) => f.int_in(key, 0, 100, r).map(|n| u8::try_from(n.value).ok()),
    }
}

fn positive_duration(
    t: Table<'_>,
    key: &'static str,
    what: &str,
    r: &mut Reporter<'_>,
) -> Option<Option<Duration>> {
    let Some(f) = t.get(key) else {
        return Some(None);
    };
    let d = f.duration(r)?;
    if d.value.is_zero() {
        r.error(d.at, format!("{what} must be longer than 0s"));
        return None;
    }
    Some(Some(d.value))
}
