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
//! ports, so the others could not follow it), IPv6 packets with extension headers,
//! packets with VLAN tags; IPv4 headers with a wrong checksum are dropped (counted), and
//! truncated packets are passed untouched.
//!
//! IPv6 works the same way, with two differences that matter: there is no header
//! checksum (the hop limit changes freely), and the ICMPv6 checksum does cover a
//! pseudo-header, so an echo's checksum must follow the address rewrite, unlike ICMPv4.
//! Neighbour discovery is ICMPv6 too and is passed untouched (only echo and errors about
//! our flows are balanced).

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};
use vipd_common::{
    xdp::{
        stat, XdpHealthKind, XdpService, XdpTuple, FLOW_REPLIED, FLOW_SYN, IPPROTO_ICMP,
        IPPROTO_ICMPV6,
    },
    VipKey, AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::{
    xdp_fib::send,
    xdp_flow::{self, SYN_RETRANSMIT_NS},
    xdp_icmp_err,
    xdp_maps::{count, XDP_BACKENDS, XDP_FLOWS, XDP_REPLIES, XDP_SERVICES},
    xdp_parse::{
        ip4, ip6, l4, Packet, Short, ETH_HLEN, ETH_P_IP, ETH_P_IPV6, TCP_ACK, TCP_RST, TCP_SYN,
    },
    xdp_rewrite::rewrite,
};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_ECHO: u8 = 8;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PKT_TOOBIG: u8 = 2;
const ICMPV6_ECHO: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;
/// IPv6 next-header value of the fragment header.
const NEXTHDR_FRAGMENT: u8 = 44;

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

/// The parts of an IP packet the balancer looks at.
pub struct L3 {
    pub v6: bool,
    /// IPv4 header length in bytes (20..=60); 40 for IPv6.
    pub ihl: usize,
    /// Offset of the L4 header.
    pub l4: usize,
    pub proto: u8,
    /// IPv4 addresses in the first four bytes, the rest zero.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
}

impl L3 {
    #[inline(always)]
    pub fn family(&self) -> u8 {
        if self.v6 {
            AF_INET6 as u8
        } else {
            AF_INET as u8
        }
    }

    #[inline(always)]
    fn icmp(&self) -> bool {
        self.proto == IPPROTO_ICMP || self.proto == IPPROTO_ICMPV6
    }

    /// Whether the IP header is intact: the IPv4 header checksum (IPv6 has none).
    #[inline(always)]
    pub fn header_ok(&self, pkt: &Packet<'_>) -> Result<bool, Short> {
        if self.v6 {
            Ok(true)
        } else {
            pkt.ipv4_checksum_ok(ETH_HLEN, self.ihl)
        }
    }
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
fn run(pkt: &Packet<'_>) -> Result<u32, Short> {
    match pkt.be16(12)? {
        ETH_P_IP => Ok(v4(pkt)),
        ETH_P_IPV6 => Ok(v6(pkt)),
        _ => Ok(not_ours()),
    }
}

/// Not inlined (nor `v6`): each path gets its own stack frame, and the BPF stack of
/// 512 bytes could not hold both.
#[inline(never)]
fn v4(pkt: &Packet<'_>) -> u32 {
    verdict(v4_in(pkt))
}

#[inline(always)]
fn v4_in(pkt: &Packet<'_>) -> Result<u32, Short> {
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
    let h = L3 {
        v6: false,
        ihl,
        l4: ip + ihl,
        proto,
        saddr: addr16(saddr),
        daddr: addr16(daddr),
    };
    if proto == IPPROTO_ICMP {
        let kind = pkt.bytes::<2>(h.l4)?[0];
        let id = pkt.be16(h.l4 + l4::ICMP_ID)?;
        return match kind {
            ICMP_ECHO => Ok(dispatch(pkt, &h, u32::from(id) << 16, 0)),
            ICMP_ECHO_REPLY => Ok(dispatch(pkt, &h, u32::from(id), 0)),
            ICMP_DEST_UNREACH => Ok(xdp_icmp_err::from_backend_v4(pkt, &h)),
            _ => Ok(not_ours()),
        };
    }
    ports(pkt, &h)
}

#[inline(never)]
fn v6(pkt: &Packet<'_>) -> u32 {
    verdict(v6_in(pkt))
}

#[inline(always)]
fn v6_in(pkt: &Packet<'_>) -> Result<u32, Short> {
    let ip = ETH_HLEN;
    if pkt.bytes::<2>(ip)?[0] >> 4 != 6 {
        return Ok(not_ours());
    }
    let proto = pkt.bytes::<2>(ip + ip6::NEXTHDR)?[0];
    let saddr = pkt.bytes::<16>(ip + ip6::SADDR)?;
    let daddr = pkt.bytes::<16>(ip + ip6::DADDR)?;
    if proto == NEXTHDR_FRAGMENT {
        count(stat::FRAGMENTS);
        return Ok(xdp_action::XDP_PASS);
    }
    if proto != IPPROTO_TCP as u8 && proto != IPPROTO_UDP as u8 && proto != IPPROTO_ICMPV6 {
        return Ok(not_ours());
    }
    let h = L3 {
        v6: true,
        ihl: ip6::HLEN,
        l4: ip + ip6::HLEN,
        proto,
        saddr,
        daddr,
    };
    if proto == IPPROTO_ICMPV6 {
        let kind = pkt.bytes::<2>(h.l4)?[0];
        return match kind {
            ICMPV6_ECHO => Ok(dispatch(
                pkt,
                &h,
                u32::from(pkt.be16(h.l4 + l4::ICMP_ID)?) << 16,
                0,
            )),
            ICMPV6_ECHO_REPLY => Ok(dispatch(
                pkt,
                &h,
                u32::from(pkt.be16(h.l4 + l4::ICMP_ID)?),
                0,
            )),
            ICMPV6_DEST_UNREACH | ICMPV6_PKT_TOOBIG => Ok(xdp_icmp_err::from_backend_v6(pkt, &h)),
            _ => Ok(not_ours()),
        };
    }
    ports(pkt, &h)
}

/// TCP and UDP: the ports (and TCP flags), then the flow.
#[inline(always)]
fn ports(pkt: &Packet<'_>, h: &L3) -> Result<u32, Short> {
    let flags = if h.proto == IPPROTO_TCP as u8 {
        pkt.bytes::<2>(h.l4 + l4::TCP_FLAGS - 1)?[1]
    } else {
        // A UDP header must be complete to be rewritten.
        pkt.raw16(h.l4 + l4::UDP_CHECK)?;
        0
    };
    let ports =
        u32::from(pkt.be16(h.l4 + l4::SPORT)?) << 16 | u32::from(pkt.be16(h.l4 + l4::DPORT)?);
    Ok(dispatch(pkt, h, ports, flags))
}

/// To a VIP: forward. From a backend of a known flow: reply. Else not ours. `ports`:
/// source port << 16 | destination port; for ICMP echo the identifier stands on the
/// client's side. Not inlined: the tuple and key get their own stack frame.
#[inline(never)]
fn dispatch(pkt: &Packet<'_>, h: &L3, ports: u32, tcp_flags: u8) -> u32 {
    let (sport, dport) = ((ports >> 16) as u16, ports as u16);
    let t = XdpTuple {
        src: h.saddr,
        dst: h.daddr,
        sport,
        dport,
        family: h.family(),
        protocol: h.proto,
        _pad: [0; 2],
    };
    if !(h.icmp() && dport != 0) {
        let key = VipKey {
            addr: t.dst,
            port: dport,
            family: t.family,
            protocol: h.proto,
        };
        if let Some(svc) = XDP_SERVICES.get_ptr(&key) {
            // SAFETY: a value pointer the lookup just returned.
            let svc = unsafe { *svc };
            return forward(pkt, h, &svc, &t, tcp_flags);
        }
    }
    if let Some(rep) = XDP_REPLIES.get_ptr_mut(&t) {
        return reply(pkt, h, rep, &t, tcp_flags);
    }
    not_ours()
}

/// The backend's first answer on a flow: marks the flow answered and reports what a
/// TCP answer to a SYN says (RST: refused; SYN-ACK: established). Not inlined: the
/// flow's records get their own stack frame.
#[inline(never)]
fn first_answer(t: &XdpTuple, r: &vipd_common::xdp::XdpReply, proto: u8, tcp_flags: u8) {
    let ct = xdp_flow::client_tuple(t, r);
    let Some(f) = XDP_FLOWS.get_ptr_mut(&ct) else {
        return;
    };
    // SAFETY: a value pointer the lookup just returned.
    let f = unsafe { &mut *f };
    if f.backend_id != r.backend_id || f.flags & FLOW_REPLIED != 0 {
        return;
    }
    f.flags |= FLOW_REPLIED;
    if f.flags & FLOW_SYN != 0 && proto == IPPROTO_TCP as u8 {
        if tcp_flags & TCP_RST != 0 {
            xdp_flow::health_reply(XdpHealthKind::Refused, t, r, 0);
        } else if tcp_flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK) {
            xdp_flow::health_reply(XdpHealthKind::Established, t, r, 0);
        }
    }
}

/// A verdict from a path that may find the packet short. Functions that are not
/// inlined return this plain `u32`: a returned `Result` goes through a stack slot whose
/// address LLVM hands back in r0, which the verifier rejects ("cannot return stack
/// pointer"), and it would take one of the five argument registers.
#[inline(always)]
pub fn verdict(r: Result<u32, Short>) -> u32 {
    match r {
        Ok(action) => action,
        Err(Short) => {
            count(stat::TRUNCATED);
            xdp_action::XDP_PASS
        }
    }
}

/// Client to VIP. Not inlined (nor `reply`): its flow records need their own stack
/// frame; it returns a plain verdict because BPF calls take at most five arguments and a
/// `Result` would add a sixth.
#[inline(never)]
fn forward(pkt: &Packet<'_>, h: &L3, svc: &XdpService, t: &XdpTuple, tcp_flags: u8) -> u32 {
    verdict(forward_in(pkt, h, svc, t, tcp_flags))
}

/// Find or choose the backend, rewrite, send.
#[inline(always)]
fn forward_in(
    pkt: &Packet<'_>,
    h: &L3,
    svc: &XdpService,
    t: &XdpTuple,
    tcp_flags: u8,
) -> Result<u32, Short> {
    if !h.header_ok(pkt)? {
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
    // Where the packet goes: an existing flow's backend, or one Maglev picks now.
    let syn_ns = if syn { now } else { 0 };
    let mut id = 0;
    if let Some(p) = existing {
        // SAFETY: a value pointer the lookup just returned; concurrent updates from
        // other CPUs only race on flags, which are advisory.
        let f = unsafe { &mut *p };
        id = f.backend_id;
        if syn && f.flags & FLOW_REPLIED != 0 {
            // A new connection on a tuple whose last one was answered: same backend,
            // fresh attempt.
            f.flags = FLOW_SYN;
            f.syn_ns = now;
            let rt = xdp_flow::reply_tuple(t, f);
            if let Some(r) = XDP_REPLIES.get_ptr_mut(&rt) {
                // SAFETY: as above.
                unsafe { (*r).flags = 0 };
            }
            xdp_flow::syn_sent(t, f);
        } else if syn {
            // The attempt has had no answer: a retransmission if it is late, and it
            // follows Maglev if its backend left the rotation meanwhile.
            if f.flags & FLOW_SYN != 0 && now.wrapping_sub(f.syn_ns) >= SYN_RETRANSMIT_NS {
                xdp_flow::health(XdpHealthKind::SynRetransmit, t, f, 0);
                f.syn_ns = now;
            }
            id = 0;
        }
    }
    if id == 0 {
        // No flow, or a SYN that may move: Maglev.
        let Some(picked) = xdp_flow::maglev_id(svc, t) else {
            count(stat::NO_BACKEND);
            return Ok(xdp_action::XDP_DROP);
        };
        let same = match existing {
            // SAFETY: as above.
            Some(p) => (unsafe { (*p).backend_id }) == picked,
            None => false,
        };
        if !same {
            let Some(b) = XDP_BACKENDS.get_ptr(picked) else {
                return Ok(xdp_action::XDP_DROP);
            };
            // SAFETY: a value pointer the lookup just returned.
            xdp_flow::schedule(svc, t, picked, unsafe { &*b }, syn_ns);
        }
        id = picked;
    }
    let Some(b) = XDP_BACKENDS.get_ptr(id) else {
        return Ok(xdp_action::XDP_DROP);
    };
    // SAFETY: a value pointer the lookup just returned.
    let b = unsafe { &*b };
    if b.family != t.family || b.gen == 0 {
        // A backend of the other family (userspace never writes one), or one freed.
        return Ok(xdp_action::XDP_DROP);
    }
    // ICMP echo: the backend's "port" is 0, like the VIP's.
    let bport = if t.dport == 0 { 0 } else { b.port };
    rewrite(pkt, h, true, &b.addr, bport)?;
    let action = send(pkt, h.v6)?;
    if action != xdp_action::XDP_PASS {
        count(stat::FORWARDED);
    }
    Ok(action)
}

/// Backend to client.
#[inline(never)]
fn reply(
    pkt: &Packet<'_>,
    h: &L3,
    rep: *mut vipd_common::xdp::XdpReply,
    t: &XdpTuple,
    tcp_flags: u8,
) -> u32 {
    verdict(reply_in(pkt, h, rep, t, tcp_flags))
}

/// Note the first answer (health), translate back to the VIP, send.
#[inline(always)]
fn reply_in(
    pkt: &Packet<'_>,
    h: &L3,
    rep: *mut vipd_common::xdp::XdpReply,
    t: &XdpTuple,
    tcp_flags: u8,
) -> Result<u32, Short> {
    if !h.header_ok(pkt)? {
        count(stat::BAD_CHECKSUM);
        return Ok(xdp_action::XDP_DROP);
    }
    // SAFETY: a value pointer the lookup in `dispatch` returned.
    let r = unsafe { &mut *rep };
    if r.flags & FLOW_REPLIED == 0 {
        r.flags |= FLOW_REPLIED;
        first_answer(t, r, h.proto, tcp_flags);
    }
    let (vip, vport) = (r.vip, r.vport);
    rewrite(pkt, h, false, &vip, vport)?;
    let action = send(pkt, h.v6)?;
    if action != xdp_action::XDP_PASS {
        count(stat::REPLIED);
    }
    Ok(action)
}
