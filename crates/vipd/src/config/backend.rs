//! A service's backends (`[[service.backend]]`): address, weight, thresholds, and the checks
//! against the service (address family, ports that cannot be rewritten, duplicates).

use std::{collections::HashMap, net::SocketAddr};

use super::{
    addr::{not_unicast, parse_endpoint},
    dns::{dns_backend, DnsNames},
    error::Reporter,
    model::{BackendSpec, DnsBackend, Family},
    raw::{Field, Table},
};

const BACKEND_KEYS: &[&str] = &[
    "address",
    "dns",
    "srv",
    "port",
    "weight",
    "upper_threshold",
    "lower_threshold",
];

/// What the backend checks need to know of their service; `None` where the service's own
/// setting is invalid (then the checks that need it are skipped).
pub(crate) struct Backends {
    pub(crate) family: Option<Family>,
    /// The VIP's port, for address services.
    pub(crate) vip_port: Option<u16>,
    /// The service key as shown in messages.
    pub(crate) vip: Option<String>,
    pub(crate) fwmark: bool,
    /// `masq`, `tunnel` or `route`.
    pub(crate) method: Option<&'static str>,
}

/// The most backends one service may have: far beyond any client-side use, and a bound
/// on the work of one reconcile.
pub const MAX_BACKENDS: usize = 1024;

/// A service's backends: the literal ones and those from DNS names.
pub(crate) fn backends(
    f: Field<'_>,
    svc: &Backends,
    r: &mut Reporter<'_>,
) -> Option<(Vec<BackendSpec>, Vec<DnsBackend>)> {
    let tables = f.tables("[[service.backend]]", "in [[service.backend]]", r)?;
    if let Some(extra) = tables.get(MAX_BACKENDS) {
        r.error(
            extra.at,
            format!(
                "{} backends: a service has at most {MAX_BACKENDS}; this is the first one over",
                tables.len()
            ),
        );
        return None;
    }
    let mut first_at = HashMap::new();
    let mut names = DnsNames::default();
    let mut out = Some((Vec::with_capacity(tables.len()), Vec::new()));
    for t in tables {
        if t.get("dns").is_some() || t.get("srv").is_some() {
            match (dns_backend(t, svc, &mut names, r), &mut out) {
                (Some(d), Some((_, all))) => all.push(d),
                _ => out = None,
            }
            continue;
        }
        match (backend(t, svc, &mut first_at, r), &mut out) {
            (Some(b), Some((all, _))) => all.push(b),
            _ => out = None,
        }
    }
    out
}

fn backend(
    t: Table<'_>,
    svc: &Backends,
    first_at: &mut HashMap<SocketAddr, Option<usize>>,
    r: &mut Reporter<'_>,
) -> Option<BackendSpec> {
    t.deny_unknown(BACKEND_KEYS, r);
    if let Some(f) = t.get("port") {
        r.error(
            f.at,
            "`port` goes with `dns` (an address backend writes its port in `address`)",
        );
    }
    let addr = match t.get("address") {
        None => {
            r.error(
                t.at,
                "backend has no `address` (or `dns` with `port`, or `srv`)",
            );
            None
        }
        Some(f) => address(f, svc, first_at, r),
    };
    let weight = match t.get("weight") {
        None => Some(1),
        Some(f) => f
            .int_in("weight", 0, 65535, r)
            .and_then(|w| u16::try_from(w.value).ok()),
    };
    let upper = threshold(t, "upper_threshold", r);
    let lower = threshold(t, "lower_threshold", r);
    if let (Some((upper, _)), Some((lower, lower_at))) = (upper, lower) {
        if lower > upper {
            let message = if upper == 0 {
                format!(
                    "lower_threshold {lower} is above upper_threshold 0 (no upper threshold); set upper_threshold to at least {lower}"
                )
            } else {
                format!("lower_threshold {lower} is above upper_threshold {upper}")
            };
            r.error(lower_at, message);
            return None;
        }
    }
    Some(BackendSpec {
        addr: addr?,
        weight: weight?,
        upper_threshold: upper?.0,
        lower_threshold: lower?.0,
    })
}

/// A connection threshold (0 when absent) and where it is.
fn threshold(
    t: Table<'_>,
    key: &'static str,
    r: &mut Reporter<'_>,
) -> Option<(u32, Option<usize>)> {
    match t.get(key) {
        None => Some((0, None)),
        Some(f) => {
            let n = f.int_in(key, 0, i64::from(u32::MAX), r)?;
            Some((u32::try_from(n.value).ok()?, n.at))
        }
    }
}

fn address(
    f: Field<'_>,
    svc: &Backends,
    first_at: &mut HashMap<SocketAddr, Option<usize>>,
    r: &mut Reporter<'_>,
) -> Option<SocketAddr> {
    let s = f.str(r)?;
    let (ip, port) = match parse_endpoint(s.value, "backend address", svc.fwmark) {
        Ok(found) => found,
        Err(message) => {
            r.error(s.at, message);
            return None;
        }
    };
    if let Some(kind) = not_unicast(ip) {
        r.error(
            s.at,
            format!("backend address {:?} is a {kind} address", s.value),
        );
        return None;
    }
    let mut valid = true;
    if let (Some(want), Some(method)) = (svc.family, svc.method) {
        let have = Family::of(ip);
        if have != want && method != "tunnel" {
            let of_service = match &svc.vip {
                Some(key) if svc.fwmark => format!("the service ({key})"),
                Some(key) => format!("VIP {key}"),
                None => "the service".to_owned(),
            };
            r.error(
                s.at,
                format!(
                    "address family mismatch: backend {:?} is {} but {of_service} is {} (only forwarding = \"tunnel\" can mix families)",
                    s.value,
                    have.label(),
                    want.label()
                ),
            );
            valid = false;
        }
    }
    if let Some(method) = svc.method.filter(|m| *m != "masq") {
        match (svc.vip_port, port) {
            (_, Some(p)) if svc.fwmark => {
                r.error(
                    s.at,
                    format!(
                        "backend port {p} cannot be used with forwarding {method:?}, which does not change ports; leave the port out on a fwmark service"
                    ),
                );
                valid = false;
            }
            (Some(vip_port), Some(p)) if p != vip_port => {
                r.error(
                    s.at,
                    format!(
                        "backend port {p} differs from the VIP port {vip_port}, but forwarding {method:?} cannot change ports (use port {vip_port}, or forwarding = \"masq\")"
                    ),
                );
                valid = false;
            }
            _ => {}
        }
    }
    let addr = SocketAddr::new(ip, port.unwrap_or(0));
    if let Some(first) = first_at.get(&addr) {
        let shown = match port {
            Some(_) => addr.to_string(),
            None => ip.to_string(),
        };
        r.error(
            s.at,
            format!(
                "duplicate backend {shown} (first declared at {})",
                r.place(*first)
            ),
        );
        return None;
    }
    first_at.insert(addr, s.at);
    valid.then_some(addr)
}
