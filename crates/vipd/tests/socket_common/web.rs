//! `vipd run` with the socket plane on a test's own namespace, cgroup and pins: one TCP
//! service `web` on a VIP over a good and a second backend, for the health tests.

use std::net::SocketAddr;

use super::{addr, backend_netns, socket_config, Cgroup, Pins, Servers, TCP_PORT, VIP_PORT};
use crate::xdp_common::{
    daemon::{Daemon, Scratch},
    Netns,
};

/// Everything one run holds; the daemon goes first on drop, the namespace last.
pub struct WebRun {
    pub daemon: Daemon,
    pub vip: SocketAddr,
    pub good: SocketAddr,
    pub bad: SocketAddr,
    pub scratch: Scratch,
    pub pins: Pins,
    pub cg: Cgroup,
    pub servers: Servers,
    pub ns: Netns,
}

impl WebRun {
    /// Backends `backends[0]` (good) and `backends[1]` on [`TCP_PORT`], servers on
    /// `serving`, the VIP `vip_ip`:[`VIP_PORT`], and `health` as the lines of the
    /// service's `[service.health]`.
    pub fn start(
        tag: &str,
        vip_ip: &str,
        backends: &[&str],
        serving: &[&str],
        health: &str,
    ) -> Self {
        let ns = backend_netns();
        let servers = Servers::start(&ns, serving);
        let cg = Cgroup::new(tag);
        let pins = Pins::new(tag);
        let scratch = Scratch::new(tag);
        let vip = addr(vip_ip, VIP_PORT);
        let (good, bad) = (addr(backends[0], TCP_PORT), addr(backends[1], TCP_PORT));
        let cfg = socket_config(
            &scratch.0,
            &cg,
            &format!(
                "[[service]]\nname = \"web\"\nvip = \"{vip}\"\n\
                 backend = [{{ address = \"{good}\" }}, {{ address = \"{bad}\" }}]\n\
                 [service.health]\n{health}"
            ),
        );
        let pin_dir = pins.0.display().to_string();
        let daemon = Daemon::start_in(
            &ns,
            &cfg,
            &scratch.0.join("run"),
            &scratch.0.join("vipd.log"),
            &[("VIPD_SOCKET_PIN_DIR", pin_dir.as_str())],
        );
        WebRun {
            daemon,
            vip,
            good,
            bad,
            scratch,
            pins,
            cg,
            servers,
            ns,
        }
    }
}
