//! `vipd_xdp_lb`: the XDP data plane, attached to the balancer's interface.
//!
//! A client's packet to a VIP (TCP, UDP, or ICMP echo) gets a backend from the flow table
//! or, for a new flow, from the service's Maglev table; its destination address and port
//! become the backend's, the IPv4 and L4 checksums are updated incrementally, the MACs
//! come from `bpf_fib_lookup`, and it leaves with `XDP_TX` (same interface) or
//! `XDP_REDIRECT`. A backend's reply is found in `XDP_REPLIES` and translated back: its
//! source becomes the VIP, so the client sees the VIP answer. Anything else passes
//! untouched.
//!
//! # Why a naive rewrite breaks ping (and what else breaks), and what this does instead
//!
//! - **Replies must come back through the balancer.** Rewriting only the destination
//!   makes the backend answer from its own address, straight to the client (same
//!   subnet) or via its default route. The client's stack matches the echo reply (or the
//!   SYN-ACK, the UDP answer) against the VIP it sent to, finds nothing, and drops it:
//!   ping prints nothing and TCP retries SYNs. The backends must route the clients'
//!   addresses through the balancer (their default gateway), and the balancer must undo
//!   the rewrite on the way back. That is the `XDP_REPLIES` map: keyed by the tuple the
//!   backend sends (backend:port -> client:port), it gives the VIP:port to put back as
//!   the source.
//! - **ICMP echo has no ports and no pseudo-header.** The flow key uses the echo
//!   identifier as the client's port (port 0 for the VIP and the backend), so pings from
//!   two processes are two flows and each reply finds its way back. The ICMP checksum
//!   does not cover the IP addresses, so only the IPv4 header checksum changes; applying
//!   the TCP/UDP pseudo-header update to ICMP corrupts every echo (the other classic way
//!   ping "stops working"). ICMPv6 does cover a pseudo-header.
//! - **MAC addresses.** With the destination IP changed, the frame must also be addressed
//!   to the backend's MAC (else the backend's stack drops it as PACKET_OTHERHOST) and
//!   come from the egress interface's. `bpf_fib_lookup` gives both from the kernel's
//!   routing and neighbour tables; when the neighbour is not resolved yet it fails with
//!   `NO_NEIGH` and the rewritten packet is passed to the kernel, which forwards it and
//!   ARPs (see `xdp_fib`). Dropping it instead would wait forever: nothing in XDP ARPs.
//! - **veth needs a receiver for XDP frames.** `XDP_TX`/`XDP_REDIRECT` on a veth hand an
//!   `xdp_frame` to the peer, which accepts it only when the peer runs NAPI: an XDP
//!   program on the peer (`vipd_xdp_pass` here, which passes everything). Without it
//!   the frames are silently dropped and ping gets no answer (the lab test fails that
//!   way without the peer program). Enabling GRO on the peer, the other documented way
//!   to turn its NAPI on, did not deliver XDP_TX frames in our lab on 6.18.
//! - **Checksum offload on veth.** A stack sending over veth leaves the TCP/UDP checksum
//!   unfinished (`CHECKSUM_PARTIAL`: only the pseudo-header sum is in the field). An
//!   xdp_frame cannot carry "finish this checksum", so after `XDP_TX` the receiver sees a
//!   wrong checksum and drops the packet. Real NICs deliver complete checksums; in a veth
//!   lab, turn TX checksum offload off on the senders (`ethtool -K <dev> tx off`).
//! - **Health.** The same packets show failures: an RST as the backend's first answer to
//!   a SYN is a refusal, a SYN seen again after 200 ms with no answer is a
//!   retransmission, an ICMP destination unreachable about a flow names its backend;
//!   each is one record in `XDP_HEALTH`. A SYN of a connection attempt that has had no
//!   answer is rescheduled if Maglev now picks another backend (a backend taken out of
//!   rotation while a client waits on it), as IPVS does with `expire_nodest_conn`.
//!
//! Not balanced (passed to the kernel, counted): IP fragments (only the first carries
//! ports, so the others could not follow it), packets with VLAN tags, IPv4 headers with a
//! wrong checksum are dropped (counted), and truncated packets are passed untouched.

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};
use vipd_common::{
    xdp::{stat, XdpHealthKind, XdpTuple, FLOW_REPLIED, FLOW_SYN, IPPROTO_ICMP},
    VipKey, AF_INET, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::{
    xdp_csum::Delta,
    xdp_fib::forward_v4,
    xdp_flow::{self, SYN_RETRANSMIT_NS},
    xdp_icmp_err,
    xdp_maps::{count, XDP_FLOWS, XDP_REPLIES, XDP_SERVICES},
    xdp_parse::{ip4, l4, Packet, Short, ETH_HLEN, ETH_P_IP, TCP_ACK, TCP_RST, TCP_SYN},
};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_ECHO: u8 = 8;

#[xdp]
pub fn vipd_xdp_lb(ctx: XdpContext) -> u32 {
    count(stat::RX);
    let pkt = Packet { ctx: &ctx };
    match run(&pkt) {
        Ok(action) => action,
        Err(Short) => {
            count(stat::TRUNCATED);
            xdp_action::XDP_PASS
        }
    }
}

/// Passes everything. Attached to the far end of a veth, it makes the peer run NAPI so
/// that frames sent with `XDP_TX`/`XDP_REDIRECT` are received (see the module doc).
#[xdp]
pub fn vipd_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The parts of an IPv4 packet the balancer looks at.
pub struct V4 {
    /// IPv4 header length in bytes (20..=60).
    pub ihl: usize,
    /// Offset of the L4 header.
    pub l4: usize,
    pub proto: u8,
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
}

#[inline(always)]
fn not_ours() -> u32 {
    count(stat::NOT_OURS);
    xdp_action::XDP_PASS
}

#[inline(always)]
pub fn addr16(a: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[0] = a[0];
    out[1] = a[1];
    out[2] = a[2];
    out[3] = a[3];
    out
}

#[inline(always)]
pub fn addr4(a: &[u8; 16]) -> [u8; 4] {
    [a[0], a[1], a[2], a[3]]
}

#[inline(always)]
fn run(pkt: &Packet<'_>) -> Result<u32, Short> {
    match pkt.be16(12)? {
        ETH_P_IP => v4(pkt),
        _ => Ok(not_ours()),
    }
}

#[inline(always)]
fn v4(pkt: &Packet<'_>) -> Result<u32, Short> {
    let ip = ETH_HLEN;
    let vihl = pkt.bytes::<2>(ip)?[0];
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 {
        return Ok(not_ours());
    }
    // Fixed fields first: a check of the variable length here would let the compiler
    // drop the constant checks below, which the verifier needs.
    let proto = pkt.bytes::<2>(ip + ip4::TTL)?[1];
    let frag = pkt.be16(ip + ip4::FRAG)?;
    let saddr = pkt.bytes::<4>(ip + ip4::SADDR)?;
    let daddr = pkt.bytes::<4>(ip + ip4::DADDR)?;
    if !pkt.has(ip, ihl) {
        return Err(Short);
    }
    if proto != IPPROTO_TCP as u8 && proto != IPPROTO_UDP as u8 && proto != IPPROTO_ICMP {
        return Ok(not_ours());
    }
    if frag & 0x3fff != 0 {
        count(stat::FRAGMENTS);
        return Ok(xdp_action::XDP_PASS);
    }
    let h = V4 {
        ihl,
        l4: ip + ihl,
        proto,
        saddr,
        daddr,
    };
    // (client-side "port", VIP-side "port"), or for replies (backend, client).
    let (sport, dport, tcp_flags) = if proto == IPPROTO_ICMP {
        let kind = pkt.bytes::<2>(h.l4)?[0];
        let id = pkt.be16(h.l4 + l4::ICMP_ID)?;
        match kind {
            ICMP_ECHO => (id, 0, 0),
            ICMP_ECHO_REPLY => (0, id, 0),
            ICMP_DEST_UNREACH => return xdp_icmp_err::from_backend_v4(pkt, &h),
            _ => return Ok(not_ours()),
        }
    } else {
        let flags = if proto == IPPROTO_TCP as u8 {
            pkt.bytes::<2>(h.l4 + l4::TCP_FLAGS - 1)?[1]
        } else {
            // A UDP header must be complete to be rewritten.
            pkt.raw16(h.l4 + l4::UDP_CHECK)?;
            0
        };
        (
            pkt.be16(h.l4 + l4::SPORT)?,
            pkt.be16(h.l4 + l4::DPORT)?,
            flags,
        )
    };
    let t = XdpTuple {
        src: addr16(h.saddr),
        dst: addr16(h.daddr),
        sport,
        dport,
        family: AF_INET as u8,
        protocol: proto,
        _pad: [0; 2],
    };
    if !(proto == IPPROTO_ICMP && dport != 0) {
        let key = VipKey {
            addr: t.dst,
            port: dport,
            family: AF_INET as u8,
            protocol: proto,
        };
        if let Some(svc) = XDP_SERVICES.get_ptr(&key) {
            // SAFETY: a value pointer the lookup just returned.
            let svc = unsafe { *svc };
            return forward(pkt, &h, &svc, &t, tcp_flags);
        }
    }
    if let Some(rep) = XDP_REPLIES.get_ptr_mut(&t) {
        return reply(pkt, &h, rep, &t, tcp_flags);
    }
    Ok(not_ours())
}

/// Rewrites the destination (`dst`) or source address and port of an IPv4 packet, with
/// the IPv4 and L4 checksums. ICMP carries no port and no pseudo-header.
#[inline(always)]
pub fn rewrite_v4(
    pkt: &Packet<'_>,
    h: &V4,
    dst: bool,
    addr: [u8; 4],
    port: u16,
) -> Result<(), Short> {
    let ip = ETH_HLEN;
    let (addr_off, port_off) = if dst {
        (ip + ip4::DADDR, h.l4 + l4::DPORT)
    } else {
        (ip + ip4::SADDR, h.l4 + l4::SPORT)
    };
    let old = pkt.bytes::<4>(addr_off)?;
    let d = Delta::new().bytes(&old, &addr);
    let check = pkt.raw16(ip + ip4::CHECK)?;
    pkt.set_raw16(ip + ip4::CHECK, d.apply(check))?;
    pkt.set_bytes(addr_off, &addr)?;
    if h.proto == IPPROTO_ICMP {
        return Ok(());
    }
    let new_port = port.to_be();
    let d = d.word(pkt.raw16(port_off)?, new_port);
    pkt.set_raw16(port_off, new_port)?;
    if h.proto == IPPROTO_TCP as u8 {
        let c = pkt.raw16(h.l4 + l4::TCP_CHECK)?;
        pkt.set_raw16(h.l4 + l4::TCP_CHECK, d.apply(c))?;
    } else {
        let c = pkt.raw16(h.l4 + l4::UDP_CHECK)?;
        pkt.set_raw16(h.l4 + l4::UDP_CHECK, d.apply_udp(c))?;
    }
    Ok(())
}

/// Client to VIP: find or choose the backend, rewrite, send.
#[inline(always)]
fn forward(
    pkt: &Packet<'_>,
    h: &V4,
    svc: &vipd_common::xdp::XdpService,
    t: &XdpTuple,
    tcp_flags: u8,
) -> Result<u32, Short> {
    if !pkt.ipv4_checksum_ok(ETH_HLEN, h.ihl)? {
        count(stat::BAD_CHECKSUM);
        return Ok(xdp_action::XDP_DROP);
    }
    let syn = h.proto == IPPROTO_TCP as u8 && tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let existing = match XDP_FLOWS.get_ptr_mut(t) {
        // SAFETY: a value pointer the lookup just returned.
        Some(p) if xdp_flow::still_valid(unsafe { &*p }) => Some(p),
        _ => None,
    };
    let flow = match existing {
        Some(p) => {
            // SAFETY: a value pointer the lookup just returned; concurrent updates from
            // other CPUs only race on flags, which are advisory.
            let f = unsafe { &mut *p };
            if !syn {
                *f
            } else if f.flags & FLOW_REPLIED != 0 {
                // A new connection on a tuple whose last one was answered: same backend,
                // fresh attempt.
                f.flags = FLOW_SYN;
                f.syn_ns = now;
                let rt = xdp_flow::reply_tuple(t, f);
                if let Some(r) = XDP_REPLIES.get_ptr_mut(&rt) {
                    // SAFETY: as above.
                    unsafe { (*r).flags = 0 };
                }
                *f
            } else {
                // The attempt has had no answer: a retransmission if it is late, and it
                // follows Maglev if its backend left the rotation meanwhile.
                if f.flags & FLOW_SYN != 0 && now.wrapping_sub(f.syn_ns) >= SYN_RETRANSMIT_NS {
                    xdp_flow::health(XdpHealthKind::SynRetransmit, t, f, (0, 0));
                    f.syn_ns = now;
                }
                match xdp_flow::maglev(svc, t) {
                    Some((id, b)) if id != f.backend_id => {
                        xdp_flow::schedule(svc, t, id, &b, true, now)
                    }
                    _ => *f,
                }
            }
        }
        None => match xdp_flow::maglev(svc, t) {
            Some((id, b)) => xdp_flow::schedule(svc, t, id, &b, syn, now),
            None => {
                count(stat::NO_BACKEND);
                return Ok(xdp_action::XDP_DROP);
            }
        },
    };
    rewrite_v4(pkt, h, true, addr4(&flow.backend), flow.bport)?;
    let action = forward_v4(pkt)?;
    if action != xdp_action::XDP_PASS {
        count(stat::FORWARDED);
    }
    Ok(action)
}

/// Backend to client: note the first answer (health), translate back to the VIP, send.
#[inline(always)]
fn reply(
    pkt: &Packet<'_>,
    h: &V4,
    rep: *mut vipd_common::xdp::XdpReply,
    t: &XdpTuple,
    tcp_flags: u8,
) -> Result<u32, Short> {
    if !pkt.ipv4_checksum_ok(ETH_HLEN, h.ihl)? {
        count(stat::BAD_CHECKSUM);
        return Ok(xdp_action::XDP_DROP);
    }
    // SAFETY: a value pointer the lookup in `v4` returned.
    let r = unsafe { &mut *rep };
    if r.flags & FLOW_REPLIED == 0 {
        r.flags |= FLOW_REPLIED;
        let (ct, cf) = xdp_flow::from_reply(t, r);
        if let Some(f) = XDP_FLOWS.get_ptr_mut(&ct) {
            // SAFETY: a value pointer the lookup just returned.
            let f = unsafe { &mut *f };
            if f.backend_id == r.backend_id && f.flags & FLOW_REPLIED == 0 {
                f.flags |= FLOW_REPLIED;
                if f.flags & FLOW_SYN != 0 && h.proto == IPPROTO_TCP as u8 {
                    if tcp_flags & TCP_RST != 0 {
                        xdp_flow::health(XdpHealthKind::Refused, &ct, &cf, (0, 0));
                    } else if tcp_flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK) {
                        xdp_flow::health(XdpHealthKind::Established, &ct, &cf, (0, 0));
                    }
                }
            }
        }
    }
    let (vip, vport) = (addr4(&r.vip), r.vport);
    rewrite_v4(pkt, h, false, vip, vport)?;
    let action = forward_v4(pkt)?;
    if action != xdp_action::XDP_PASS {
        count(stat::REPLIED);
    }
    Ok(action)
}
