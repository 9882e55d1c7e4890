//! A small network inside the VM: backends in their own network namespaces, joined to
//! the VM's root namespace by veth pairs, and a dummy interface holding the VIPs (as
//! kube-proxy's IPVS mode does). Addresses are from the benchmarking range 198.18.0.0/15
//! and the ULA fd00:18::/32, all inside namespaces this lab creates. Dropping the lab
//! removes everything it made.

use std::{net::IpAddr, sync::Mutex};

use crate::{
    dns::server::Dnsmasq,
    servers::{Kind, Listening},
    sh,
};

pub const VIP_DEV: &str = "vipdtest0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

pub struct Backend {
    pub ns: String,
    pub addr: IpAddr,
}

pub struct Lab {
    pub family: Family,
    pub backends: Vec<Backend>,
    pub vip: IpAddr,
    /// Every TCP server the lab started, so that faults can stop and restart them.
    pub(crate) servers: Mutex<Vec<Served>>,
    /// Every DNS server the lab started ([`Lab::serve_dns`]).
    pub(crate) dns: Mutex<Vec<Dnsmasq>>,
}

/// A TCP server the lab started on a backend: what it is, and its listener while it runs.
pub(crate) struct Served {
    pub backend: usize,
    pub port: u16,
    pub kind: Kind,
    pub running: Option<Listening>,
}

impl Family {
    pub fn vip(self) -> IpAddr {
        match self {
            Family::V4 => "198.18.0.10".parse().unwrap(),
            Family::V6 => "fd00:18::10".parse().unwrap(),
        }
    }

    /// (root side, backend side) addresses of backend `i`'s link.
    fn link(self, i: u8) -> (String, String, u8) {
        match self {
            Family::V4 => (format!("198.18.{i}.1"), format!("198.18.{i}.2"), 24),
            Family::V6 => (format!("fd00:18:{i}::1"), format!("fd00:18:{i}::2"), 64),
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

/// Waits until both ends of a backend's link are operationally up with no tentative
/// IPv6 address, so that the first packet a test sends is not dropped.
fn wait_until_ready(ns: &str, host_veth: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let ready = sh(&format!(
            "cat /sys/class/net/{host_veth}/operstate; ip netns exec {ns} cat /sys/class/net/eth0/operstate; \
             ip -6 addr show dev {host_veth} tentative; ip -n {ns} -6 addr show dev eth0 tentative"
        ));
        if ready.trim() == "up\nup" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backend link {ns} not ready: {ready}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Lab {
    /// Creates `n` backends (namespaces `vb1`..) and puts the VIP on the dummy device.
    pub fn new(family: Family, n: u8) -> Self {
        let _ = sh(&format!("ip link del {VIP_DEV} 2>/dev/null; true"));
        sh(&format!(
            "ip link add {VIP_DEV} type dummy && ip link set {VIP_DEV} up"
        ));
        let vip = family.vip();
        let nodad = if family == Family::V6 { " nodad" } else { "" };
        let plen = if family == Family::V6 { 128 } else { 32 };
        sh(&format!("ip addr add {vip}/{plen} dev {VIP_DEV}{nodad}"));
        let mut backends = Vec::new();
        for i in 1..=n {
            let ns = format!("vb{i}");
            let (host, backend, len) = family.link(i);
            let _ = sh(&format!("ip netns del {ns} 2>/dev/null; true"));
            // No duplicate address detection anywhere in the lab: a tentative address
            // drops the first packets, which would show up as a 1 s SYN retransmit.
            sh(&format!(
                "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 && \
                 ip netns add {ns} && \
                 ip netns exec {ns} sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 && \
                 ip link add vh{i} type veth peer name eth0 netns {ns} && \
                 ip addr add {host}/{len} dev vh{i}{nodad} && ip link set vh{i} up && \
                 ip -n {ns} link set lo up && ip -n {ns} addr add {backend}/{len} dev eth0{nodad} && \
                 ip -n {ns} link set eth0 up && ip -n {ns} route add default via {host}"
            ));
            wait_until_ready(&ns, &format!("vh{i}"));
            backends.push(Backend {
                ns,
                addr: backend.parse().unwrap(),
            });
        }
        Self {
            family,
            backends,
            vip,
            servers: Mutex::new(Vec::new()),
            dns: Mutex::new(Vec::new()),
        }
    }
}

/// The nftables table [`Lab::ipvsadm_fwmark_service`] adds on the host (ip or ip6).
const MARK_TABLE: &str = "vipdlab_mark";
/// The nftables table [`Lab::drop_syns`] adds in a backend's namespace.
const DROP_TABLE: &str = "vipdlab_drop";
/// The nftables table [`Lab::drop_udp`] adds in a backend's namespace.
const DROP_UDP_TABLE: &str = "vipdlab_drop_udp";

/// Faults. Each is undone by its counterpart; all of them go with the lab.
impl Lab {
    /// Makes backend `i` a black hole for local clients of the VIP: it receives their
    /// SYNs, but its answers to the VIP address (the source of local connections to a
    /// VIP on the dummy device) are routed into a blackhole inside its namespace. Traffic
    /// from other sources (e.g. a health checker on the host side of the link) still
    /// gets answers: for a fault every client sees, use [`Lab::drop_syns`].
    pub fn blackhole(&self, i: usize) {
        sh(&format!(
            "ip -n {} route add blackhole {}/{}",
            self.backends[i].ns,
            self.vip,
            self.host_plen()
        ));
    }

    /// Undoes [`Lab::blackhole`].
    pub fn unblackhole(&self, i: usize) {
        sh(&format!(
            "ip -n {} route del blackhole {}/{}",
            self.backends[i].ns,
            self.vip,
            self.host_plen()
        ));
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
        listing
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in:\n{listing}"))
    }

    fn host_plen(&self) -> u8 {
        if self.family == Family::V6 {
            128
        } else {
            32
        }
    }

    /// An nftables rule on the host's output path that marks TCP traffic to
    /// `VIP:vport` with `mark`, for a fwmark service. Returns `VIP:vport`: no IPVS
    /// service has that address, the mark alone sends connections to it through IPVS.
    pub fn mark_tcp(&self, mark: u32, vport: u16) -> std::net::SocketAddr {
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
    /// `rport`, fed by [`Lab::mark_tcp`]`(mark, vport)`; returns `VIP:vport`.
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
        dst
    }

    /// Creates an ipvsadm service `vip:vport` (rr, masquerade) with backend `i` at `rport`.
    pub fn ipvsadm_service(&self, vport: u16, i: usize, rport: u16) -> std::net::SocketAddr {
        let svc = self.family.ipvs(self.vip, vport);
        let _ = sh(&format!("ipvsadm -D -t {svc} 2>/dev/null; true"));
        sh(&format!("ipvsadm -A -t {svc} -s rr"));
        sh(&format!(
            "ipvsadm -a -t {svc} -r {} -m",
            self.family.ipvs(self.backends[i].addr, rport)
        ));
        std::net::SocketAddr::new(self.vip, vport)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.close_servers();
        self.stop_dns();
        // Deleting the veth explicitly: a server socket still open in a namespace keeps
        // that namespace, and so the veth's root end, alive after `ip netns del`.
        for (i, b) in self.backends.iter().enumerate() {
            let veth = format!("vh{}", i + 1);
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &veth])
                .status();
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &b.ns])
                .status();
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", VIP_DEV])
            .status();
        for family in ["ip", "ip6"] {
            let _ = std::process::Command::new("nft")
                .args(["delete", "table", family, MARK_TABLE])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
