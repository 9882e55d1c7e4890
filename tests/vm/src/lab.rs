//! A small network inside the VM: backends in their own network namespaces, joined to
//! the VM's root namespace by veth pairs, and a dummy interface holding the VIPs (as
//! kube-proxy's IPVS mode does). Addresses are from the benchmarking range 198.18.0.0/15
//! and the ULA fd00:18::/32, all inside namespaces this lab creates. Dropping the lab
//! removes everything it made.

use std::{
    io::Write,
    net::{IpAddr, SocketAddr, TcpListener},
    thread,
};

use crate::{in_netns, sh};

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
        }
    }

    /// Starts a TCP server on backend `i` (0-based) at `port` that answers each
    /// connection with `hello from <ns>` and closes it. Returns its address.
    pub fn serve_greeting(&self, i: usize, port: u16) -> SocketAddr {
        let b = &self.backends[i];
        let addr = SocketAddr::new(b.addr, port);
        let listener = in_netns(&b.ns, move || {
            TcpListener::bind(addr).expect("bind in backend netns")
        });
        let greeting = format!("hello from {}", b.ns);
        thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let _ = conn.write_all(greeting.as_bytes());
            }
        });
        addr
    }
}

impl Lab {
    /// Makes backend `i` a black hole for the client: it receives SYNs but its answers
    /// to the VIP address (the source of local connections to a VIP on the dummy device)
    /// are routed into a blackhole inside its namespace.
    pub fn blackhole(&self, i: usize) {
        let b = &self.backends[i];
        let plen = if self.family == Family::V6 { 128 } else { 32 };
        sh(&format!(
            "ip -n {} route add blackhole {}/{plen}",
            b.ns, self.vip
        ));
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
    }
}
