//! Addresses written as `"IPv4:port"` or `"[IPv6]:port"`, with messages that say exactly
//! what is wrong (a port out of range, missing brackets, a hostname, ...).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const USAGE: &str = "expected \"IPv4:port\" or \"[IPv6]:port\"";

/// Parses an endpoint. `what` names it in messages ("VIP", "backend address"). With
/// `port_optional`, a bare address (no port) is accepted and gives `None`.
pub(crate) fn parse_endpoint(
    text: &str,
    what: &str,
    port_optional: bool,
) -> Result<(IpAddr, Option<u16>), String> {
    let (ip, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(format!("invalid {what} {text:?}: missing `]`"));
        };
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("invalid {what} {text:?}: {host:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("invalid {what} {text:?}: {USAGE}")),
            },
        };
        (IpAddr::V6(ip), port)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        (ip, None)
    } else if let Some((host, port)) = text.rsplit_once(':') {
        if host.contains(':') {
            return Err(format!(
                "invalid {what} {text:?}: an IPv6 address with a port needs brackets, e.g. \"[fd00:18::10]:80\""
            ));
        }
        let ip: Ipv4Addr = host.parse().map_err(|_| {
            format!(
                "invalid {what} {text:?}: {host:?} is not an IP address (names are not resolved)"
            )
        })?;
        (IpAddr::V4(ip), Some(port))
    } else {
        return Err(format!("invalid {what} {text:?}: {USAGE}"));
    };
    let port = match port {
        Some(p) => Some(parse_port(p, text, what, port_optional)?),
        None if port_optional => None,
        None => return Err(format!("{what} {text:?} has no port ({USAGE})")),
    };
    Ok((ip, port))
}

fn parse_port(p: &str, text: &str, what: &str, port_optional: bool) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {p:?} in {what} {text:?}"));
    }
    match p.parse::<u16>() {
        Ok(n) if n != 0 => Ok(n),
        _ => {
            let hint = if port_optional {
                " (leave the port out to keep the packet's destination port)"
            } else {
                ""
            };
            let shown = match p.trim_start_matches('0') {
                "" => "0",
                digits => digits,
            };
            Err(format!(
                "port {shown} out of range (1..=65535) in {what} {text:?}{hint}"
            ))
        }
    }
}

/// Why an address cannot be a VIP or a backend, if it cannot.
pub(crate) fn not_unicast(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
        Some("broadcast")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, optional: bool) -> (IpAddr, Option<u16>) {
        parse_endpoint(text, "VIP", optional).unwrap()
    }

    fn err(text: &str, optional: bool) -> String {
        parse_endpoint(text, "VIP", optional).unwrap_err()
    }

    #[test]
    fn parses_both_families() {
        assert_eq!(
            ok("198.18.0.10:80", false),
            ("198.18.0.10".parse().unwrap(), Some(80))
        );
        assert_eq!(
            ok("[fd00:18::10]:443", false),
            ("fd00:18::10".parse().unwrap(), Some(443))
        );
        assert_eq!(
            ok("198.18.1.2", true),
            ("198.18.1.2".parse().unwrap(), None)
        );
        assert_eq!(
            ok("[fd00:18::2]", true),
            ("fd00:18::2".parse().unwrap(), None)
        );
        assert_eq!(
            ok("fd00:18::2", true),
            ("fd00:18::2".parse().unwrap(), None)
        );
    }

    #[test]
    fn names_the_problem() {
        assert_eq!(
            err("198.18.0.10:70000", false),
            "port 70000 out of range (1..=65535) in VIP \"198.18.0.10:70000\""
        );
        assert_eq!(
            err("198.18.0.10:0", false),
            "port 0 out of range (1..=65535) in VIP \"198.18.0.10:0\""
        );
        assert_eq!(
            err("198.18.0.10:00", true),
            "port 0 out of range (1..=65535) in VIP \"198.18.0.10:00\" (leave the port out to keep the packet's destination port)"
        );
        assert_eq!(
            err("198.18.0.10:99999999999999999999999", false),
            "port 99999999999999999999999 out of range (1..=65535) in VIP \"198.18.0.10:99999999999999999999999\""
        );
        assert_eq!(
            err("198.18.0.10:http", false),
            "invalid port \"http\" in VIP \"198.18.0.10:http\""
        );
        assert_eq!(
            err("198.18.0.10:", false),
            "invalid port \"\" in VIP \"198.18.0.10:\""
        );
        assert_eq!(
            err("198.18.0.10", false),
            "VIP \"198.18.0.10\" has no port (expected \"IPv4:port\" or \"[IPv6]:port\")"
        );
        assert_eq!(
            err("[fd00:18::10]", false),
            "VIP \"[fd00:18::10]\" has no port (expected \"IPv4:port\" or \"[IPv6]:port\")"
        );
        assert_eq!(
            err("fd00:18::10:80:x", false),
            "invalid VIP \"fd00:18::10:80:x\": an IPv6 address with a port needs brackets, e.g. \"[fd00:18::10]:80\""
        );
        assert_eq!(
            err("[fd00:18::10:80", false),
            "invalid VIP \"[fd00:18::10:80\": missing `]`"
        );
        assert_eq!(
            err("[198.18.0.10]:80", false),
            "invalid VIP \"[198.18.0.10]:80\": \"198.18.0.10\" is not an IPv6 address"
        );
        assert_eq!(
            err("[fd00:18::10]80", false),
            "invalid VIP \"[fd00:18::10]80\": expected \"IPv4:port\" or \"[IPv6]:port\""
        );
        assert_eq!(
            err("web.example:80", false),
            "invalid VIP \"web.example:80\": \"web.example\" is not an IP address (names are not resolved)"
        );
        assert_eq!(
            err("198.18.0.300:80", false),
            "invalid VIP \"198.18.0.300:80\": \"198.18.0.300\" is not an IP address (names are not resolved)"
        );
        assert_eq!(
            err("", false),
            "invalid VIP \"\": expected \"IPv4:port\" or \"[IPv6]:port\""
        );
    }

    #[test]
    fn unicast() {
        assert_eq!(not_unicast("0.0.0.0".parse().unwrap()), Some("unspecified"));
        assert_eq!(not_unicast("::".parse().unwrap()), Some("unspecified"));
        assert_eq!(not_unicast("224.0.0.1".parse().unwrap()), Some("multicast"));
        assert_eq!(not_unicast("ff02::1".parse().unwrap()), Some("multicast"));
        assert_eq!(
            not_unicast("255.255.255.255".parse().unwrap()),
            Some("broadcast")
        );
        assert_eq!(not_unicast("198.18.0.10".parse().unwrap()), None);
    }
}
