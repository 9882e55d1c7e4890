//! A small network inside the VM, shaped like a real one. The VM's root namespace is the
//! client host: one uplink (veth `vup0`) to a router (namespace `vr`), default routes
//! through it, and an ordinary stateful firewall (nftables, after Debian's workstation
//! example: replies to what the host opened come in, nothing else is opened). Each
//! backend is a namespace (`vb1`, ...) on a link of its own to the router; beyond that
//! link it routes only to the client subnet, so it never hears of the VIP ranges and
//! answers the client host's own address, as a backend on another host does. The router
//! forwards and knows its connected subnets only.
//!
//! ```text
//!  client host (root ns)        router (vr)                     backend vb<i>
//!  vup0 198.18.250.2/24 ------- c0 198.18.250.1/24
//!       fd00:18:fa::2/64           fd00:18:fa::1/64
//!                               b<i> 198.18.<i>.1/24 ---------- eth0 198.18.<i>.2/24
//!                                    fd00:18:<i>::1/64               fd00:18:<i>::2/64
//! ```
//!
//! Every link carries both families, whichever [`Family`] the lab's VIP and backend
//! addresses are of. The VIPs (198.18.0.x, fd00:18::x) are nowhere in this network: the
//! system under test makes them reachable on the client host as vipd does, with a host
//! route through a dummy device (not a local address; so connections through a VIP leave
//! from the client's own address). For services made with ipvsadm directly,
//! [`Lab::ipvsadm_service`] and the like do the same by hand ([`expose_vip`]).
//!
//! Addresses are from the benchmarking range 198.18.0.0/15 and the ULA fd00:18::/32, all
//! inside namespaces this lab creates (the VM has no other network device). No address
//! anywhere goes through duplicate address detection. Dropping the lab removes
//! everything it made.
//!
//! Outside the VM (the native demo on a development host, [`Lab::namespaced`]) the client
//! host is a namespace of its own too, so that the lab never touches the host's own
//! networking: the same uplink, addresses, routes and firewall, inside it, and every
//! namespace's name starts with a prefix of the caller's ([`Place`]).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use crate::{
    dns::server::Dnsmasq,
    servers::{Kind, Listening, UdpServer},
    sh,
};

/// The router's namespace in the VM's lab ([`Place::vm`]).
pub const ROUTER_NS: &str = "vr";
/// The client host's uplink to the router (its peer in the router is `c0`).
pub const UPLINK: &str = "vup0";
const ROUTER_DOWNLINK: &str = "c0";
/// The dummy device [`route_vip`] routes VIPs through (vipd has its own, `vipd0`).
pub const VIP_ROUTE_DEV: &str = "vipdlab0";
/// The client host's firewall: an nftables table of family `inet`.
pub const FIREWALL_TABLE: &str = "vipdlab_fw";

/// The client host's addresses, on its uplink.
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 2);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0xfa, 0, 0, 0, 0, 2);
/// The router's addresses on the client subnet: the client's default gateways.
const GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 1);
const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0xfa, 0, 0, 0, 0, 1);
/// The client subnet, the one place backends route to beyond their link.
const CLIENT_NET_V4: &str = "198.18.250.0/24";
const CLIENT_NET_V6: &str = "fd00:18:fa::/64";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Whether the client host runs its firewall ([`Lab::new_with`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Firewall {
    /// Input policy drop; loopback, established and related traffic, and the ICMP a
    /// host needs come in, nothing else (as on an ordinary workstation).
    #[default]
    On,
    /// No filtering at all on the client host.
    Off,
}

pub struct Backend {
    pub ns: String,
    /// The backend's address in the lab's family (it has one of the other family too).
    pub addr: IpAddr,
}

/// Where a lab's hosts are: the names of its namespaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The client host's namespace; None: the root namespace (the VM's).
    pub client_ns: Option<String>,
    /// The router's namespace.
    pub router_ns: String,
    /// Backend `i` (from 1) is namespace `<backend_prefix><i>`.
    pub backend_prefix: String,
}

impl Place {
    /// The VM's lab: the client host is the root namespace; [`ROUTER_NS`], `vb1`...
    pub fn vm() -> Place {
        Place {
            client_ns: None,
            router_ns: ROUTER_NS.to_string(),
            backend_prefix: "vb".to_string(),
        }
    }

    /// Every host in a namespace: `<prefix>c` (the client host), `<prefix>r`,
    /// `<prefix>b1`...
    pub fn namespaced(prefix: &str) -> Place {
        Place {
            client_ns: Some(format!("{prefix}c")),
            router_ns: format!("{prefix}r"),
            backend_prefix: format!("{prefix}b"),
        }
    }

    fn backend_ns(&self, i: u8) -> String {
        format!("{}{i}", self.backend_prefix)
    }

    /// `ip netns exec <client ns> `, or nothing for the root namespace: the prefix of
    /// a command the client host runs.
    pub fn on_client(&self) -> String {
        exec_in(self.client_ns.as_deref())
    }
}

pub struct Lab {
    pub family: Family,
    /// Where its hosts are (the VM's root namespace is the client host, or not).
    pub place: Place,
    pub backends: Vec<Backend>,
    pub vip: IpAddr,
    pub firewall: Firewall,
    /// Every TCP server the lab started, so that faults can stop and restart them.
    pub(crate) servers: Mutex<Vec<Served>>,
    /// Every UDP server the lab started ([`Lab::serve_udp_name`], [`Lab::serve_udp_peer`]).
    pub(crate) udp: Mutex<Vec<UdpServer>>,
    /// Every DNS server the lab started ([`Lab::serve_dns`]).
    pub(crate) dns: Mutex<Vec<Dnsmasq>>,
}

/// A TCP server the lab started on a backend: what it is, and its listener while it runs.
pub(crate) struct Served {
    pub backend: usize,
    /// The address its listener is bound to.
    pub bind: SocketAddr,
    pub kind: Kind,
    pub running: Option<Listening>,
}

/// One family's addresses of backend `i`'s link: the router's side, the backend's, the
/// prefix length, and the client subnet with the backend's route to it.
struct Link {
    router: String,
    backend: String,
    plen: u8,
    client_net: &'static str,
}

impl Family {
    pub fn vip(self) -> IpAddr {
        match self {
            Family::V4 => "198.18.0.10".parse().unwrap(),
            Family::V6 => "fd00:18::10".parse().unwrap(),
        }
    }

    /// The client host's address in this family (the source of its connections, through
    /// a VIP or not).
    pub fn client(self) -> IpAddr {
        match self {
            Family::V4 => CLIENT_V4.into(),
            Family::V6 => CLIENT_V6.into(),
        }
    }

    fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The prefix length of one address: 32 or 128.
    fn host_plen(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// `ip`'s family option.
    fn ip_flag(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }

    /// Backend `i`'s link in this family.
    fn link(self, i: u8) -> Link {
        match self {
            Family::V4 => Link {
                router: format!("198.18.{i}.1"),
                backend: format!("198.18.{i}.2"),
                plen: 24,
                client_net: CLIENT_NET_V4,
            },
            Family::V6 => Link {
                router: format!("fd00:18:{i}::1"),
                backend: format!("fd00:18:{i}::2"),
                plen: 64,
                client_net: CLIENT_NET_V6,
            },
        }
    }

    /// Formats `addr:port` the way ipvsadm wants it.
    pub fn ipvs(self, addr: IpAddr, port: u16) -> String {
        match self {
            Family::V4 => format!("{addr}:{port}"),
            Family::V6 => format!("[{addr}]:{port}"),
        }
    }
}

/// `ip netns exec <ns> ` for a namespace, nothing for the root namespace.
fn exec_in(ns: Option<&str>) -> String {
    ns.map(|ns| format!("ip netns exec {ns} "))
        .unwrap_or_default()
}

/// Waits until both ends of every link (namespace, device) are operationally up with no
/// tentative IPv6 address, so that the first packet a test sends is not dropped.
fn wait_until_up(ends: &[(Option<&str>, &str)]) {
    let check = ends
        .iter()
        .map(|(ns, dev)| {
            let ex = exec_in(*ns);
            format!(
                "{ex}cat /sys/class/net/{dev}/operstate; {ex}ip -6 addr show dev {dev} tentative"
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let want = vec!["up"; ends.len()].join("\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = sh(&check);
        if state.trim() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lab links not ready: {ends:?}:\n{state}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// No duplicate address detection in namespace `ns` (None: the root namespace), for
/// devices made there from now on: a tentative address drops the first packets, which
/// would show up as a 1 s SYN retransmit.
fn no_dad(ns: Option<&str>) -> String {
    format!(
        "{}sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0",
        exec_in(ns)
    )
}

/// Runs `cmd` and ignores how it went (clean-up of what may not exist).
fn quietly(cmd: &[&str]) {
    let _ = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Lab {
    /// Creates the router and `n` backends (namespaces `vb1`..), with the client host's
    /// firewall on. IPVS and connection tracking start as on a freshly booted host
    /// ([`unload_ipvs`], [`flush_conntrack`]): an earlier test's entries for the same
    /// client address and VIP would otherwise take over new connections that happen to
    /// reuse their client port (IPVS's entry sends it to the old backend, unseen by
    /// the watcher; conntrack's, confirmed and no longer updated by IPVS, has the firewall
    /// drop the new backend's answers).
    pub fn new(family: Family, n: u8) -> Self {
        Self::new_with(family, n, Firewall::On)
    }

    /// Like [`Lab::new`], with or without the client host's firewall.
    pub fn new_with(family: Family, n: u8, firewall: Firewall) -> Self {
        unload_ipvs();
        Self::build(family, n, firewall, Place::vm())
    }

    /// A lab whose every host is a namespace ([`Place::namespaced`]`(prefix)`), the
    /// client host included: for a host whose own networking must stay as it is (the
    /// native demo). IPVS and the host's connection tracking are left alone.
    pub fn namespaced(family: Family, n: u8, firewall: Firewall, prefix: &str) -> Self {
        Self::build(family, n, firewall, Place::namespaced(prefix))
    }

    fn build(family: Family, n: u8, firewall: Firewall, place: Place) -> Self {
        remove_network(&place, n.max(8));
        let (v4, v6) = (Family::V4, Family::V6);
        let router = place.router_ns.as_str();
        let c = place.on_client();
        let client_ns = match &place.client_ns {
            Some(ns) => format!("ip netns add {ns} && ip -n {ns} link set lo up && "),
            None => String::new(),
        };
        sh(&format!(
            "{client_ns}{client_dad} && ip netns add {router} && {router_dad} && \
             ip netns exec {router} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 && \
             ip -n {router} link set lo up && \
             {c}ip link add {UPLINK} type veth peer name {ROUTER_DOWNLINK} netns {router} && \
             {c}ip addr add {CLIENT_V4}/24 dev {UPLINK} && {c}ip addr add {CLIENT_V6}/64 dev {UPLINK} nodad && \
             {c}ip link set {UPLINK} up && \
             ip -n {router} addr add {GATEWAY_V4}/24 dev {ROUTER_DOWNLINK} && \
             ip -n {router} addr add {GATEWAY_V6}/64 dev {ROUTER_DOWNLINK} nodad && \
             ip -n {router} link set {ROUTER_DOWNLINK} up && \
             {c}ip -4 route replace default via {GATEWAY_V4} dev {UPLINK} && \
             {c}ip -6 route replace default via {GATEWAY_V6} dev {UPLINK}",
            client_dad = no_dad(place.client_ns.as_deref()),
            router_dad = no_dad(Some(router)),
        ));
        let mut backends = Vec::new();
        let names: Vec<(String, String)> = (1..=n)
            .map(|i| (place.backend_ns(i), format!("b{i}")))
            .collect();
        for (i, (ns, dev)) in (1..=n).zip(&names) {
            let mut cmd = format!(
                "ip netns add {ns} && {dad} && ip -n {ns} link set lo up && \
                 ip -n {router} link add {dev} type veth peer name eth0 netns {ns} && \
                 ip -n {router} link set {dev} up && ip -n {ns} link set eth0 up",
                dad = no_dad(Some(ns)),
            );
            for f in [v4, v6] {
                let Link {
                    router,
                    backend,
                    plen,
                    client_net,
                } = f.link(i);
                let nodad = if f == v6 { " nodad" } else { "" };
                cmd.push_str(&format!(
                    " && ip -n {router_ns} addr add {router}/{plen} dev {dev}{nodad} && \
                     ip -n {ns} addr add {backend}/{plen} dev eth0{nodad} && \
                     ip -n {ns} {flag} route add {client_net} via {router} dev eth0",
                    router_ns = place.router_ns,
                    flag = f.ip_flag(),
                ));
            }
            sh(&cmd);
            backends.push(Backend {
                ns: ns.clone(),
                addr: family.link(i).backend.parse().unwrap(),
            });
        }
        let mut ends = vec![
            (place.client_ns.as_deref(), UPLINK),
            (Some(router), ROUTER_DOWNLINK),
        ];
        for (ns, dev) in &names {
            ends.push((Some(router), dev.as_str()));
            ends.push((Some(ns.as_str()), "eth0"));
        }
        wait_until_up(&ends);
        if firewall == Firewall::On {
            install_firewall(&c);
        }
        Self {
            family,
            place,
            backends,
            vip: family.vip(),
            firewall,
            servers: Mutex::new(Vec::new()),
            udp: Mutex::new(Vec::new()),
            dns: Mutex::new(Vec::new()),
        }
    }

    /// The client host's address in the lab's family: where its connections come from,
    /// as the backends see them.
    pub fn client_addr(&self) -> IpAddr {
        self.family.client()
    }

    /// Packets the client host's firewall dropped so far, invalid ones and the rest (0
    /// without the firewall).
    pub fn firewall_drops(&self) -> u64 {
        if self.firewall == Firewall::Off {
            return 0;
        }
        let listing = sh(&format!(
            "{}nft list table inet {FIREWALL_TABLE}",
            self.place.on_client()
        ));
        listing
            .split_whitespace()
            .zip(listing.split_whitespace().skip(1))
            .filter(|(w, _)| *w == "packets")
            .map(|(_, n)| n.parse::<u64>().unwrap_or(0))
            .sum()
    }
}

/// The client host's firewall, after Debian's workstation example
/// (`workstation.nft` in the nftables package's examples): input policy drop; loopback,
/// replies to connections the host opened (and ICMP errors about them), and the ICMP
/// types a host needs come in; invalid packets and everything else are dropped. IPv6
/// neighbour discovery is untracked (conntrack lets it pass as neither established nor
/// invalid) and is accepted by type.
fn install_firewall(on_client: &str) {
    sh(&format!(
        "{on_client}nft -f - <<'EOF'\n\
         table inet {FIREWALL_TABLE} {{\n\
           chain input {{\n\
             type filter hook input priority filter; policy drop;\n\
             iif lo accept\n\
             ct state established,related accept\n\
             ct state invalid counter drop\n\
             icmp type {{ echo-request, destination-unreachable, time-exceeded, parameter-problem }} accept\n\
             icmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem, \
                            echo-request, nd-neighbor-solicit, nd-neighbor-advert }} accept\n\
             counter drop\n\
           }}\n\
         }}\n\
         EOF"
    ));
}

/// Removes what a lab at `place` makes (what exists of it): the router namespace,
/// backend namespaces 1..`n`, the uplink, the VIP route device, the client host's
/// nftables tables, and the client host's namespace if it has one.
pub fn remove_network(place: &Place, n: u8) {
    if let Some(ns) = &place.client_ns {
        // The uplink, routes and tables go with the namespace; its veth explicitly, as
        // below.
        quietly(&["ip", "-n", ns, "link", "del", UPLINK]);
        quietly(&["ip", "netns", "del", ns]);
    }
    let router = place.router_ns.as_str();
    // Deleting the veths explicitly: a server socket still open in a namespace keeps that
    // namespace, and so its links, alive after `ip netns del`.
    quietly(&["ip", "-n", router, "link", "del", ROUTER_DOWNLINK]);
    for i in 1..=n {
        quietly(&["ip", "-n", router, "link", "del", &format!("b{i}")]);
        quietly(&["ip", "netns", "del", &place.backend_ns(i)]);
    }
    quietly(&["ip", "netns", "del", router]);
    if place.client_ns.is_some() {
        return;
    }
    quietly(&["ip", "link", "del", UPLINK]);
    quietly(&["ip", "link", "del", VIP_ROUTE_DEV]);
    quietly(&["nft", "delete", "table", "inet", FIREWALL_TABLE]);
    for family in ["ip", "ip6"] {
        quietly(&["nft", "delete", "table", family, MARK_TABLE]);
    }
}

/// The packet count of the first `counter` in an nftables listing.
fn counter_packets(listing: &str) -> u64 {
    listing
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in:\n{listing}"))
}

/// Whether something in this process turned `net.ipv4.vs.conntrack` on
/// ([`ipvs_conntrack`]), so that dropping the lab turns it off again.
static CONNTRACK_SET: AtomicBool = AtomicBool::new(false);

/// Makes `vip` reachable from the client host the way vipd does, for services programmed
/// without vipd: a dummy device [`VIP_ROUTE_DEV`] (up, no address) and a host route
/// `VIP/32` (or `/128`) through it with the client host's own address as the source. IPVS
/// takes connections to the VIP on their way out (any route will do: the packets never
/// reach the dummy), and the source they leave with is the client's address, which
/// every backend can answer. Dropping a lab removes the device and its routes.
pub fn route_vip(vip: IpAddr) {
    let f = Family::of(vip);
    sh(&format!(
        "{{ ip link show {VIP_ROUTE_DEV} >/dev/null 2>&1 || ip link add {VIP_ROUTE_DEV} type dummy; }} && \
         ip link set {VIP_ROUTE_DEV} up && \
         ip {flag} route replace {vip}/{plen} dev {VIP_ROUTE_DEV} src {client}",
        flag = f.ip_flag(),
        plen = f.host_plen(),
        client = f.client(),
    ));
}

/// Removes the route [`route_vip`] made for `vip`, if it is there.
pub fn unroute_vip(vip: IpAddr) {
    let f = Family::of(vip);
    quietly(&[
        "ip",
        f.ip_flag(),
        "route",
        "del",
        &format!("{vip}/{}", f.host_plen()),
        "dev",
        VIP_ROUTE_DEV,
    ]);
}

/// `net.ipv4.vs.conntrack = 1` (both families): IPVS keeps netfilter's connection
/// tracking up to date for its masqueraded connections, so the client host's stateful
/// firewall sees their replies as established; without it, it drops them as invalid.
/// The sysctl exists only while `ip_vs` is loaded: call this once a service exists.
pub fn ipvs_conntrack() {
    // Already on (a vipd that ran before sets it and leaves it): nothing to set back.
    if sh("cat /proc/sys/net/ipv4/vs/conntrack").trim() == "1" {
        return;
    }
    sh("sysctl -qw net.ipv4.vs.conntrack=1");
    CONNTRACK_SET.store(true, Ordering::SeqCst);
}

/// What vipd does to make a VIP work on the client host, by hand, for a service
/// programmed without vipd (ipvsadm, keepalived): [`route_vip`] and [`ipvs_conntrack`].
/// Call it once the service exists (`ip_vs` is loaded then).
pub fn expose_vip(vip: IpAddr) {
    route_vip(vip);
    ipvs_conntrack();
}

/// Empties the root namespace's connection tracking table (`conntrack -F`), if
/// connection tracking is loaded at all.
pub fn flush_conntrack() {
    if module_loaded("nf_conntrack") {
        sh("conntrack -F 2>/dev/null");
    }
}

/// Whether kernel module `name` is loaded (listed in /proc/modules).
pub fn module_loaded(name: &str) -> bool {
    loaded_modules().iter().any(|m| m == name)
}

fn loaded_modules() -> Vec<String> {
    std::fs::read_to_string("/proc/modules")
        .expect("reading /proc/modules")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Puts the VM's IPVS back to how a host is at boot: no service, and neither `ip_vs` nor
/// any `ip_vs_*` module (schedulers...) loaded. Deletes every IPVS service (`ipvsadm -C`:
/// the VM is the test's own), then unloads the `ip_vs_*` modules and `ip_vs` with
/// `modprobe -r`, retrying for a few seconds while something still holds them (an
/// exiting program's kernel probes are released asynchronously). Panics if
/// `/sys/module/ip_vs` is still there afterwards. Then empties the connection tracking
/// table, as a booted host has it: unloading IPVS strands the tracking entries of its
/// connections (a module going away does not release them), and a later connection
/// from the same client port would meet one that no longer matches its backend.
pub fn unload_ipvs() {
    if Path::new("/sys/module/ip_vs").exists() {
        sh("ipvsadm -C");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut names: Vec<String> = loaded_modules()
            .into_iter()
            .filter(|m| m.starts_with("ip_vs_"))
            .collect();
        if module_loaded("ip_vs") {
            names.push("ip_vs".to_string());
        }
        if names.is_empty() {
            break;
        }
        let out = Command::new("modprobe")
            .arg("-r")
            .args(&names)
            .output()
            .expect("running modprobe -r");
        if out.status.success() && !Path::new("/sys/module/ip_vs").exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "modprobe -r {} failed ({}): {}\n/proc/modules:\n{}",
            names.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string("/proc/modules").unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !Path::new("/sys/module/ip_vs").exists(),
        "ip_vs still loaded after modprobe -r"
    );
    flush_conntrack();
}

/// The nftables table [`Lab::ipvsadm_fwmark_service`] adds on the host (ip or ip6).
const MARK_TABLE: &str = "vipdlab_mark";
/// The nftables table [`Lab::drop_syns`] adds in a backend's namespace.
const DROP_TABLE: &str = "vipdlab_drop";
/// The nftables table [`Lab::drop_udp`] adds in a backend's namespace.
const DROP_UDP_TABLE: &str = "vipdlab_drop_udp";

/// Faults. Each is undone by its counterpart; all of them go with the lab. Besides these,
/// [`Lab::kill_server`] and [`Lab::kill_dns`] stop a backend's servers.
impl Lab {
    /// Backend `i`'s way back to the client host is a black hole: its routes to the
    /// client subnet (both families) become blackhole routes. It still receives
    /// everything (a packet socket sees the SYNs and its TCP stack takes them), but
    /// every answer it sends the client host (SYN-ACK, RST, data, ICMP errors) is
    /// discarded in its own namespace, without an error anyone could see. To the client
    /// host, clients through the VIP and health checkers alike, the backend has gone
    /// silent: new connections time out after SYN retransmits, established ones stall.
    /// (For a backend that drops only new connections, use [`Lab::drop_syns`].)
    pub fn blackhole(&self, i: usize) {
        self.client_routes(i, |client_net, _| format!("blackhole {client_net}"));
    }

    /// Undoes [`Lab::blackhole`]: backend `i` routes to the client subnet through the
    /// router again.
    pub fn unblackhole(&self, i: usize) {
        self.client_routes(i, |client_net, router| format!("{client_net} via {router}"));
    }

    /// Replaces backend `i`'s route to the client subnet, in both families, by
    /// `route(client subnet, router address)`.
    fn client_routes(&self, i: usize, route: impl Fn(&str, &str) -> String) {
        let ns = &self.backends[i].ns;
        let n = u8::try_from(i + 1).expect("backend index");
        let cmd = [Family::V4, Family::V6]
            .into_iter()
            .map(|f| {
                let link = f.link(n);
                format!(
                    "ip -n {ns} {flag} route del {net} && ip -n {ns} {flag} route add {route}",
                    flag = f.ip_flag(),
                    net = link.client_net,
                    route = route(link.client_net, &link.router),
                )
            })
            .collect::<Vec<_>>()
            .join(" && ");
        sh(&cmd);
    }

    /// Backend `i` drops every TCP SYN it receives (an nftables rule on its input
    /// hook, any source, any port): new connections to it time out with SYN
    /// retransmits, for clients and health checkers alike. Established connections
    /// keep flowing. A packet socket still sees the SYNs (it taps before netfilter), so
    /// [`crate::syn::SynSniffer`] timestamps them.
    pub fn drop_syns(&self, i: usize) {
        sh(&format!(
            "ip netns exec {ns} nft -f - <<'EOF'\n\
             table inet {DROP_TABLE} {{\n\
               chain input {{\n\
                 type filter hook input priority -150; policy accept;\n\
                 tcp flags & (syn | ack) == syn counter drop\n\
               }}\n\
             }}\n\
             EOF",
            ns = self.backends[i].ns
        ));
    }

    /// Undoes [`Lab::drop_syns`]. Returns how many SYNs the rule dropped.
    pub fn accept_syns(&self, i: usize) -> u64 {
        self.delete_drop_table(i, DROP_TABLE)
    }

    /// Backend `i` silently drops every UDP datagram to the ports of its DNS servers
    /// ([`Lab::serve_dns`]; panics if it has none), from any source: a silent backend,
    /// no answer and no ICMP error, for clients and health checkers alike. dnsmasq keeps
    /// running. Other UDP ports and TCP are untouched.
    pub fn drop_udp(&self, i: usize) {
        let ports = self.dns_ports(i);
        assert!(!ports.is_empty(), "backend {i} has no DNS server");
        let ports = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        sh(&format!(
            "ip netns exec {ns} nft -f - <<'EOF'\n\
             table inet {DROP_UDP_TABLE} {{\n\
               chain input {{\n\
                 type filter hook input priority -150; policy accept;\n\
                 udp dport {{ {ports} }} counter drop\n\
               }}\n\
             }}\n\
             EOF",
            ns = self.backends[i].ns
        ));
    }

    /// Undoes [`Lab::drop_udp`]. Returns how many datagrams the rule dropped.
    pub fn accept_udp(&self, i: usize) -> u64 {
        self.delete_drop_table(i, DROP_UDP_TABLE)
    }

    /// Deletes nftables table `table` in backend `i`'s namespace; returns the packet
    /// count of its (one) counter.
    fn delete_drop_table(&self, i: usize, table: &str) -> u64 {
        let ns = &self.backends[i].ns;
        let listing = sh(&format!("ip netns exec {ns} nft list table inet {table}"));
        sh(&format!("ip netns exec {ns} nft delete table inet {table}"));
        counter_packets(&listing)
    }
}

/// IPVS services made with ipvsadm, for tests without vipd. Each also does by hand what
/// vipd would do for its VIP ([`expose_vip`]).
impl Lab {
    /// An nftables rule on the host's output path that marks TCP traffic to
    /// `VIP:vport` with `mark`, for a fwmark service, and a route to the VIP
    /// ([`route_vip`]: marked or not, a packet needs a route to get as far as IPVS).
    /// Returns `VIP:vport`: no IPVS service has that address, the mark alone sends
    /// connections to it through IPVS.
    pub fn mark_tcp(&self, mark: u32, vport: u16) -> std::net::SocketAddr {
        route_vip(self.vip);
        let table_family = match self.family {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        };
        sh(&format!(
            "nft -f - <<'EOF'\n\
             table {table_family} {MARK_TABLE} {{\n\
               chain output {{\n\
                 type route hook output priority mangle; policy accept;\n\
                 {table_family} daddr {vip} tcp dport {vport} meta mark set {mark}\n\
               }}\n\
             }}\n\
             EOF",
            vip = self.vip
        ));
        std::net::SocketAddr::new(self.vip, vport)
    }

    /// Creates an ipvsadm fwmark service `mark` (rr, masquerade) with backend `i` at
    /// `rport`, fed by [`Lab::mark_tcp`]`(mark, vport)`, and routes the VIP; returns
    /// `VIP:vport`.
    pub fn ipvsadm_fwmark_service(
        &self,
        mark: u32,
        vport: u16,
        i: usize,
        rport: u16,
    ) -> std::net::SocketAddr {
        let six = match self.family {
            Family::V4 => "",
            Family::V6 => " -6",
        };
        let dst = self.mark_tcp(mark, vport);
        let _ = sh(&format!("ipvsadm -D -f {mark}{six} 2>/dev/null; true"));
        sh(&format!("ipvsadm -A -f {mark}{six} -s rr"));
        sh(&format!(
            "ipvsadm -a -f {mark}{six} -r {} -m",
            self.family.ipvs(self.backends[i].addr, rport)
        ));
        expose_vip(self.vip);
        dst
    }

    /// Creates an ipvsadm service `vip:vport` (rr, masquerade) with backend `i` at
    /// `rport`, and routes the VIP.
    pub fn ipvsadm_service(&self, vport: u16, i: usize, rport: u16) -> std::net::SocketAddr {
        self.ipvsadm_service_to(vport, &[i], rport)
    }

    /// Creates an ipvsadm TCP service `vip:vport` (rr, masquerade) with backends
    /// `backends` at `rport` (weight 1 each), and routes the VIP.
    pub fn ipvsadm_service_to(
        &self,
        vport: u16,
        backends: &[usize],
        rport: u16,
    ) -> std::net::SocketAddr {
        let svc = self.family.ipvs(self.vip, vport);
        let _ = sh(&format!("ipvsadm -D -t {svc} 2>/dev/null; true"));
        sh(&format!("ipvsadm -A -t {svc} -s rr"));
        for &i in backends {
            sh(&format!(
                "ipvsadm -a -t {svc} -r {} -m",
                self.family.ipvs(self.backends[i].addr, rport)
            ));
        }
        expose_vip(self.vip);
        std::net::SocketAddr::new(self.vip, vport)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.close_servers();
        self.stop_dns();
        remove_network(
            &self.place,
            u8::try_from(self.backends.len()).unwrap_or(u8::MAX),
        );
        if CONNTRACK_SET.swap(false, Ordering::SeqCst)
            && Path::new("/proc/sys/net/ipv4/vs/conntrack").exists()
        {
            quietly(&["sysctl", "-qw", "net.ipv4.vs.conntrack=0"]);
        }
    }
}
