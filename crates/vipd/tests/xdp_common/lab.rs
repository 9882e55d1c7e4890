//! The one-arm balancer lab: a client, a balancer and two backends, each a network
//! namespace, on one Ethernet segment (a bridge in a fifth namespace, `sw`).
//!
//! ```text
//!   cl 198.18.1.2  fd00:18:1::2  ──┐
//!   lb 198.18.1.1  fd00:18:1::1  ──┤ br0 (ns sw)   VIPs 198.18.100.1, fd00:18:100::1,
//!      198.18.2.1  fd00:18:2::1    │               routed by cl via lb
//!   b1 198.18.2.11 fd00:18:2::11 ──┤               backends route everything via lb
//!   b2 198.18.2.12 fd00:18:2::12 ──┘
//! ```
//!
//! Redirects are off (sent by lb, accepted by the others): the kernel forwards the first
//! packets of a flow while neighbours resolve, and a redirect would send the backends'
//! replies straight to the client, past the translation.
//!
//! Clients and backends are on different subnets, so both route through the balancer:
//! the backends' replies come back through it to be translated. The balancer's veth peer
//! (`p-lb`) runs `vipd_xdp_pass` to receive XDP_TX frames, and the senders have TX
//! checksum offload off (see `vipd-ebpf/src/xdp_lb.rs` on both).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::Netns;

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const B1: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);
pub const B2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 12);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0x100, 0, 0, 0, 0, 1);

pub struct Lab {
    pub sw: Netns,
    pub lb: Netns,
    pub cl: Netns,
    pub b1: Netns,
    pub b2: Netns,
}

impl Lab {
    pub fn new() -> Lab {
        let lab = Lab {
            sw: Netns::new("sw"),
            lb: Netns::new("lb"),
            cl: Netns::new("cl"),
            b1: Netns::new("b1"),
            b2: Netns::new("b2"),
        };
        lab.sw
            .run("ip link add br0 type bridge && ip link set br0 up");
        for (ns, port, addr, gw, addr6, gw6) in [
            (&lab.lb, "p-lb", "198.18.1.1/24", "", "fd00:18:1::1/64", ""),
            (
                &lab.cl,
                "p-cl",
                "198.18.1.2/24",
                "198.18.1.1",
                "fd00:18:1::2/64",
                "fd00:18:1::1",
            ),
            (
                &lab.b1,
                "p-b1",
                "198.18.2.11/24",
                "198.18.2.1",
                "fd00:18:2::11/64",
                "fd00:18:2::1",
            ),
            (
                &lab.b2,
                "p-b2",
                "198.18.2.12/24",
                "198.18.2.1",
                "fd00:18:2::12/64",
                "fd00:18:2::1",
            ),
        ] {
            lab.sw.run(&format!(
                "ip link add {port} type veth peer name eth0 netns {} && \
                 ip link set {port} master br0 up",
                ns.name
            ));
            ns.run(&format!(
                "ip addr add {addr} dev eth0 && ip -6 addr add {addr6} dev eth0 nodad && \
                 ip link set eth0 up"
            ));
            if !gw.is_empty() {
                ns.run(&format!(
                    "ip route add default via {gw} && ip -6 route add default via {gw6} && \
                     sysctl -qw net.ipv6.conf.all.accept_redirects=0 && \
                     sysctl -qw net.ipv6.conf.eth0.accept_redirects=0 && \
                     sysctl -qw net.ipv4.conf.all.accept_redirects=0 && \
                     ethtool -K eth0 tx off >/dev/null"
                ));
            }
        }
        lab.lb.run(
            "ip addr add 198.18.2.1/24 dev eth0 && \
             ip -6 addr add fd00:18:2::1/64 dev eth0 nodad && \
             sysctl -qw net.ipv6.conf.all.forwarding=1 && \
             sysctl -qw net.ipv4.ip_forward=1 && \
             sysctl -qw net.ipv4.conf.all.send_redirects=0 && \
             sysctl -qw net.ipv4.conf.eth0.send_redirects=0 && \
             sysctl -qw net.ipv4.conf.all.rp_filter=0 && \
             sysctl -qw net.ipv4.conf.eth0.rp_filter=0",
        );
        lab.wait_for_links();
        lab
    }

    /// Waits until every veth carries traffic (the balancer pings each host).
    fn wait_for_links(&self) {
        for ip in [
            "198.18.1.2",
            "198.18.2.11",
            "198.18.2.12",
            "fd00:18:1::2",
            "fd00:18:2::11",
            "fd00:18:2::12",
        ] {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let ok = Command::new("ip")
                    .args(["netns", "exec", &self.lb.name, "ping", "-c1", "-W1", ip])
                    .stdout(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    break;
                }
                assert!(Instant::now() < deadline, "{ip} unreachable from lb");
            }
        }
    }

    pub fn backends(&self) -> [(&Netns, Ipv4Addr, &'static str); 2] {
        [(&self.b1, B1, "b1"), (&self.b2, B2, "b2")]
    }

    /// Loads a small object and attaches `vipd_xdp_pass` to the balancer's veth peer
    /// (`p-lb`), which must run an XDP program to take the frames the balancer sends
    /// with XDP_TX (see `xdp_lb.rs`). Keep the result alive for the test.
    pub fn pass_on_peer(&self) -> vipd::xdp::XdpProgram {
        let mut peer = vipd::xdp::XdpProgram::load(
            vipd::xdp::Sizes {
                services: 1,
                backends: 2,
                flows: 16,
                events_bytes: 4096,
            },
            None,
        )
        .expect("loading vipd_xdp_pass");
        self.sw
            .enter(|| peer.attach_pass("p-lb"))
            .expect("attaching vipd_xdp_pass to p-lb");
        peer
    }
}

/// Processes started in the lab's namespaces; killed on drop.
#[derive(Default)]
pub struct Procs(pub Vec<Child>);

impl Procs {
    /// Starts `cmd` (a shell command) in `ns`.
    pub fn spawn(&mut self, ns: &Netns, cmd: &str) {
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "sh",
                "-c",
                &format!("exec {cmd}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        self.0.push(child);
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A UDP server answering each datagram with `name`, on IPv4 and IPv6 (any address).
pub fn udp_echo(name: &str, port: u16) -> String {
    format!(
        "python3 -c 'import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\n\
         s.bind((\"::\",{port}))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(b\"{name}:\"+d,a)'"
    )
}

/// Waits until `port` on `addr` accepts TCP connections from `ns`.
pub fn wait_tcp(ns: &Netns, addr: Ipv4Addr, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "python3",
                "-c",
                &format!("import socket; socket.create_connection((\"{addr}\",{port}),1)"),
            ])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{addr}:{port} never listened");
}
