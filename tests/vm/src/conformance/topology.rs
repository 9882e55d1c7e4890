//! Three network namespaces for the conformance suite, dual stack:
//!
//! ```text
//!  sched-inj                 sched-dir (IPVS, vipd)             sched-sink
//!  eth0 ---- veth ---- inj0   VIPs 198.18.93.0/24,   sink0 ---- veth ---- eth0
//!                             fd00:18:93::/64
//!  clients 198.18.96.0/20,                           backends 198.18.92.0/24,
//!  fd00:18:96::/48 (spoofed)                         fd00:18:92::/64 (routed to
//!                                                    the sink, which owns none)
//! ```
//!
//! The injector owns no client address: it writes packets with any source straight onto
//! its link (see [`super::inject`]). The clients are remote, so the director takes what
//! they send to the VIP range as its own: for packets coming in on `inj0`, a policy rule
//! looks up a table where that range is local, and IPVS sees them on local input, as on
//! any director that serves other hosts. (vipd itself only routes its VIPs through its
//! dummy, for clients on its own host; its route lookups do not come from `inj0`, so
//! they see the main table.) The director routes the client prefixes back to it
//! and the backend prefixes to the sink, whose link addresses have permanent neighbour
//! entries, so no packet waits for ARP or neighbour discovery. The sink receives what
//! IPVS forwards and drops it (nothing there owns a backend address); a packet socket
//! there sees it first (see [`super::capture`]). Dropping the topology deletes the
//! namespaces, and with them IPVS's state and vipd's dummy interface.

use std::net::IpAddr;

use crate::{lab::Family, sh};

pub const DIRECTOR: &str = "sched-dir";
pub const INJECTOR: &str = "sched-inj";
pub const SINK: &str = "sched-sink";

/// MAC addresses of the director's end of the injector link and of the sink's end of
/// the backend link (set at creation, so nothing has to be looked up).
pub const DIRECTOR_MAC: [u8; 6] = [0x02, 0x5c, 0, 0, 0x90, 0x01];
const SINK_MAC: [u8; 6] = [0x02, 0x5c, 0, 0, 0x91, 0x02];

/// The director's routing table for packets from the injector: the VIP range is local.
const REMOTE_TABLE: u32 = 93;

fn mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// The VIP of the suite's services in `family`.
pub fn vip(family: Family) -> IpAddr {
    match family {
        Family::V4 => "198.18.93.10".parse().unwrap(),
        Family::V6 => "fd00:18:93::10".parse().unwrap(),
    }
}

/// Backend `i`'s address (0-based): routed to the sink.
pub fn backend(family: Family, i: usize) -> IpAddr {
    assert!(i < 250, "backend {i}: the prefix has room for 250");
    match family {
        Family::V4 => format!("198.18.92.{}", i + 1).parse().unwrap(),
        Family::V6 => format!("fd00:18:92::{:x}", i + 1).parse().unwrap(),
    }
}

/// Client address `i` (0-based), a source the injector spoofs.
pub fn client(family: Family, i: usize) -> IpAddr {
    assert!(i < 4000, "client {i}: the prefix has room for 4000");
    let n = i + 1;
    match family {
        Family::V4 => format!("198.18.{}.{}", 96 + n / 256, n % 256)
            .parse()
            .unwrap(),
        Family::V6 => format!("fd00:18:96::{n:x}").parse().unwrap(),
    }
}

/// The namespaces and links; dropping it removes them.
pub struct Topology(());

impl Topology {
    pub fn new() -> Self {
        remove();
        let ns_setup = |ns: &str| {
            format!(
                "ip netns add {ns} && ip netns exec {ns} sysctl -qw \
                 net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 && \
                 ip -n {ns} link set lo up"
            )
        };
        sh(&format!(
            "{} && {} && {}",
            ns_setup(DIRECTOR),
            ns_setup(INJECTOR),
            ns_setup(SINK)
        ));
        let topology = Topology(());
        sh(&format!(
            "ip -n {DIRECTOR} link add inj0 address {dmac} type veth peer name eth0 netns {INJECTOR} && \
             ip -n {DIRECTOR} link add sink0 type veth peer name eth0 address {smac} netns {SINK} && \
             ip netns exec {DIRECTOR} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
                net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
                net.ipv4.conf.inj0.rp_filter=0 && \
             ip -n {DIRECTOR} addr add 198.18.90.1/24 dev inj0 && \
             ip -n {DIRECTOR} addr add fd00:18:90::1/64 dev inj0 nodad && \
             ip -n {DIRECTOR} addr add 198.18.91.1/24 dev sink0 && \
             ip -n {DIRECTOR} addr add fd00:18:91::1/64 dev sink0 nodad && \
             ip -n {INJECTOR} addr add 198.18.90.2/24 dev eth0 && \
             ip -n {INJECTOR} addr add fd00:18:90::2/64 dev eth0 nodad && \
             ip -n {SINK} addr add 198.18.91.2/24 dev eth0 && \
             ip -n {SINK} addr add fd00:18:91::2/64 dev eth0 nodad && \
             ip -n {DIRECTOR} link set inj0 up && ip -n {DIRECTOR} link set sink0 up && \
             ip -n {INJECTOR} link set eth0 up && ip -n {SINK} link set eth0 up && \
             ip -n {DIRECTOR} neigh replace 198.18.91.2 lladdr {smac} dev sink0 nud permanent && \
             ip -n {DIRECTOR} neigh replace fd00:18:91::2 lladdr {smac} dev sink0 nud permanent && \
             ip -n {DIRECTOR} route add 198.18.96.0/20 via 198.18.90.2 && \
             ip -n {DIRECTOR} route add fd00:18:96::/48 via fd00:18:90::2 && \
             ip -n {DIRECTOR} route add 198.18.92.0/24 via 198.18.91.2 && \
             ip -n {DIRECTOR} route add fd00:18:92::/64 via fd00:18:91::2 && \
             ip -n {DIRECTOR} -4 rule add iif inj0 lookup {REMOTE_TABLE} priority 100 && \
             ip -n {DIRECTOR} -6 rule add iif inj0 lookup {REMOTE_TABLE} priority 100 && \
             ip -n {DIRECTOR} -4 route add local 198.18.93.0/24 dev lo table {REMOTE_TABLE} && \
             ip -n {DIRECTOR} -6 route add local fd00:18:93::/64 dev lo table {REMOTE_TABLE}",
            dmac = mac(DIRECTOR_MAC),
            smac = mac(SINK_MAC),
        ));
        wait_until_up();
        topology
    }
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

/// Waits until the four ends of the two links are operationally up.
fn wait_until_up() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let check = format!(
        "ip netns exec {DIRECTOR} cat /sys/class/net/inj0/operstate /sys/class/net/sink0/operstate; \
         ip netns exec {INJECTOR} cat /sys/class/net/eth0/operstate; \
         ip netns exec {SINK} cat /sys/class/net/eth0/operstate"
    );
    loop {
        let states = sh(&check);
        if states.split_whitespace().all(|s| s == "up") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "conformance links not up: {states}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn remove() {
    for ns in [DIRECTOR, INJECTOR, SINK] {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        remove();
    }
}
