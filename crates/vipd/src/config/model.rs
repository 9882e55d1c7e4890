//! The desired state: fully validated, typed, independent of the IPVS library.

use std::{collections::BTreeSet, fmt, net::IpAddr, net::SocketAddr, time::Duration};

/// An enum whose values are spelled as fixed words in the config file.
macro_rules! keywords {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every spelling accepted in the config file, in documentation order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The spelling used in the config file.
            pub const fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )+ }
            }

            /// The value spelled `name` in the config file.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $text => Some($name::$variant), )+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keywords! {
    /// Transport protocol of an address service.
    pub enum Protocol {
        Tcp = "tcp",
        Udp = "udp",
    }
}

keywords! {
    /// Address family (of a fwmark service; address services take their VIP's).
    pub enum Family {
        Ipv4 = "ipv4",
        Ipv6 = "ipv6",
    }
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// The longest prefix length: 32 or 128.
    pub const fn max_prefix(self) -> u8 {
        match self {
            Family::Ipv4 => 32,
            Family::Ipv6 => 128,
        }
    }

    /// "IPv4" or "IPv6", for messages.
    pub const fn label(self) -> &'static str {
        match self {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        }
    }
}

keywords! {
    /// IPVS scheduler (the kernel module `ip_vs_<name>`).
    pub enum Scheduler {
        RoundRobin = "rr",
        WeightedRoundRobin = "wrr",
        LeastConnection = "lc",
        WeightedLeastConnection = "wlc",
        LocalityBasedLeastConnection = "lblc",
        LocalityBasedLeastConnectionReplication = "lblcr",
        DestinationHashing = "dh",
        SourceHashing = "sh",
        ShortestExpectedDelay = "sed",
        NeverQueue = "nq",
        WeightedFailover = "fo",
        WeightedOverflow = "ovf",
        MaglevHashing = "mh",
        TwoRandomChoices = "twos",
    }
}

impl Scheduler {
    /// `ipvsadm`'s default.
    pub const DEFAULT: Scheduler = Scheduler::WeightedLeastConnection;
}

keywords! {
    /// Service flags a user may set. `persistent` is implied by [`ServiceSpec::persistence`].
    pub enum ServiceFlag {
        /// One-packet scheduling: every UDP datagram is scheduled on its own.
        OnePacket = "one-packet",
        /// `sh`: pick another destination when the hashed one is unavailable.
        ShFallback = "sh-fallback",
        /// `sh`: hash the source port too.
        ShPort = "sh-port",
        /// `mh`: pick another destination when the hashed one is unavailable.
        MhFallback = "mh-fallback",
        /// `mh`: hash the source port too.
        MhPort = "mh-port",
    }
}

impl ServiceFlag {
    /// The scheduler this flag belongs to, if it is scheduler-specific.
    pub const fn scheduler(self) -> Option<Scheduler> {
        match self {
            ServiceFlag::ShFallback | ServiceFlag::ShPort => Some(Scheduler::SourceHashing),
            ServiceFlag::MhFallback | ServiceFlag::MhPort => Some(Scheduler::MaglevHashing),
            ServiceFlag::OnePacket => None,
        }
    }
}

keywords! {
    /// Checksum of a tunnel encapsulation (GUE, GRE).
    pub enum TunnelChecksum {
        None = "none",
        Csum = "csum",
        RemCsum = "remcsum",
    }
}

keywords! {
    /// What happens to the existing UDP flows of a backend that is removed or quarantined.
    pub enum UdpStaleFlows {
        /// Expire them, so the next datagrams are scheduled to a live backend.
        Expire = "expire",
        /// Keep them until they time out.
        Keep = "keep",
    }
}

/// Tunnel encapsulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelEncap {
    /// IP-in-IP (the default).
    Ipip,
    /// Generic UDP Encapsulation to `port` (1..=65535).
    Gue { port: u16 },
    /// GRE.
    Gre,
}

/// Tunnel settings of a `forwarding = "tunnel"` service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tunnel {
    pub encap: TunnelEncap,
    /// Always [`TunnelChecksum::None`] for IPIP; never `RemCsum` for GRE.
    pub checksum: TunnelChecksum,
}

/// How packets reach the backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forwarding {
    /// NAT (`ipvsadm -m`), the default. The only method that can change the port.
    Masq,
    /// Encapsulation (`ipvsadm -i`). Backends may be of the other address family.
    Tunnel(Tunnel),
    /// Direct routing (`ipvsadm -g`).
    Route,
}

impl Forwarding {
    /// The spelling used in the config file: `masq`, `tunnel` or `route`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Forwarding::Masq => "masq",
            Forwarding::Tunnel(_) => "tunnel",
            Forwarding::Route => "route",
        }
    }
}

impl fmt::Display for Forwarding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies a virtual service; unique within a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKey {
    /// A VIP: protocol, address and port (1..=65535).
    Addr {
        protocol: Protocol,
        addr: SocketAddr,
    },
    /// A firewall mark (1..=u32::MAX) of a family; matches every protocol.
    Fwmark { family: Family, mark: u32 },
}

impl ServiceKey {
    pub fn family(&self) -> Family {
        match self {
            ServiceKey::Addr { addr, .. } => Family::of(addr.ip()),
            ServiceKey::Fwmark { family, .. } => *family,
        }
    }
}

impl fmt::Display for ServiceKey {
    /// `198.18.0.10:80/tcp`, `[fd00:18::10]:53/udp`, `fwmark 5/ipv4`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Addr { protocol, addr } => write!(f, "{addr}/{protocol}"),
            ServiceKey::Fwmark { family, mark } => write!(f, "fwmark {mark}/{family}"),
        }
    }
}

/// Persistence (`ipvsadm -p`): clients stick to one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Persistence {
    /// Whole seconds, 1s..=31 days.
    pub timeout: Duration,
    /// Client netmask as a prefix length: 0..=32 for IPv4, 1..=128 for IPv6 (what the
    /// kernel accepts). Defaults to the full length.
    pub netmask: u8,
}

/// A real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendSpec {
    /// Address and port. The port is 1..=65535, except on fwmark services where 0 means
    /// "keep the packet's destination port" (written without a port in the config). With
    /// `route` or `tunnel` forwarding it always equals the VIP's port (0 for fwmark).
    pub addr: SocketAddr,
    /// 0..=65535; 0 means administratively drained.
    pub weight: u16,
    /// Connection upper threshold; 0 means none.
    pub upper_threshold: u32,
    /// Connection lower threshold; never above `upper_threshold`.
    pub lower_threshold: u32,
}

/// What a DNS backend asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DnsQuery {
    /// A and/or AAAA records (those of the service's family; both with tunnel
    /// forwarding), each address with this port.
    Host { port: u16 },
    /// SRV records (`_service._proto.name`): each target's addresses with the record's
    /// port and weight.
    Srv,
}

/// A backend set from DNS (`{ dns = "name", port = 8080 }` or `{ srv = "_x._tcp.name" }`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsBackend {
    /// A valid DNS name, lower case, without the trailing dot.
    pub name: String,
    pub query: DnsQuery,
    /// The weight of every backend from this name; `None`: 1 for A/AAAA, the record's
    /// weight for SRV (an SRV weight of 0 counts as 1: IPVS weight 0 takes no traffic).
    pub weight: Option<u16>,
}

/// How vipd resolves DNS backends (`[dns]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Ask this server (UDP, then TCP for truncated answers) instead of the ones in
    /// /etc/resolv.conf.
    pub server: Option<SocketAddr>,
    /// A name is resolved again when its answer's TTL runs out, but never sooner than
    /// this after the last answer...
    pub min_refresh: Duration,
    /// ... and never later than this.
    pub max_refresh: Duration,
    /// How long one resolution may take before it counts as failed.
    pub timeout: Duration,
    /// What an empty answer or NXDOMAIN does to the backends from that name.
    pub on_empty: OnEmpty,
}

impl DnsSettings {
    pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(5);
    pub const DEFAULT_MAX_REFRESH: Duration = Duration::from_secs(300);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            server: None,
            min_refresh: Self::DEFAULT_MIN_REFRESH,
            max_refresh: Self::DEFAULT_MAX_REFRESH,
            timeout: Self::DEFAULT_TIMEOUT,
            on_empty: OnEmpty::Keep,
        }
    }
}

keywords! {
    /// The rule for an empty answer or NXDOMAIN (an authoritative "there is none").
    pub enum OnEmpty {
        /// Keep the last good set (the default): a mistake in the zone does not empty a
        /// service.
        Keep = "keep",
        /// Remove the name's backends (they drain as config removals do), unless that
        /// would leave the service with no backend at all: then the last set is kept and
        /// status says so.
        Remove = "remove",
    }
}

/// The per-service health policy (`[service.health]`); the semantics are in
/// [`crate::health`]. `None` fields take the defaults of [`crate::health::Policy`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HealthPolicy {
    /// >= 1.
    pub refuse_threshold: Option<u32>,
    /// >= 1.
    pub retransmit_threshold: Option<u32>,
    /// > 0, and <= `max_ejection` when both are set.
    pub base_ejection: Option<Duration>,
    /// > 0.
    pub max_ejection: Option<Duration>,
    /// 0..=100.
    pub max_ejection_percent: Option<u8>,
    /// 0..=100.
    pub panic_threshold: Option<u8>,
    pub slow_start: Option<Duration>,
    /// Probe (TCP: one connect; UDP: one `udp_probe` datagram) before re-admitting a
    /// backend after a quarantine. Never `Some(true)` on a UDP service without
    /// `udp_probe`.
    pub probe: Option<bool>,
    /// > 0.
    pub probe_timeout: Option<Duration>,
    /// Periodic active checks; `None`: none. TCP: a connect. UDP: the `udp_probe`
    /// datagram, answered (set only when `udp_probe` is).
    pub check: Option<ActiveCheck>,
    /// UDP: a backend that gets datagrams but sends no reply for this long is silent
    /// (a failure). `None`: silence is not watched. Never set on a TCP service.
    pub silence_window: Option<Duration>,
    /// TCP: the initial SYN retransmission timeout of clients' connections to the VIP
    /// (fixed or adaptive), within [`crate::config::SYN_RTO_MIN`]..=[`crate::config::SYN_RTO_MAX`]. `None`: the kernel's default (1 s).
    /// Never set on a UDP or fwmark service.
    pub syn_rto: Option<crate::config::SynRto>,
    /// UDP: what active checks and probation probes send and expect back. Never set on
    /// a TCP service.
    pub udp_probe: Option<UdpProbe>,
}

/// A UDP check: send `payload` to the backend, pass on a reply that starts with
/// `expect` (any reply when empty) within the timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UdpProbe {
    pub payload: Vec<u8>,
    pub expect: Vec<u8>,
}

/// `check = { interval = "2s", timeout = "1s", fall = 2, rise = 1 }`: periodic TCP
/// connects to every backend of the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ActiveCheck {
    /// > 0.
    pub interval: Duration,
    /// > 0 and <= `interval`.
    pub timeout: Duration,
    /// >= 1: consecutive failed checks that quarantine a backend.
    pub fall: u32,
    /// >= 1: consecutive passed checks that re-admit a backend on probation.
    pub rise: u32,
}

impl ActiveCheck {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_FALL: u32 = 2;
    pub const DEFAULT_RISE: u32 = 1;
}

impl Default for ActiveCheck {
    fn default() -> Self {
        ActiveCheck {
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
            fall: Self::DEFAULT_FALL,
            rise: Self::DEFAULT_RISE,
        }
    }
}

/// One virtual service and its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Unique, `[A-Za-z0-9_.-]{1,64}`.
    pub name: String,
    pub key: ServiceKey,
    pub scheduler: Scheduler,
    pub forwarding: Forwarding,
    pub persistence: Option<Persistence>,
    /// Each valid for the scheduler; `one-packet` only on UDP and fwmark services.
    pub flags: BTreeSet<ServiceFlag>,
    /// How long a removed backend drains at weight 0 before deletion (the service's
    /// `drain_timeout`, else `[daemon]`'s).
    pub drain_timeout: Duration,
    /// `Some` for UDP and fwmark services (default [`UdpStaleFlows::Expire`]), `None` for
    /// TCP services.
    pub udp_stale_flows: Option<UdpStaleFlows>,
    /// Unique addresses, in file order; may be empty.
    pub backends: Vec<BackendSpec>,
    /// Backends from DNS names, in file order, each name once; never on a fwmark
    /// service. Resolved by the daemon, which adds their addresses to `backends`.
    pub dns: Vec<DnsBackend>,
    pub health: Option<HealthPolicy>,
}

/// Daemon-wide settings (`[daemon]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// The dummy interface that holds the VIPs; a valid Linux interface name.
    pub vip_interface: String,
    /// Default [`ServiceSpec::drain_timeout`].
    pub drain_timeout: Duration,
    /// Where the Prometheus metrics endpoint listens; `None` (`"off"`): no endpoint.
    pub metrics_address: Option<SocketAddr>,
}

impl DaemonSettings {
    pub const DEFAULT_VIP_INTERFACE: &'static str = "vipd0";
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
    pub const DEFAULT_METRICS_ADDRESS: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        9477,
    ));
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            vip_interface: Self::DEFAULT_VIP_INTERFACE.to_owned(),
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            metrics_address: Some(Self::DEFAULT_METRICS_ADDRESS),
        }
    }
}

/// Settings of the XDP data plane (`[xdp]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpSettings {
    /// The balancer's interface, where `vipd_xdp_lb` is attached; a valid Linux
    /// interface name.
    pub interface: String,
    /// Pin the flow table and the other state maps under [`XdpSettings::PIN_DIR`], so a
    /// restarted vipd keeps every flow on its backend (default true).
    pub pin_maps: bool,
}

impl XdpSettings {
    pub const PIN_DIR: &'static str = "/sys/fs/bpf/vipd";
}

/// Settings of the socket data plane (`[socket]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSettings {
    /// The cgroup v2 directory whose processes (and its descendants') are balanced:
    /// the cgroup programs attach there.
    pub cgroup: std::path::PathBuf,
}

impl SocketSettings {
    /// The cgroup v2 root of a hybrid layout, as systemd mounts it.
    pub const HYBRID_ROOT: &'static str = "/sys/fs/cgroup/unified";
    /// The cgroup v2 root of a unified layout.
    pub const UNIFIED_ROOT: &'static str = "/sys/fs/cgroup";
    /// Where the programs' links and the state maps are pinned.
    pub const PIN_DIR: &'static str = "/sys/fs/bpf/vipd/socket";

    /// The cgroup v2 root of this host: `/sys/fs/cgroup/unified` where a hybrid
    /// layout mounts it, else `/sys/fs/cgroup`.
    pub fn default_cgroup() -> std::path::PathBuf {
        let hybrid = std::path::Path::new(Self::HYBRID_ROOT);
        if hybrid.join("cgroup.procs").exists() {
            hybrid.to_path_buf()
        } else {
            std::path::PathBuf::from(Self::UNIFIED_ROOT)
        }
    }
}

/// Which data plane balances the services (`dataplane`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Dataplane {
    /// The kernel's IPVS (the default).
    #[default]
    Ipvs,
    /// vipd's XDP program on one interface.
    Xdp(XdpSettings),
    /// vipd's cgroup programs, translating VIPs when sockets connect or send.
    Socket(SocketSettings),
}

impl Dataplane {
    /// `"ipvs"`, `"xdp"` or `"socket"`, as in the config file.
    pub const NAMES: &'static [&'static str] = &["ipvs", "xdp", "socket"];

    pub fn xdp(&self) -> Option<&XdpSettings> {
        match self {
            Dataplane::Xdp(x) => Some(x),
            _ => None,
        }
    }

    pub fn socket(&self) -> Option<&SocketSettings> {
        match self {
            Dataplane::Socket(s) => Some(s),
            _ => None,
        }
    }

    /// `"ipvs"`, `"xdp"` or `"socket"`.
    pub fn name(&self) -> &'static str {
        match self {
            Dataplane::Ipvs => "ipvs",
            Dataplane::Xdp(_) => "xdp",
            Dataplane::Socket(_) => "socket",
        }
    }
}

/// A validated config: the desired state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonSettings,
    pub dataplane: Dataplane,
    pub dns: DnsSettings,
    /// In file order; names and keys are unique.
    pub services: Vec<ServiceSpec>,
    /// Where it was written, for problems found later against the host.
    pub origin: Origin,
}

/// Where a config came from and where each VIP is first written in it, so that a
/// problem found against the host (a VIP that is already a local address, say) is
/// reported at file:line:col like any other. Not part of what a config says: two
/// configs that differ only in their origin are equal.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The main config file.
    pub file: String,
    /// Where each VIP is first written: the main file or a drop-in.
    pub vips: std::collections::BTreeMap<IpAddr, Place>,
}

/// A place in one of the config's files.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub file: String,
    pub location: super::Location,
}

impl PartialEq for Origin {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Origin {}

impl Origin {
    /// `file:line:col: VIP <vip> <problem>` (without a location if the VIP is unknown).
    pub fn diagnostic(&self, vip: IpAddr, problem: &str) -> super::Diagnostic {
        let place = self.vips.get(&vip);
        super::Diagnostic {
            file: place.map_or_else(|| self.file.clone(), |p| p.file.clone()),
            location: place.map(|p| p.location),
            message: format!("VIP {vip} {problem}"),
        }
    }
}

impl Config {
    /// Backends over all services.
    pub fn backend_count(&self) -> usize {
        self.services.iter().map(|s| s.backends.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip() {
        for name in Scheduler::NAMES {
            assert_eq!(Scheduler::from_name(name).unwrap().as_str(), *name);
        }
        assert_eq!(Scheduler::NAMES.len(), 14);
        assert_eq!(Scheduler::from_name("WRR"), None);
        assert_eq!(ServiceFlag::from_name("sh-port"), Some(ServiceFlag::ShPort));
    }

    #[test]
    fn service_keys_display_like_ipvsadm() {
        let tcp = ServiceKey::Addr {
            protocol: Protocol::Tcp,
            addr: "198.18.0.10:80".parse().unwrap(),
        };
        let udp6 = ServiceKey::Addr {
            protocol: Protocol::Udp,
            addr: "[fd00:18::10]:53".parse().unwrap(),
        };
        let mark = ServiceKey::Fwmark {
            family: Family::Ipv6,
            mark: 5,
        };
        assert_eq!(tcp.to_string(), "198.18.0.10:80/tcp");
        assert_eq!(udp6.to_string(), "[fd00:18::10]:53/udp");
        assert_eq!(mark.to_string(), "fwmark 5/ipv6");
        assert_eq!(udp6.family(), Family::Ipv6);
    }
}
