//! vipd config text for the suite's services.

use std::net::SocketAddr;

use super::packet::Proto;

/// One `[[service]]`: `backends` are (address, weight).
pub struct ServiceToml<'a> {
    pub name: &'a str,
    pub proto: Proto,
    pub vip: SocketAddr,
    pub scheduler: &'a str,
    pub flags: &'a [&'a str],
    /// `masq`, `tunnel` (IPIP) or `route`.
    pub forwarding: &'a str,
    pub backends: &'a [(SocketAddr, u32)],
}

impl ServiceToml<'_> {
    pub fn toml(&self) -> String {
        let proto = match self.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        let flags = self
            .flags
            .iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut t = format!(
            "[[service]]\nname = \"{}\"\nvip = \"{}\"\nprotocol = \"{proto}\"\n\
             scheduler = \"{}\"\nflags = [{flags}]\nforwarding = \"{}\"\n",
            self.name, self.vip, self.scheduler, self.forwarding
        );
        for (addr, weight) in self.backends {
            t.push_str(&format!(
                "  [[service.backend]]\n  address = \"{addr}\"\n  weight = {weight}\n"
            ));
        }
        t
    }
}
