//! What every hook does with a connection: normalise its addresses, check that it goes
//! to a managed VIP, and join it to the real backend IPVS chose.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use vipd_common::{ConnEvent, EventKind, FlowKey, VipKey, AF_INET, AF_INET6, IPPROTO_TCP};

use crate::maps::{CONNS, FWMARK_SERVICES, VIPS, VIP_PORTS};

/// Whether `a` is an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`).
#[inline(always)]
fn mapped(a: &[u8; 16]) -> bool {
    a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff
}

/// An IPv6 connection to an IPv4-mapped address (`::ffff:a.b.c.d`) is an IPv4 one: it
/// becomes plain IPv4, and the unused twelve bytes of an IPv4 address are zeroed, so
/// IPv4 connections from dual-stack sockets match the IPv4 addresses IPVS sees. The
/// destination alone decides (the filter reads nothing else): a source that is not
/// mapped is the unspecified address of a socket not bound yet, and becomes 0.0.0.0.
#[inline(always)]
pub fn normalise(family: &mut u8, saddr: &mut [u8; 16], daddr: &mut [u8; 16]) {
    if u16::from(*family) == AF_INET6 && mapped(daddr) {
        *family = AF_INET as u8;
        if mapped(saddr) {
            saddr.copy_within(12..16, 0);
            saddr[4..].fill(0);
        } else {
            saddr.fill(0);
        }
        fold(daddr);
    } else if u16::from(*family) == AF_INET {
        saddr[4..].fill(0);
        daddr[4..].fill(0);
    }
}

/// `::ffff:a.b.c.d` to `a.b.c.d` and twelve zero bytes.
#[inline(always)]
fn fold(a: &mut [u8; 16]) {
    a.copy_within(12..16, 0);
    a[4..].fill(0);
}

/// An address of a socket of `family` (AF_INET or AF_INET6) as it holds it: four bytes
/// and zeroes for IPv4 (read by `v4`), sixteen for IPv6 (by `v6`).
#[inline(always)]
pub fn address(
    family: u16,
    v4: impl FnOnce() -> Result<[u8; 4], i32>,
    v6: impl FnOnce() -> Result<[u8; 16], i32>,
) -> Result<[u8; 16], i32> {
    if family == AF_INET {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&v4()?);
        Ok(a)
    } else {
        v6()
    }
}

/// Whether `family` is IPv4 or IPv6.
#[inline(always)]
pub fn is_ip(family: u16) -> bool {
    family == AF_INET || family == AF_INET6
}

/// A TCP connection's destination, as the filter reads it before anything else.
#[derive(Clone, Copy)]
pub struct Destination {
    /// The socket's own family (AF_INET6 for a dual-stack socket talking IPv4).
    pub family: u16,
    /// The destination as a `VIPS` key, normalised as by [`normalise`].
    pub key: VipKey,
}

impl Destination {
    #[inline(always)]
    pub fn new(family: u16, mut addr: [u8; 16], port: u16) -> Self {
        let mut key_family = family as u8;
        if family == AF_INET6 && mapped(&addr) {
            key_family = AF_INET as u8;
            fold(&mut addr);
        }
        Self {
            family,
            key: VipKey {
                addr,
                port,
                family: key_family,
                protocol: IPPROTO_TCP as u8,
            },
        }
    }

    /// The event of `kind` of the connection from `saddr:sport` (`saddr` as the socket
    /// holds it: four bytes and zeroes for IPv4) of socket `sock` to here.
    #[inline(always)]
    pub fn event(&self, kind: EventKind, sock: u64, mut saddr: [u8; 16], sport: u16) -> ConnEvent {
        if self.family == AF_INET6 && u16::from(self.key.family) == AF_INET {
            if mapped(&saddr) {
                fold(&mut saddr);
            } else {
                saddr.fill(0);
            }
        }
        ConnEvent {
            // SAFETY: a helper without arguments.
            ts_ns: unsafe { bpf_ktime_get_ns() },
            sock,
            kind: kind as u8,
            family: self.key.family,
            protocol: IPPROTO_TCP as u8,
            sport,
            dport: self.key.port,
            saddr,
            daddr: self.key.addr,
            ..ConnEvent::default()
        }
    }
}

/// Whether some VIP uses destination port `port`: the first test of every connection,
/// an array lookup.
#[inline(always)]
pub fn vip_port(port: u16) -> bool {
    matches!(VIP_PORTS.get(u32::from(port)), Some(&p) if p != 0)
}

/// Whether `key` is a VIP vipd manages.
#[inline(always)]
pub fn is_vip(key: &VipKey) -> bool {
    VIPS.get_ptr(key).is_some()
}

/// Whether fwmark services are watched: only then can a connection to an address that
/// is no VIP be one vipd follows (see [`fwmark_scheduled`]).
#[inline(always)]
pub fn fwmark_services() -> bool {
    matches!(FWMARK_SERVICES.get(0), Some(&n) if n > 0)
}

/// Whether IPVS scheduled the event's connection for a fwmark service vipd manages
/// (its `CONNS` entry carries the mark).
#[inline(always)]
pub fn fwmark_scheduled(ev: &ConnEvent) -> bool {
    match CONNS.get_ptr(&flow_key(ev)) {
        // SAFETY: a value pointer the map lookup just returned.
        Some(b) => unsafe { (*b).fwmark != 0 },
        None => false,
    }
}

/// Whether the event's destination is a VIP that vipd manages, or the connection was
/// scheduled by a fwmark service vipd manages (looked up only while such services
/// exist).
#[inline(always)]
pub fn watched(ev: &ConnEvent) -> bool {
    watched_vip(ev.daddr, ev.dport, ev.family, ev.protocol)
        || (fwmark_services() && fwmark_scheduled(ev))
}

/// Whether `addr:port` (`protocol`) is a VIP that vipd manages.
#[inline(always)]
pub fn watched_vip(addr: [u8; 16], port: u16, family: u8, protocol: u8) -> bool {
    let key = VipKey {
        addr,
        port,
        family,
        protocol,
    };
    VIPS.get_ptr(&key).is_some()
}

#[inline(always)]
pub fn flow_key(ev: &ConnEvent) -> FlowKey {
    FlowKey {
        client: ev.saddr,
        vip: ev.daddr,
        cport: ev.sport,
        vport: ev.dport,
        family: ev.family,
        protocol: ev.protocol,
        _pad: [0; 2],
    }
}

/// Fills in the real backend if IPVS has chosen one for this connection. A connection
/// whose source port is not bound yet (its CLOSE -> SYN_SENT) has sent nothing IPVS
/// could have scheduled, so it is not looked up.
#[inline(always)]
pub fn attribute(ev: &mut ConnEvent) {
    if ev.sport == 0 {
        return;
    }
    if let Some(b) = CONNS.get_ptr(&flow_key(ev)) {
        // SAFETY: a value pointer the map lookup just returned.
        let b = unsafe { &*b };
        ev.backend_addr = b.addr;
        ev.backend_port = b.port;
        ev.backend_family = b.family;
        ev.fwmark = b.fwmark;
    }
}

#[inline(always)]
pub fn is_ipv6(family: u8) -> bool {
    u16::from(family) == AF_INET6
}
