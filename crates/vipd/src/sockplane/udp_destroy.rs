//! Moving connected UDP sockets off a backend taken out of its service, as
//! `udp_stale_flows = "expire"` does for IPVS and XDP.
//!
//! The socket plane translates a connected UDP socket once, at `connect()`; the kernel
//! then sends its datagrams to the backend without asking the plane again. When that
//! backend leaves a UDP service (taken out on quarantine, which is what
//! `udp_stale_flows = "expire"`, the default, does, or removed from the config), vipd
//! finds the service's sockets connected to it with a `sock_diag` dump of the UDP sockets
//! (`NETLINK_SOCK_DIAG`, `SOCK_DIAG_BY_FAMILY`, connected ones only, by destination
//! port) and destroys each with `SOCK_DESTROY` (the kernel's `CONFIG_INET_DIAG_DESTROY`).
//! The application's pending or next `recv` on it fails with `ECONNABORTED`; the kernel
//! also disconnects it, so a `send` without an address fails with `EDESTADDRREQ`. A new
//! socket connects through the VIP to a backend in the selection. `sock_diag` answers
//! for the network namespace of its caller: sockets of other namespaces are not seen. A backend held at weight 0 (`udp_stale_flows = "keep"`, `vipd drain`)
//! keeps its sockets, as IPVS keeps the flows of a weight-0 destination.
//!
//! Only sockets the plane translated are touched: a socket is destroyed only when
//! `SOCK_PEERS` holds the plane's record for its cookie (the dump's `idiag_cookie`)
//! saying that its connect to this service's VIP was sent to this backend. A socket the
//! application connected straight to the backend's address has no such record and is
//! left alone. The destroy request names the socket by its addresses, ports and cookie,
//! so the kernel refuses it (`ENOENT`) if another socket has taken those addresses since
//! the dump. TCP sockets are never touched.

use std::net::{IpAddr, SocketAddr};

use tracing::{debug, info, warn};
use vipd_common::sock::{SockPeer, SockPeerKey, PEER_REVERSE};

use super::{
    dataplane::SockServiceSpec,
    maps::SockMaps,
    sock_diag::{octets, DiagError, SockDiag, AF_INET, AF_INET6, IPPROTO_UDP},
};

/// The socket families and the form of `addr` that a socket of each holds: an IPv4
/// address also as `::ffff:a.b.c.d` (a dual-stack IPv6 socket that reached IPv4).
fn socket_forms(addr: SocketAddr) -> Vec<(u8, SocketAddr)> {
    match addr {
        SocketAddr::V4(a) => vec![
            (AF_INET, addr),
            (
                AF_INET6,
                SocketAddr::new(IpAddr::V6(a.ip().to_ipv6_mapped()), a.port()),
            ),
        ],
        SocketAddr::V6(_) => vec![(AF_INET6, addr)],
    }
}

/// The key of the plane's record that socket `cookie` of `family` connected to
/// `backend` (in the form the socket holds it) through a VIP.
pub fn reverse_key(cookie: u64, family: u8, backend: SocketAddr) -> SockPeerKey {
    SockPeerKey {
        cookie,
        addr: octets(backend.ip()),
        port: backend.port(),
        family,
        dir: PEER_REVERSE,
        _pad: 0,
    }
}

/// Whether the plane's record of a socket says its connect to `vip` (in the socket's
/// form) was translated: a UDP record naming that VIP.
pub fn translated_from(record: Option<&SockPeer>, family: u8, vip: SocketAddr) -> bool {
    record.is_some_and(|r| {
        r.protocol == IPPROTO_UDP
            && r.family == family
            && r.port == vip.port()
            && r.addr == octets(vip.ip())
    })
}

/// The (VIP, backend) pairs of a UDP service whose backend is in `old` (at any weight)
/// and not in `new`, its next spec: taken out, or removed. A backend now at weight 0
/// stays (a drain: its sockets keep going). A service gone altogether has no next spec
/// and is not asked about: its VIP no longer translates, so a new socket would not reach
/// a backend.
pub fn taken_out(old: &SockServiceSpec, new: &SockServiceSpec) -> Vec<(SocketAddr, SocketAddr)> {
    if old.protocol != IPPROTO_UDP {
        return Vec::new();
    }
    old.backends
        .iter()
        .filter(|(b, _)| !new.backends.iter().any(|(a, _)| a == b))
        .map(|(b, _)| (old.vip, *b))
        .collect()
}

/// What one [`UdpExpiry::expire`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub destroyed: u64,
    /// Sockets connected to the backend that the plane did not translate from the VIP.
    pub left_alone: u64,
}

/// Destroys the translated connected UDP sockets of backends taken out of a service;
/// keeps the count, and warns once when the kernel cannot.
#[derive(Default)]
pub struct UdpExpiry {
    diag: Option<SockDiag>,
    warned: bool,
    destroyed: u64,
}

impl UdpExpiry {
    /// Sockets destroyed since start.
    pub fn destroyed(&self) -> u64 {
        self.destroyed
    }

    /// For each (VIP, backend) in `left`, destroys the sockets the plane connected to
    /// the backend through the VIP, and removes their records. Errors are logged (a
    /// missing kernel feature once, as a warning) and end only that backend's pass.
    pub fn expire(&mut self, maps: &mut SockMaps, left: &[(SocketAddr, SocketAddr)]) {
        for (vip, backend) in left {
            match self.expire_one(maps, *vip, *backend) {
                Ok(e) => {
                    self.destroyed += e.destroyed;
                    if e.destroyed > 0 {
                        info!(
                            %vip,
                            %backend,
                            destroyed = e.destroyed,
                            "destroyed the connected UDP sockets translated to a backend taken out of its service"
                        );
                    }
                    if e.left_alone > 0 {
                        debug!(%vip, %backend, sockets = e.left_alone, "UDP sockets connected to the backend not by the socket plane left alone");
                    }
                }
                Err(err) => self.failed(*backend, &err),
            }
        }
    }

    fn failed(&mut self, backend: SocketAddr, err: &DiagError) {
        // A fresh socket next time, in case this one's state is the trouble.
        self.diag = None;
        if self.warned {
            debug!(%backend, "moving connected UDP sockets failed: {err}");
            return;
        }
        self.warned = true;
        match err.missing_feature() {
            Some(what) => warn!(
                %backend,
                "connected UDP sockets of backends taken out are not moved: this kernel lacks {what} ({err})"
            ),
            None => warn!(
                %backend,
                "moving connected UDP sockets off a backend taken out failed: {err}"
            ),
        }
    }

    fn expire_one(
        &mut self,
        maps: &mut SockMaps,
        vip: SocketAddr,
        backend: SocketAddr,
    ) -> Result<Expired, DiagError> {
        let diag = match &mut self.diag {
            Some(d) => d,
            None => self.diag.insert(SockDiag::open()?),
        };
        let mut e = Expired::default();
        let vips = socket_forms(vip);
        for (family, form) in socket_forms(backend) {
            let Some((_, vip_form)) = vips.iter().find(|(f, _)| *f == family) else {
                continue;
            };
            for s in diag.connected_udp(family, backend.port())? {
                if s.family != family || s.dst() != form {
                    continue;
                }
                let key = reverse_key(s.id.cookie, family, form);
                // A record that cannot be read proves nothing: the socket is left alone.
                let record = maps.peer(&key).unwrap_or(None);
                if !translated_from(record.as_ref(), family, *vip_form) {
                    e.left_alone += 1;
                    continue;
                }
                if diag.destroy(&s)? {
                    e.destroyed += 1;
                    // The kernel disconnected the socket: at its close the release hook
                    // no longer knows its peer, so its record goes now.
                    if let Err(err) = maps.remove_peer(&key) {
                        debug!(
                            cookie = s.id.cookie,
                            "removing a destroyed socket's record: {err}"
                        );
                    }
                }
            }
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::ServiceKey;

    #[test]
    fn only_the_plane_s_udp_record_of_that_vip_counts() {
        let vip: SocketAddr = "10.9.0.1:53".parse().unwrap();
        let rec = SockPeer {
            addr: octets(vip.ip()),
            port: 53,
            family: AF_INET,
            protocol: IPPROTO_UDP,
            backend_id: 1,
            gen: 1,
            service_id: 1,
        };
        assert!(translated_from(Some(&rec), AF_INET, vip));
        assert!(!translated_from(None, AF_INET, vip));
        let other: SocketAddr = "10.9.0.2:53".parse().unwrap();
        assert!(!translated_from(Some(&rec), AF_INET, other));
        let tcp = SockPeer { protocol: 6, ..rec };
        assert!(!translated_from(Some(&tcp), AF_INET, vip));
        let k = reverse_key(5, AF_INET, "10.1.0.2:53".parse().unwrap());
        assert_eq!(
            (k.cookie, k.port, k.family, k.dir),
            (5, 53, AF_INET, PEER_REVERSE)
        );
        assert_eq!(&k.addr[..4], &[10, 1, 0, 2]);
        let forms = socket_forms(vip);
        assert_eq!(
            forms[1],
            (AF_INET6, "[::ffff:10.9.0.1]:53".parse().unwrap())
        );
    }

    #[test]
    fn backends_taken_out_of_a_udp_service() {
        let k = |p| {
            ServiceKey::Addr(crate::model::Vip::new(
                crate::model::Protocol::Udp,
                format!("10.9.0.1:{p}").parse().unwrap(),
            ))
        };
        let spec = |p: u16, protocol, backends: &[(&str, u32)]| SockServiceSpec {
            vip: format!("10.9.0.1:{p}").parse().unwrap(),
            protocol,
            backends: backends
                .iter()
                .map(|(a, w)| (a.parse().unwrap(), *w))
                .collect(),
            persistence: None,
        };
        let before = BTreeMap::from([
            (
                k(53),
                spec(
                    53,
                    IPPROTO_UDP,
                    &[("10.1.0.1:53", 1), ("10.1.0.2:53", 2), ("10.1.0.3:53", 0)],
                ),
            ),
            (k(54), spec(54, 6, &[("10.1.0.1:54", 1)])),
            (k(55), spec(55, IPPROTO_UDP, &[("10.1.0.1:55", 1)])),
        ]);
        let after = BTreeMap::from([
            (k(53), spec(53, IPPROTO_UDP, &[("10.1.0.1:53", 0)])),
            (k(54), spec(54, 6, &[("10.1.0.1:54", 0)])),
        ]);
        // As the plane asks: each service that has a next spec, against it.
        let left: Vec<_> = before
            .iter()
            .filter_map(|(key, old)| after.get(key).map(|new| taken_out(old, new)))
            .flatten()
            .collect();
        let vip: SocketAddr = "10.9.0.1:53".parse().unwrap();
        assert_eq!(
            left,
            vec![
                (vip, "10.1.0.2:53".parse().unwrap()),
                (vip, "10.1.0.3:53".parse().unwrap())
            ]
        );
    }
}
