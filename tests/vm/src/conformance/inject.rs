//! Writes the first packet of chosen flows onto the injector's link, addressed to the
//! director: any source address and port, no socket of the injector's own involved
//! (a packet socket, so the kernel adds only the Ethernet header).

use std::os::fd::OwnedFd;

use super::{
    packet::{build, Flow},
    topology::{DIRECTOR_MAC, INJECTOR},
};
use crate::packet_socket::{bound_socket, send};

pub struct Injector {
    fd: OwnedFd,
    ifindex: i32,
}

impl Injector {
    /// A packet socket on the injector's `eth0`.
    pub fn new() -> Self {
        let (fd, ifindex) = bound_socket(INJECTOR, "eth0");
        Injector { fd, ifindex }
    }

    /// Sends `flow`'s first packet (a TCP SYN or a UDP datagram) to the director.
    pub fn send(&self, flow: &Flow) {
        send(&self.fd, self.ifindex, DIRECTOR_MAC, &build(flow));
    }
}

impl Default for Injector {
    fn default() -> Self {
        Self::new()
    }
}
