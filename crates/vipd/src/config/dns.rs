//! Backends from DNS (`{ dns = "web.example.internal", port = 8080 }`,
//! `{ srv = "_http._tcp.web.example.internal" }`) and the resolver's settings (`[dns]`).

use std::{collections::HashMap, net::IpAddr, net::SocketAddr};

use super::{
    backend::Backends,
    duration::format_duration,
    error::Reporter,
    model::{DnsBackend, DnsQuery, DnsSettings, OnEmpty},
    raw::Table,
};

const DNS_KEYS: &[&str] = &[
    "server",
    "min_refresh",
    "max_refresh",
    "timeout",
    "on_empty",
];

/// The DNS names a service already uses, for the duplicate check.
#[derive(Default)]
pub(crate) struct DnsNames {
    first_at: HashMap<(String, bool), Option<usize>>,
}

/// Why `name` is not a DNS name vipd can ask for, if it is not. `srv`: the first two
/// labels must be `_service._proto` (`_tcp` or `_udp`).
pub(crate) fn name_problem(name: &str, srv: bool) -> Option<String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Some("empty".into());
    }
    if bare.len() > 253 {
        return Some("longer than 253 characters".into());
    }
    if bare.parse::<IpAddr>().is_ok() {
        return Some("an IP address, not a name (write it as `address`)".into());
    }
    let labels: Vec<&str> = bare.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        let service_label = srv && i < 2;
        let chars_ok = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (service_label && b == b'_'));
        if label.is_empty() {
            return Some("has an empty label (two dots in a row, or a leading dot)".into());
        }
        if label.len() > 63 {
            return Some(format!("label {label:?} is longer than 63 characters"));
        }
        if !srv && label.starts_with('_') {
            return Some("names starting with `_` are SRV names: write them as `srv`".into());
        }
        if !chars_ok || label.starts_with('-') || label.ends_with('-') {
            return Some(format!(
                "label {label:?} is not a hostname label (letters, digits and inner hyphens)"
            ));
        }
    }
    if srv {
        let proto = labels.get(1).copied().unwrap_or_default();
        let service = labels[0];
        if !service.starts_with('_') || service.len() < 2 || !matches!(proto, "_tcp" | "_udp") {
            return Some(
                "an SRV name starts with `_service._proto.` such as \"_http._tcp.web.example.internal\""
                    .into(),
            );
        }
        if labels.len() < 3 {
            return Some("an SRV name needs a domain after `_service._proto`".into());
        }
    }
    None
}

/// A DNS backend table.
pub(crate) fn dns_backend(
    t: Table<'_>,
    svc: &Backends,
    names: &mut DnsNames,
    r: &mut Reporter<'_>,
) -> Option<DnsBackend> {
    // Unknown keys were reported by the caller's table check.
    let (dns, srv) = (t.get("dns"), t.get("srv"));
    let mut valid = true;
    for key in ["address", "upper_threshold", "lower_threshold"] {
        if let Some(f) = t.get(key) {
            r.error(
                f.at,
                format!(
                    "`{key}` cannot be used with `{}` (a DNS backend's addresses come from its records)",
                    if dns.is_some() { "dns" } else { "srv" }
                ),
            );
            valid = false;
        }
    }
    if let (Some(_), Some(s)) = (dns, srv) {
        r.error(
            s.at,
            "a backend has `dns` or `srv`, not both (one name per backend)",
        );
        return None;
    }
    let is_srv = srv.is_some();
    let field = dns.or(srv)?;
    let s = field.str(r)?;
    if svc.fwmark {
        r.error(
            s.at,
            "DNS backends need a VIP service: a fwmark service has no port to give them",
        );
        valid = false;
    }
    if let Some(why) = name_problem(s.value, is_srv) {
        r.error(
            s.at,
            format!("invalid {} name {:?}: {why}", field.key, s.value),
        );
        return None;
    }
    let name = s
        .value
        .strip_suffix('.')
        .unwrap_or(s.value)
        .to_ascii_lowercase();
    let query = if is_srv {
        if let Some(p) = t.get("port") {
            r.error(
                p.at,
                "`port` cannot be used with `srv`: each SRV record gives its own port",
            );
            valid = false;
        }
        if let Some(method) = svc.method.filter(|m| *m != "masq") {
            r.error(
                s.at,
                format!(
                    "SRV backends need forwarding = \"masq\": their records' ports may differ from the VIP's, and forwarding {method:?} cannot change ports"
                ),
            );
            valid = false;
        }
        DnsQuery::Srv
    } else {
        let Some(p) = t.get("port") else {
            r.error(
                s.at,
                format!("DNS backend {:?} has no `port` (1..=65535)", s.value),
            );
            return None;
        };
        let port = u16::try_from(p.int_in("port", 1, 65535, r)?.value).ok()?;
        if let (Some(method), Some(vip_port)) = (svc.method.filter(|m| *m != "masq"), svc.vip_port)
        {
            if port != vip_port {
                r.error(
                    p.at,
                    format!(
                        "backend port {port} differs from the VIP port {vip_port}, but forwarding {method:?} cannot change ports (use port {vip_port}, or forwarding = \"masq\")"
                    ),
                );
                valid = false;
            }
        }
        DnsQuery::Host { port }
    };
    let weight = match t.get("weight") {
        None => None,
        Some(f) => Some(u16::try_from(f.int_in("weight", 0, 65535, r)?.value).ok()?),
    };
    if let Some(first) = names.first_at.get(&(name.clone(), is_srv)) {
        r.error(
            s.at,
            format!(
                "duplicate DNS backend {:?} (first declared at {})",
                s.value,
                r.place(*first)
            ),
        );
        return None;
    }
    names.first_at.insert((name.clone(), is_srv), s.at);
    valid.then_some(DnsBackend {
        name,
        query,
        weight,
    })
}

/// `[dns]`.
pub(crate) fn dns_settings(t: Table<'_>, r: &mut Reporter<'_>) -> DnsSettings {
    t.deny_unknown(DNS_KEYS, r);
    let d = DnsSettings::default();
    let server = t.get("server").and_then(|f| f.str(r)).and_then(|s| {
        let parsed = s
            .value
            .parse::<SocketAddr>()
            .or_else(|_| s.value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Ok(a) if a.port() != 0 => Some(a),
            _ => {
                r.error(
                    s.at,
                    format!(
                        "invalid DNS server {:?}: expected an address, with a port or not, such as \"127.0.0.53\", \"198.18.0.53:5353\" or \"[fd00:18::53]:53\"",
                        s.value
                    ),
                );
                None
            }
        }
    });
    let positive = |key: &'static str, r: &mut Reporter<'_>| {
        let f = t.get(key)?;
        let v = f.duration(r)?;
        if v.value.is_zero() {
            r.error(v.at, format!("{key} must be longer than 0s"));
            return None;
        }
        Some(v)
    };
    let min = positive("min_refresh", r);
    let max = positive("max_refresh", r);
    let timeout = positive("timeout", r);
    let min_refresh = min.map_or(d.min_refresh, |v| v.value);
    let max_refresh = max.map_or(d.max_refresh, |v| v.value);
    if min_refresh > max_refresh {
        r.error(
            min.or(max).and_then(|v| v.at).or(t.at),
            format!(
                "min_refresh {} is longer than max_refresh {}",
                format_duration(min_refresh),
                format_duration(max_refresh)
            ),
        );
    }
    let on_empty = t
        .get("on_empty")
        .and_then(|f| f.keyword("on_empty rule", OnEmpty::NAMES, OnEmpty::from_name, r))
        .map_or(d.on_empty, |k| k.value);
    DnsSettings {
        server,
        min_refresh,
        max_refresh,
        timeout: timeout.map_or(d.timeout, |v| v.value),
        on_empty,
    }
}
