//! A backend of a service as every plane and the daemon's core name it.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
};

/// A backend of a service: its address and port (port 0: a fwmark service's backend
/// that takes the connection's own port). Ordered by address, then port. Its text (and
/// its JSON, a string) is the socket address's: `198.18.1.1:80`, `[fd00:18::1]:80`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId {
    pub ip: IpAddr,
    pub port: u16,
}

impl BackendId {
    pub const fn new(ip: IpAddr, port: u16) -> Self {
        BackendId { ip, port }
    }

    pub const fn socket_addr(self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

impl From<SocketAddr> for BackendId {
    fn from(a: SocketAddr) -> Self {
        BackendId::new(a.ip(), a.port())
    }
}

impl From<BackendId> for SocketAddr {
    fn from(b: BackendId) -> Self {
        b.socket_addr()
    }
}

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.socket_addr().fmt(f)
    }
}

impl serde::Serialize for BackendId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
