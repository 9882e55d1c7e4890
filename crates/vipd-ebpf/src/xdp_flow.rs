//! Flows of the XDP data plane: choosing a backend through the service's Maglev table,
//! remembering the choice in `XDP_FLOWS` (and how to translate the replies in
//! `XDP_REPLIES`), and the health events a flow's packets reveal.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use vipd_common::xdp::{
    flow_hash, stat, XdpBackend, XdpFlow, XdpHealthEvent, XdpHealthKind, XdpReply, XdpService,
    XdpTuple, FLOW_SYN, MAGLEV_M, NO_BACKEND,
};

use crate::xdp_maps::{count, report, XDP_BACKENDS, XDP_FLOWS, XDP_MAGLEV, XDP_REPLIES};

/// A SYN seen again this long after the last one, with no answer in between, is a
/// retransmission (Linux's first SYN RTO is 1 s; duplicates come within microseconds).
pub const SYN_RETRANSMIT_NS: u64 = 200_000_000;

/// The backend the service's Maglev table gives this flow, with its id.
#[inline(always)]
pub fn maglev(svc: &XdpService, t: &XdpTuple) -> Option<(u32, XdpBackend)> {
    let index = svc.slot.wrapping_mul(MAGLEV_M) + flow_hash(t) % MAGLEV_M;
    let id = *XDP_MAGLEV.get(index)?;
    if id == NO_BACKEND {
        return None;
    }
    let b = *XDP_BACKENDS.get(id)?;
    if b.gen == 0 {
        return None;
    }
    Some((id, b))
}

/// Whether the flow's backend is still the one it was scheduled to (not removed, id not
/// reused).
#[inline(always)]
pub fn still_valid(f: &XdpFlow) -> bool {
    match XDP_BACKENDS.get(f.backend_id) {
        Some(b) => b.gen == f.gen && b.gen != 0,
        None => false,
    }
}

/// The tuple the backend's replies carry: the client's tuple with the VIP replaced by
/// the backend, mirrored. ICMP echo keeps the identifier as the client's "port".
#[inline(always)]
pub fn reply_tuple(t: &XdpTuple, f: &XdpFlow) -> XdpTuple {
    XdpTuple {
        src: f.backend,
        dst: t.src,
        sport: f.bport,
        dport: t.sport,
        family: t.family,
        protocol: t.protocol,
        _pad: [0; 2],
    }
}

/// Schedules the flow `t` to backend `id`: records both directions.
#[inline(always)]
pub fn schedule(
    svc: &XdpService,
    t: &XdpTuple,
    id: u32,
    b: &XdpBackend,
    syn: bool,
    now: u64,
) -> XdpFlow {
    let f = XdpFlow {
        backend: b.addr,
        // ICMP echo: the backend's "port" is 0, like the VIP's.
        bport: if t.dport == 0 { 0 } else { b.port },
        family: b.family,
        flags: if syn { FLOW_SYN } else { 0 },
        backend_id: id,
        gen: b.gen,
        service_id: svc.service_id,
        syn_ns: if syn { now } else { 0 },
    };
    let r = XdpReply {
        vip: t.dst,
        vport: t.dport,
        flags: 0,
        _pad: 0,
        backend_id: id,
        service_id: svc.service_id,
        _pad1: 0,
    };
    // A failed insert (out of memory) only costs this flow its stickiness; the next
    // packet is scheduled the same way by Maglev.
    let _ = XDP_FLOWS.insert(t, &f, 0);
    let _ = XDP_REPLIES.insert(&reply_tuple(t, &f), &r, 0);
    count(stat::NEW_FLOWS);
    f
}

/// Reports a health event about the flow `t` (client to VIP) on backend `f`.
#[inline(always)]
pub fn health(kind: XdpHealthKind, t: &XdpTuple, f: &XdpFlow, icmp: (u8, u8)) {
    let ev = XdpHealthEvent {
        // SAFETY: a plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        service_id: f.service_id,
        backend_id: f.backend_id,
        kind: kind as u8,
        family: t.family,
        protocol: t.protocol,
        icmp_type: icmp.0,
        icmp_code: icmp.1,
        _pad: [0; 3],
        cport: t.sport,
        vport: t.dport,
        bport: f.bport,
        _pad1: 0,
        client: t.src,
        vip: t.dst,
        backend: f.backend,
    };
    report(&ev);
}

/// The client's tuple and the flow as far as a reply `r` (backend to client) knows them.
#[inline(always)]
pub fn from_reply(r: &XdpTuple, rep: &XdpReply) -> (XdpTuple, XdpFlow) {
    let t = XdpTuple {
        src: r.dst,
        dst: rep.vip,
        sport: r.dport,
        dport: rep.vport,
        family: r.family,
        protocol: r.protocol,
        _pad: [0; 2],
    };
    let f = XdpFlow {
        backend: r.src,
        bport: r.sport,
        family: r.family,
        flags: 0,
        backend_id: rep.backend_id,
        gen: 0,
        service_id: rep.service_id,
        syn_ns: 0,
    };
    (t, f)
}
