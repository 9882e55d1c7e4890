//! What every hook does with a connection: normalise its addresses, check that it goes
//! to a managed VIP, and join it to the real backend IPVS chose.

use vipd_common::{ConnEvent, FlowKey, VipKey, AF_INET, AF_INET6};

use crate::maps::{CONNS, FWMARK_SERVICES, VIPS};

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) becomes plain IPv4, and the unused
/// twelve bytes of an IPv4 address are zeroed, so IPv4 connections from dual-stack
/// sockets match the IPv4 addresses IPVS sees.
#[inline(always)]
pub fn normalise(family: &mut u8, saddr: &mut [u8; 16], daddr: &mut [u8; 16]) {
    let mapped = |a: &[u8; 16]| a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff;
    if u16::from(*family) == AF_INET6 && mapped(saddr) && mapped(daddr) {
        *family = AF_INET as u8;
        for a in [saddr, daddr] {
            a.copy_within(12..16, 0);
            a[4..].fill(0);
        }
    } else if u16::from(*family) == AF_INET {
        saddr[4..].fill(0);
        daddr[4..].fill(0);
    }
}

/// Whether the event's destination is a VIP that vipd manages, or the connection was
/// scheduled by a fwmark service vipd manages (its `CONNS` entry carries the mark;
/// looked up only while such services exist).
#[inline(always)]
pub fn watched(ev: &ConnEvent) -> bool {
    if watched_vip(ev.daddr, ev.dport, ev.family, ev.protocol) {
        return true;
    }
    match FWMARK_SERVICES.get(0) {
        Some(&n) if n > 0 => match CONNS.get_ptr(&flow_key(ev)) {
            // SAFETY: a value pointer the map lookup just returned.
            Some(b) => unsafe { (*b).fwmark != 0 },
            None => false,
        },
        _ => false,
    }
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

/// Fills in the real backend if IPVS has chosen one for this connection.
#[inline(always)]
pub fn attribute(ev: &mut ConnEvent) {
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
