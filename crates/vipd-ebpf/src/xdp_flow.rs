//! Flows of the XDP data plane: choosing a backend through the service's Maglev table,
//! remembering the choice in `XDP_FLOWS` (and how to translate the replies in
//! `XDP_REPLIES`), and the health events a flow's packets reveal.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
};
use vipd_common::xdp::{
    flow_hash, maglev_rehash, stat, XdpBackend, XdpFlow, XdpHealthEvent, XdpHealthKind, XdpReply,
    XdpService, XdpTuple, BACKEND_OUT, FLOW_SYN, MAGLEV_M, MAGLEV_REHASHES, NO_BACKEND,
};

use crate::{
    ring_room::room_for_success,
    xdp_maps::{
        count, XDP_BACKENDS, XDP_FLOWS, XDP_HEALTH, XDP_MAGLEV, XDP_REPLIES, XDP_SYN_WATCH,
    },
};

/// A SYN seen again this long after the last one, with no answer in between, is a
/// retransmission (Linux's first SYN RTO is 1 s; duplicates come within microseconds).
pub const SYN_RETRANSMIT_NS: u64 = 200_000_000;

/// The backend id the service's Maglev table gives this flow, if it names a live one.
/// An entry naming a backend that is out (weight 0, table not yet rewritten) sends the
/// flow to another entry, up to `MAGLEV_REHASHES` times; if every one is out, the flow
/// keeps its own. Not inlined: the caller's stack frame has no room for the search.
#[inline(never)]
pub fn maglev_id(svc: &XdpService, t: &XdpTuple) -> Option<u32> {
    let hash = flow_hash(t);
    let (id, out) = table_entry(svc, hash)?;
    if !out {
        return Some(id);
    }
    let mut k = 1;
    while k <= MAGLEV_REHASHES {
        if let Some((other, false)) = table_entry(svc, maglev_rehash(hash, k)) {
            return Some(other);
        }
        k += 1;
    }
    Some(id)
}

/// The live backend id at the entry for `hash` in the service's table, and whether that
/// backend is out.
#[inline(always)]
fn table_entry(svc: &XdpService, hash: u32) -> Option<(u32, bool)> {
    let index = svc.slot.wrapping_mul(MAGLEV_M) + hash % MAGLEV_M;
    let id = *XDP_MAGLEV.get(index)?;
    if id == NO_BACKEND {
        return None;
    }
    match XDP_BACKENDS.get(id) {
        Some(b) if b.gen != 0 => Some((id, b.flags & BACKEND_OUT != 0)),
        _ => None,
    }
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

/// Schedules the flow `t` to backend `id`: records both directions. `syn_ns`: when the
/// flow's first SYN passed, 0 if it did not begin with one. Not inlined: the records
/// need their own stack frame.
#[inline(never)]
pub fn schedule(svc: &XdpService, t: &XdpTuple, id: u32, b: &XdpBackend, syn_ns: u64) {
    let syn = syn_ns != 0;
    let f = XdpFlow {
        backend: b.addr,
        // ICMP echo: the backend's "port" is 0, like the VIP's.
        bport: if t.dport == 0 { 0 } else { b.port },
        family: b.family,
        flags: if syn { FLOW_SYN } else { 0 },
        backend_id: id,
        gen: b.gen,
        service_id: svc.service_id,
        syn_ns,
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
    if syn {
        syn_sent(t, &f);
    }
}

/// A SYN of flow `t` left for backend `f`: reported if userspace watches the service's
/// handshakes (one hash lookup otherwise).
#[inline(always)]
pub fn syn_sent(t: &XdpTuple, f: &XdpFlow) {
    if XDP_SYN_WATCH.get_ptr(&f.service_id).is_some() {
        health(XdpHealthKind::SynSent, t, f, 0);
    }
}

/// Reports a health event about the flow `t` (client to VIP) on backend `f`. Not
/// inlined, and written straight into the ring buffer's reserved slot, not built on the
/// stack: the BPF stack (512 bytes over the whole call chain) has no room for the record.
#[inline(never)]
pub fn health(kind: XdpHealthKind, t: &XdpTuple, f: &XdpFlow, icmp: u16) {
    if shed(kind) {
        return;
    }
    let Some(mut slot) = XDP_HEALTH.reserve::<XdpHealthEvent>(0) else {
        count(stat::EVENTS_LOST);
        return;
    };
    let e = slot.as_mut_ptr();
    // SAFETY: `e` points at a reserved, writable record of the right size; every field
    // is written before it is submitted.
    unsafe {
        (*e).ts_ns = bpf_ktime_get_ns();
        (*e).service_id = f.service_id;
        (*e).backend_id = f.backend_id;
        (*e).kind = kind as u8;
        (*e).family = t.family;
        (*e).protocol = t.protocol;
        (*e).icmp_type = (icmp >> 8) as u8;
        (*e).icmp_code = icmp as u8;
        (*e)._pad = [0; 3];
        (*e).cport = t.sport;
        (*e).vport = t.dport;
        (*e).bport = f.bport;
        (*e)._pad1 = 0;
        (*e).client = t.src;
        (*e).vip = t.dst;
        (*e).backend = f.backend;
    }
    slot.submit(wakeup(kind));
}

/// Whether a record of `kind` is shed (and counted) to keep the ring's last quarter
/// for failures ([`crate::ring_room`]).
#[inline(always)]
fn shed(kind: XdpHealthKind) -> bool {
    let success = matches!(kind, XdpHealthKind::Established | XdpHealthKind::SynSent);
    if success && !room_for_success(&XDP_HEALTH) {
        count(stat::EVENTS_SHED);
        return true;
    }
    false
}

/// How a health record wakes the daemon: a failure at once (a backend may have to
/// leave rotation), a success never (the daemon drains those on its tick). The kernel's
/// default, a wake-up only when the reader has caught up, can leave a failure behind
/// successes until that tick.
#[inline(always)]
fn wakeup(kind: XdpHealthKind) -> u64 {
    match kind {
        XdpHealthKind::Established | XdpHealthKind::SynSent => BPF_RB_NO_WAKEUP.into(),
        _ => BPF_RB_FORCE_WAKEUP.into(),
    }
}

/// Reports a health event about a flow known from its reply side: `r` is the tuple the
/// backend sends (backend -> client), `rep` how it translates. Written straight into the
/// ring buffer, like [`health`].
#[inline(never)]
pub fn health_reply(kind: XdpHealthKind, r: &XdpTuple, rep: &XdpReply, icmp: u16) {
    if shed(kind) {
        return;
    }
    let Some(mut slot) = XDP_HEALTH.reserve::<XdpHealthEvent>(0) else {
        count(stat::EVENTS_LOST);
        return;
    };
    let e = slot.as_mut_ptr();
    // SAFETY: as in `health`.
    unsafe {
        (*e).ts_ns = bpf_ktime_get_ns();
        (*e).service_id = rep.service_id;
        (*e).backend_id = rep.backend_id;
        (*e).kind = kind as u8;
        (*e).family = r.family;
        (*e).protocol = r.protocol;
        (*e).icmp_type = (icmp >> 8) as u8;
        (*e).icmp_code = icmp as u8;
        (*e)._pad = [0; 3];
        (*e).cport = r.dport;
        (*e).vport = rep.vport;
        (*e).bport = r.sport;
        (*e)._pad1 = 0;
        (*e).client = r.dst;
        (*e).vip = rep.vip;
        (*e).backend = r.src;
    }
    slot.submit(wakeup(kind));
}

/// The client's tuple of a flow known from its reply side (`r`: backend -> client).
#[inline(always)]
pub fn client_tuple(r: &XdpTuple, rep: &XdpReply) -> XdpTuple {
    XdpTuple {
        src: r.dst,
        dst: rep.vip,
        sport: r.dport,
        dport: rep.vport,
        family: r.family,
        protocol: r.protocol,
        _pad: [0; 2],
    }
}
