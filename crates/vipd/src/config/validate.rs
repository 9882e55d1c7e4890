//! From the TOML tree to a [`Config`]: the top level, `[daemon]`, each `[[service]]`, and
//! the checks across services (duplicate names and VIPs). Every check runs; a value that
//! is wrong is reported and left out, and checks that depend on it are skipped so one
//! mistake gives one message.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
};

use super::{
    addr::{not_unicast, parse_endpoint},
    backend::{backends, Backends},
    defaults::{defaults, Defaults},
    error::Reporter,
    model::{
        Config, DaemonSettings, Family, Forwarding, Origin, Place, Protocol, Scheduler, ServiceKey,
        ServiceSpec, Tunnel, TunnelChecksum, TunnelEncap, UdpStaleFlows,
    },
    policy::{flags, health, persistence, tunnel},
    raw::{Field, Sp, Table},
    suggest,
};

const TOP_KEYS: &[&str] = &[
    "daemon",
    "dataplane",
    "xdp",
    "socket",
    "dns",
    "defaults",
    "service",
];
/// What a drop-in file (`conf.d/*.toml`) may hold.
const DROP_IN_KEYS: &[&str] = &["service"];
const DAEMON_KEYS: &[&str] = &["vip_interface", "drain_timeout", "metrics_address"];
pub(crate) const DEFAULTS_KEYS: &[&str] = &["scheduler", "drain_timeout", "health"];
const SERVICE_KEYS: &[&str] = &[
    "name",
    "vip",
    "fwmark",
    "family",
    "protocol",
    "scheduler",
    "forwarding",
    "tunnel",
    "persistence",
    "flags",
    "drain_timeout",
    "udp_stale_flows",
    "backend",
    "health",
];
const FORWARDING_NAMES: &[&str] = &["masq", "tunnel", "route"];

/// The most services a config may declare: the connection watcher's VIP map in the
/// kernel (`VIPS` in the kernel programs) holds this many VIPs, and a service past it
/// would be balanced but never watched.
pub const MAX_SERVICES: usize = 4096;

/// What the main file sets for every service: `[daemon]`, the data plane and
/// `[defaults]`.
struct Context {
    daemon: DaemonSettings,
    xdp: bool,
    socket: bool,
    defaults: Defaults,
}

/// Builds the config from the main file (`roots[0]`) and its drop-ins, in order; `None`
/// for a file whose TOML did not parse. Problems go to the file's reporter in `rs` (the
/// result is only meaningful if there are none).
pub(crate) fn config_set(roots: &[Option<Table<'_>>], rs: &mut [Reporter<'_>]) -> Config {
    let Some(Some(main)) = roots.first() else {
        // The main file's syntax error is reported; without its settings the drop-ins
        // cannot be judged.
        return Config::default();
    };
    let r = &mut rs[0];
    main.deny_unknown(TOP_KEYS, r);
    let daemon = main
        .get("daemon")
        .and_then(|f| f.table("in [daemon]", r))
        .map(|t| daemon(t, r))
        .unwrap_or_default();
    let dataplane = super::dataplane::dataplane(*main, r);
    let xdp = dataplane.xdp().is_some();
    let socket = dataplane.socket().is_some();
    let dns = main
        .get("dns")
        .and_then(|f| f.table("in [dns]", r))
        .map(|t| super::dns::dns_settings(t, r))
        .unwrap_or_default();
    let daemon_table = main.get("daemon").and_then(|f| f.item_table("in [daemon]"));
    let defaults = main
        .get("defaults")
        .and_then(|f| f.table("in [defaults]", r))
        .map(|t| defaults(t, daemon_table, xdp, socket, r))
        .unwrap_or_default();
    let cx = Context {
        daemon,
        xdp,
        socket,
        defaults,
    };

    let files: Vec<Vec<Table<'_>>> = roots
        .iter()
        .zip(rs.iter_mut())
        .enumerate()
        .map(|(file, (root, r))| {
            let Some(root) = root else { return Vec::new() };
            if file > 0 {
                drop_in_keys(*root, r);
            }
            root.get("service")
                .and_then(|f| f.tables("[[service]]", "in [[service]]", r))
                .unwrap_or_default()
        })
        .collect();
    let total: usize = files.iter().map(Vec::len).sum();
    let mut before = 0;
    let mut seen = Seen::default();
    let mut services = Vec::new();
    for (file, (tables, r)) in files.into_iter().zip(rs.iter_mut()).enumerate() {
        if let Some(extra) = MAX_SERVICES.checked_sub(before).and_then(|i| tables.get(i)) {
            r.error(
                extra.at,
                format!(
                    "{total} services: at most {MAX_SERVICES} (the kernel's VIP map holds that \
                     many); this is the first one over"
                ),
            );
        }
        before += tables.len();
        if xdp {
            for t in &tables {
                super::dataplane::xdp_restrictions(*t, r);
            }
        }
        if socket {
            for t in &tables {
                super::socket::restrictions(*t, r);
            }
        }
        services.extend(
            tables
                .into_iter()
                .filter_map(|t| service(t, &cx, &mut seen, file, r)),
        );
    }
    let vips = vip_offsets(&seen);
    vips_are_not_backends(&services, &vips, rs);
    let origin = Origin {
        file: rs[0].file().to_owned(),
        vips: vips
            .into_iter()
            .map(|(ip, (file, at))| {
                let place = Place {
                    file: rs[file].file().to_owned(),
                    location: rs[file].location(at),
                };
                (ip, place)
            })
            .collect(),
    };
    Config {
        daemon: cx.daemon,
        dataplane,
        dns,
        services,
        origin,
    }
}

/// A drop-in holds services only; the rest is the main file's.
fn drop_in_keys(root: Table<'_>, r: &mut Reporter<'_>) {
    for key in TOP_KEYS.iter().filter(|k| !DROP_IN_KEYS.contains(k)) {
        if let Some(f) = root.get(key) {
            r.error(
                f.at,
                format!(
                    "`{key}` belongs in the main config file: a drop-in file (conf.d/*.toml) \
                     holds only [[service]] tables"
                ),
            );
        }
    }
    root.deny_unknown(TOP_KEYS, r);
}

/// The first place (file, byte offset) each VIP address is written.
fn vip_offsets(seen: &Seen) -> BTreeMap<IpAddr, (usize, usize)> {
    let mut first: BTreeMap<IpAddr, (usize, usize)> = BTreeMap::new();
    for (key, declared) in &seen.keys {
        if let (ServiceKey::Addr { addr, .. }, Some(at)) = (key, declared.at) {
            let e = first.entry(addr.ip()).or_insert((declared.file, at));
            *e = (*e).min((declared.file, at));
        }
    }
    first
}

/// A VIP is routed to vipd's interface on this host, so it cannot also be a backend's
/// address: that backend would become unreachable.
fn vips_are_not_backends(
    services: &[ServiceSpec],
    vips: &BTreeMap<IpAddr, (usize, usize)>,
    rs: &mut [Reporter<'_>],
) {
    for (vip, (file, at)) in vips {
        let hit = services.iter().find_map(|s| {
            s.backends
                .iter()
                .find(|b| b.addr.ip() == *vip)
                .map(|b| (s.name.as_str(), b.addr))
        });
        if let Some((name, backend)) = hit {
            rs[*file].error(
                Some(*at),
                format!(
                    "VIP {vip} is also the address of backend {backend} of service {name:?}: \
                     a VIP is routed to vipd's interface on this host, so that backend would \
                     be unreachable"
                ),
            );
        }
    }
}

fn daemon(t: Table<'_>, r: &mut Reporter<'_>) -> DaemonSettings {
    t.deny_unknown(DAEMON_KEYS, r);
    let defaults = DaemonSettings::default();
    let vip_interface = t
        .get("vip_interface")
        .and_then(|f| f.str(r))
        .and_then(|s| match interface_name_problem(s.value) {
            None => Some(s.value.to_owned()),
            Some(why) => {
                r.error(s.at, format!("invalid vip_interface {:?}: {why}", s.value));
                None
            }
        })
        .unwrap_or(defaults.vip_interface);
    let drain_timeout = t
        .get("drain_timeout")
        .and_then(|f| f.duration(r))
        .map_or(defaults.drain_timeout, |d| d.value);
    let metrics_address = match t.get("metrics_address") {
        None => defaults.metrics_address,
        Some(f) => f
            .str(r)
            .and_then(|s| metrics_address(s, r))
            .unwrap_or(defaults.metrics_address),
    };
    DaemonSettings {
        vip_interface,
        drain_timeout,
        metrics_address,
    }
}

/// `"ip:port"` or `"off"`: `Some(None)` for off, `None` when invalid (reported).
fn metrics_address(s: Sp<&str>, r: &mut Reporter<'_>) -> Option<Option<SocketAddr>> {
    if s.value == "off" {
        return Some(None);
    }
    match s.value.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Some(Some(a)),
        Ok(_) => {
            r.error(
                s.at,
                format!(
                    "invalid metrics_address {:?}: port 0 (use 1..=65535, or \"off\" for no metrics endpoint)",
                    s.value
                ),
            );
            None
        }
        Err(_) => {
            r.error(
                s.at,
                format!(
                    "invalid metrics_address {:?}: expected \"ip:port\" such as \"127.0.0.1:9477\" or \"[::1]:9477\", or \"off\"",
                    s.value
                ),
            );
            None
        }
    }
}

/// What Linux refuses in an interface name (`dev_valid_name`), if anything.
pub(crate) fn interface_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name.len() > 15 {
        Some("longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("not a valid interface name")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains(':') {
        Some("contains ':'")
    } else if name.chars().any(char::is_whitespace) {
        Some("contains whitespace")
    } else {
        None
    }
}

/// What earlier services declared (in this file or an earlier one), for the duplicate
/// checks.
#[derive(Default)]
struct Seen {
    /// Name → where it is declared (`file:line:col`).
    names: HashMap<String, String>,
    keys: HashMap<ServiceKey, Declared>,
}

/// Where a service key was first declared.
struct Declared {
    /// The declaring service's name, if valid.
    name: Option<String>,
    /// `file:line:col`, for messages.
    place: String,
    /// Index of the file in the set, and the byte offset in it.
    file: usize,
    at: Option<usize>,
}

impl Seen {
    /// Reports a key declared before, else remembers it.
    fn key(&mut self, key: Sp<ServiceKey>, name: Option<&str>, file: usize, r: &mut Reporter<'_>) {
        match self.keys.get(&key.value) {
            Some(first) => {
                let by = first
                    .name
                    .as_ref()
                    .map(|n| format!("by service {n:?} "))
                    .unwrap_or_default();
                r.error(
                    key.at,
                    format!(
                        "duplicate VIP {} (first declared {by}at {})",
                        key.value, first.place
                    ),
                );
            }
            None => {
                let declared = Declared {
                    name: name.map(str::to_owned),
                    place: r.place(key.at),
                    file,
                    at: key.at,
                };
                self.keys.insert(key.value, declared);
            }
        }
    }
}

/// Which traffic a service carries, for the UDP-only settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Traffic {
    Tcp,
    Udp,
    /// A fwmark service: any protocol.
    Any,
    /// Not known because of another error; checks that need it are skipped.
    Unknown,
}

/// The identity of a service: its key, and what is known of it when the key is invalid.
struct Identity {
    key: Option<Sp<ServiceKey>>,
    family: Option<Family>,
    traffic: Traffic,
    fwmark: bool,
}

fn service(
    t: Table<'_>,
    cx: &Context,
    seen: &mut Seen,
    file: usize,
    r: &mut Reporter<'_>,
) -> Option<ServiceSpec> {
    let xdp = cx.xdp;
    let socket = cx.socket;
    t.deny_unknown(SERVICE_KEYS, r);
    let name = service_name(t, seen, r);
    let id = identity(t, name.as_ref().map(|n| n.value.as_str()), r);
    if let Some(key) = id.key {
        seen.key(key, name.as_ref().map(|n| n.value.as_str()), file, r);
    }

    let scheduler = match t.get("scheduler") {
        None if socket => Some(cx.defaults.scheduler_or(super::socket::STORED)),
        None => Some(cx.defaults.scheduler(xdp)),
        // With socket, other names are reported by `socket::restrictions`.
        Some(f) if socket => super::socket::scheduler(f, false, r),
        // With xdp, IPVS names are reported by `xdp_restrictions`.
        Some(f) => super::dataplane::maglev(f, xdp, r).unwrap_or_else(|| {
            f.keyword("scheduler", Scheduler::NAMES, Scheduler::from_name, r)
                .map(|s| s.value)
        }),
    };
    let method = match t.get("forwarding") {
        None => Some("masq"),
        Some(f) => forwarding_method(f, r),
    };
    // `None`: no `tunnel` table; `Some(None)`: an invalid one (reported).
    let tunnel_settings = t.get("tunnel").map(|f| {
        if let Some(m) = method.filter(|m| *m != "tunnel") {
            r.error(
                f.at,
                format!(
                    "`tunnel` is only allowed with forwarding = \"tunnel\" (this service uses {m:?})"
                ),
            );
        }
        tunnel(f, r)
    });
    let forwarding = match method {
        Some("masq") => Some(Forwarding::Masq),
        Some("route") => Some(Forwarding::Route),
        Some(_) => match tunnel_settings {
            None => Some(Forwarding::Tunnel(Tunnel {
                encap: TunnelEncap::Ipip,
                checksum: TunnelChecksum::None,
            })),
            Some(settings) => settings.map(Forwarding::Tunnel),
        },
        None => None,
    };
    // With xdp it is reported by its restrictions, once; the socket plane keeps
    // persistence itself (`sock_affinity` in the kernel programs).
    let persistence = t
        .get("persistence")
        .filter(|_| !xdp)
        .map(|f| persistence(f, id.family, r));
    // With xdp or socket these are reported by their restrictions, once.
    let flags = t
        .get("flags")
        .filter(|_| !xdp && !socket)
        .map_or(Some(Default::default()), |f| {
            flags(f, scheduler, id.traffic, r)
        });
    let drain_timeout = t
        .get("drain_timeout")
        .map_or(Some(cx.defaults.drain_timeout(&cx.daemon)), |f| {
            f.duration(r).map(|d| d.value)
        });
    let udp_stale_flows = udp_stale_flows(t, id.traffic, r);
    let backends = t.get("backend").map_or(Some(Default::default()), |f| {
        backends(
            f,
            &Backends {
                family: id.family,
                vip_port: match id.key.map(|k| k.value) {
                    Some(ServiceKey::Addr { addr, .. }) => Some(addr.port()),
                    _ => None,
                },
                vip: id.key.map(|k| k.value.to_string()),
                fwmark: id.fwmark,
                method,
            },
            r,
        )
    });
    let health = match t.get("health") {
        None => Some(None),
        Some(f) => health(f, id.traffic, r).map(Some),
    }
    .and_then(|own| cx.defaults.health(own, t, r));

    Some(ServiceSpec {
        name: name?.value,
        key: id.key?.value,
        scheduler: scheduler?,
        forwarding: forwarding?,
        persistence: persistence.map_or(Some(None), |p| p.map(Some))?,
        flags: flags?,
        drain_timeout: drain_timeout?,
        udp_stale_flows: udp_stale_flows?,
        backends: backends.as_ref()?.0.clone(),
        dns: backends?.1,
        health: health?,
    })
}

fn service_name(t: Table<'_>, seen: &mut Seen, r: &mut Reporter<'_>) -> Option<Sp<String>> {
    let Some(f) = t.get("name") else {
        r.error(t.at, "service has no `name`");
        return None;
    };
    let s = f.str(r)?;
    let valid = (1..=64).contains(&s.value.len())
        && s.value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !valid {
        r.error(
            s.at,
            format!(
                "invalid service name {:?}: use 1 to 64 characters from A-Z a-z 0-9 _ . -",
                s.value
            ),
        );
        return None;
    }
    if let Some(first) = seen.names.get(s.value) {
        r.error(
            s.at,
            format!(
                "duplicate service name {:?} (first declared at {first})",
                s.value
            ),
        );
        return None;
    }
    seen.names.insert(s.value.to_owned(), r.place(s.at));
    Some(Sp {
        value: s.value.to_owned(),
        at: s.at,
    })
}

/// `vip` (+ `protocol`) or `fwmark` + `family`.
fn identity(t: Table<'_>, name: Option<&str>, r: &mut Reporter<'_>) -> Identity {
    let who = name.map_or("service".to_owned(), |n| format!("service {n:?}"));
    let (vip, fwmark) = (t.get("vip"), t.get("fwmark"));
    if let (Some(_), Some(m)) = (vip, fwmark) {
        r.error(
            m.at,
            format!("{who} has both `vip` and `fwmark`; a service has exactly one"),
        );
    }
    if let Some(v) = vip {
        if let Some(f) = t.get("family").filter(|_| fwmark.is_none()) {
            r.error(
                f.at,
                "`family` is only used with `fwmark` (a VIP service has its address's family)",
            );
        }
        let protocol = match t.get("protocol") {
            None => Some(Protocol::Tcp),
            Some(f) => f
                .keyword("protocol", Protocol::NAMES, Protocol::from_name, r)
                .map(|p| p.value),
        };
        let addr = v.str(r).and_then(|s| {
            match parse_endpoint(s.value, "VIP", false) {
                // The port is always there: it is required.
                Ok((ip, port)) => match not_unicast(ip) {
                    None => Some(Sp {
                        value: SocketAddr::new(ip, port.unwrap_or_default()),
                        at: s.at,
                    }),
                    Some(kind) => {
                        r.error(s.at, format!("VIP {:?} is a {kind} address", s.value));
                        None
                    }
                },
                Err(message) => {
                    r.error(s.at, message);
                    None
                }
            }
        });
        return Identity {
            key: addr.zip(protocol).map(|(a, protocol)| Sp {
                value: ServiceKey::Addr {
                    protocol,
                    addr: a.value,
                },
                at: a.at,
            }),
            family: addr.map(|a| Family::of(a.value.ip())),
            traffic: match protocol {
                Some(Protocol::Tcp) => Traffic::Tcp,
                Some(Protocol::Udp) => Traffic::Udp,
                None => Traffic::Unknown,
            },
            fwmark: false,
        };
    }
    let Some(m) = fwmark else {
        r.error(t.at, format!("{who} has neither `vip` nor `fwmark`"));
        return Identity {
            key: None,
            family: None,
            traffic: Traffic::Unknown,
            fwmark: false,
        };
    };
    if let Some(p) = t.get("protocol") {
        r.error(
            p.at,
            "`protocol` is not allowed with `fwmark` (a fwmark service matches every protocol)",
        );
    }
    let mark = m.int_in("fwmark", 1, i64::from(u32::MAX), r);
    let family = match t.get("family") {
        Some(f) => f
            .keyword("family", Family::NAMES, Family::from_name, r)
            .map(|f| f.value),
        None => {
            r.error(
                m.at,
                "a fwmark service needs `family = \"ipv4\"` or `family = \"ipv6\"`",
            );
            None
        }
    };
    Identity {
        key: mark.zip(family).map(|(mark, family)| Sp {
            value: ServiceKey::Fwmark {
                family,
                mark: u32::try_from(mark.value).unwrap_or(u32::MAX),
            },
            at: mark.at,
        }),
        family,
        traffic: Traffic::Any,
        fwmark: true,
    }
}

/// `masq`, `tunnel` or `route`; other spellings (`nat`, `dr`, ...) get a suggestion.
fn forwarding_method(f: Field<'_>, r: &mut Reporter<'_>) -> Option<&'static str> {
    let s = f.str(r)?;
    if let Some(m) = FORWARDING_NAMES.iter().find(|m| **m == s.value) {
        return Some(m);
    }
    let alias = match s.value.to_ascii_lowercase().as_str() {
        "nat" | "snat" | "masquerade" | "masquerading" | "m" => Some("masq"),
        "dr" | "direct" | "direct-routing" | "droute" | "gatewaying" | "gate" | "g" | "routing" => {
            Some("route")
        }
        "tun" | "tunnelling" | "tunneling" | "ipip" | "gue" | "gre" | "i" => Some("tunnel"),
        _ => suggest::closest(s.value, FORWARDING_NAMES),
    };
    r.error(
        s.at,
        format!(
            "unknown forwarding method {:?} {}",
            s.value,
            suggest::expected(FORWARDING_NAMES, alias.map(|a| format!("{a:?}")))
        ),
    );
    None
}

/// `Some(setting)` when valid: `Some(None)` for TCP services.
fn udp_stale_flows(
    t: Table<'_>,
    traffic: Traffic,
    r: &mut Reporter<'_>,
) -> Option<Option<UdpStaleFlows>> {
    let default = (traffic != Traffic::Tcp).then_some(UdpStaleFlows::Expire);
    let Some(f) = t.get("udp_stale_flows") else {
        return Some(default);
    };
    let value = f.keyword(
        "udp_stale_flows setting",
        UdpStaleFlows::NAMES,
        UdpStaleFlows::from_name,
        r,
    )?;
    if traffic == Traffic::Tcp {
        r.error(
            f.at,
            "`udp_stale_flows` only applies to UDP services (this service is tcp)",
        );
        return None;
    }
    Some(Some(value.value))
}
