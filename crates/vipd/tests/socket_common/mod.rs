//! Shared by the socket plane's host tests: a network namespace with backends on its
//! loopback, a child cgroup of the host's cgroup v2 root that clients run in, a pin
//! directory of the test's own, and the clients and servers (python3) that show where
//! each connection went. Everything is removed on drop, even after a panic.

#![allow(dead_code)]

pub mod procs;
pub mod web;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::Command,
};

pub use procs::Servers;

use super::xdp_common::{sh, Netns};

/// Backends on the namespace's loopback: three IPv4, three IPv6.
pub const BACKENDS4: [&str; 3] = ["198.18.50.11", "198.18.50.12", "198.18.50.13"];
pub const BACKENDS6: [&str; 3] = ["fd00:50::11", "fd00:50::12", "fd00:50::13"];
/// VIPs: no address anywhere has them; only the programs make them reachable.
pub const VIP4: &str = "198.18.60.1";
pub const VIP6: &str = "fd00:60::1";
/// The backends' TCP and UDP ports; the VIPs' port.
pub const TCP_PORT: u16 = 7000;
pub const UDP_PORT: u16 = 7001;
pub const VIP_PORT: u16 = 80;

/// The namespace with its backend addresses.
pub fn backend_netns() -> Netns {
    let ns = Netns::new("sock");
    for a in BACKENDS4 {
        ns.run(&format!("ip addr add {a}/32 dev lo"));
    }
    for a in BACKENDS6 {
        ns.run(&format!("ip addr add {a}/128 dev lo nodad"));
    }
    ns
}

/// A firewall in the namespace that drops every TCP segment to `ip`'s TCP port: a
/// backend that never answers a SYN. It goes with the namespace.
pub fn drop_syns_to(ns: &Netns, ip: &str) {
    ns.run(&format!(
        "nft add table inet vipdtest && \
         nft add chain inet vipdtest input {{ type filter hook input priority 0 \\; }} && \
         nft add rule inet vipdtest input ip daddr {ip} tcp dport {TCP_PORT} drop"
    ));
}

pub fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port)
}

/// A child cgroup of the host's cgroup v2 root; removed on drop (its processes have
/// ended by then).
pub struct Cgroup(pub PathBuf);

impl Cgroup {
    pub fn new(tag: &str) -> Cgroup {
        let root = vipd::config::SocketSettings::default_cgroup();
        let dir = root.join(format!("vipd-{tag}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Cgroup(dir)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Processes may take a moment to leave after they exit.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("could not remove {}", self.0.display());
    }
}

/// Writes `dir/vipd.toml`: the socket data plane on `cgroup`, then `services`.
pub fn socket_config(dir: &std::path::Path, cgroup: &Cgroup, services: &str) -> PathBuf {
    let path = dir.join("vipd.toml");
    let text = format!(
        "dataplane = \"socket\"\n[socket]\ncgroup = \"{}\"\n\n{services}",
        cgroup.0.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A pin directory under /sys/fs/bpf of the test's own; its pins are removed on drop.
pub struct Pins(pub PathBuf);

impl Pins {
    pub fn new(tag: &str) -> Pins {
        Pins(PathBuf::from(format!(
            "/sys/fs/bpf/vipd-{tag}-{}",
            std::process::id()
        )))
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = vipd::sockplane::pins::remove_ours(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The socket plane attached to `cg`, pinned in `pins`.
#[allow(dead_code)] // not every test crate starts a plane of its own
pub fn start_plane(cg: &Cgroup, pins: &Pins) -> vipd::plane::socket::SocketPlane {
    let settings = vipd::config::SocketSettings {
        cgroup: cg.0.clone(),
    };
    vipd::plane::socket::SocketPlane::start_with(&settings, &pins.0)
        .unwrap_or_else(|e| panic!("starting the socket plane: {}", e.chain()))
}

/// Whether the programs are still attached to `cgroup` (as bpftool would list them):
/// through the kernel's view of the cgroup's programs.
pub fn attached_programs(cgroup: &std::path::Path) -> String {
    let out = Command::new("bpftool")
        .args(["cgroup", "show"])
        .arg(cgroup)
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => sh(&format!("ls {}", cgroup.display())),
    }
}
