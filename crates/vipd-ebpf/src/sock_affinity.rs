//! Persistence (session affinity) for services that have it: a client keeps the backend
//! it was given while it keeps connecting (or sending) within the service's timeout. On
//! a client host the client is the host itself, so a client here is a network namespace
//! and the socket's bound source address masked to the service's prefix (all zero when
//! the socket is not bound). An entry whose time ran out, or whose backend left the
//! service's selection (weight 0, quarantine, removal) or its id, gives way to a fresh
//! weighted choice. Services without persistence never get here.
//!
//! A TCP connection holds its client's entry while it is open, as a connection an IPVS
//! template controls keeps the template: the connect hook records which entry the
//! socket belongs to (`SOCK_STICKY_TCP`), `sock_ops` counts it in the entry's `open`
//! when its SYN leaves (from then on a close is sure to be seen) and uncounts it when
//! it closes, which also restarts the timeout. An entry with a connection open does not
//! expire. A count is lost only if the connection's record is evicted (more sticky TCP
//! connections open at once than the map holds): its entry then stays until its
//! backend leaves the selection or the LRU map evicts it.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    helpers::{bpf_get_netns_cookie, bpf_ktime_get_ns},
    programs::SockAddrContext,
    EbpfContext,
};
use vipd_common::sock::{SockAffinity, SockAffinityKey, SockBackend, SockService, SockStickyConn};

use crate::{
    sock_addr::{read_addr, sock},
    sock_maps::{SOCK_AFFINITY, SOCK_STICKY_TCP},
};

const NS_PER_S: u64 = 1_000_000_000;

/// The client of `svc` making this call. `v6`: the hook is an IPv6 one; `mapped`: an
/// IPv6 socket reaching an IPv4 VIP, whose source counts in its IPv4 form.
#[inline(always)]
pub fn client(ctx: &SockAddrContext, svc: &SockService, v6: bool, mapped: bool) -> SockAffinityKey {
    // SAFETY: the helper takes the program's own context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    let mut src = source(ctx, v6);
    if mapped {
        let a = src;
        src = if a[..10] == [0u8; 10] && a[10] == 0xff && a[11] == 0xff {
            [
                a[12], a[13], a[14], a[15], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ]
        } else {
            [0u8; 16]
        };
    }
    let mut addr = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        addr[i] = src[i] & svc.affinity_mask[i];
        i += 1;
    }
    SockAffinityKey {
        netns,
        addr,
        service_id: svc.service_id,
        _pad: 0,
    }
}

/// The socket's bound source address (zero if unbound).
#[inline(always)]
fn source(ctx: &SockAddrContext, v6: bool) -> [u8; 16] {
    // SAFETY: `sk` of a sock_addr context is the (full) socket the call is made on; its
    // address fields are read with one 4-byte load each, as the verifier allows.
    unsafe {
        let sk = sock(ctx);
        read_addr(v6, &(*sk).src_ip4, &(*sk).src_ip6)
    }
}

/// The backend id `client` sticks to, if its entry is still good: holding a connection
/// open or used within the timeout, and its backend `live` (in the selection, same
/// `gen`). A good entry is refreshed.
#[inline(always)]
pub fn sticky(
    client: &SockAffinityKey,
    svc: &SockService,
    live: impl Fn(u32, u32) -> bool,
) -> Option<u32> {
    let a = SOCK_AFFINITY.get_ptr_mut(client)?;
    // SAFETY: a value pointer the map lookup just returned, used within this run.
    let a = unsafe { &mut *a };
    // SAFETY: a plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let timeout = u64::from(svc.affinity_s) * NS_PER_S;
    if !a.holds(now, timeout) || !live(a.backend_id, a.gen) {
        return None;
    }
    a.last_ns = now;
    Some(a.backend_id)
}

/// Records that `client` now sticks to backend `id`.
#[inline(always)]
pub fn stick(client: &SockAffinityKey, id: u32, b: &SockBackend) {
    let v = SockAffinity {
        // SAFETY: a plain helper call.
        last_ns: unsafe { bpf_ktime_get_ns() },
        backend_id: id,
        gen: b.gen,
        addr: b.addr,
        port: b.port,
        family: b.family,
        _pad: 0,
        open: 0,
    };
    // A full map evicts its least recently used client, which chooses afresh next time.
    let _ = SOCK_AFFINITY.insert(client, &v, 0);
}

/// Marks `client`'s entry used now, if it names backend `id` (an unconnected UDP
/// socket's later datagrams keep its client's affinity alive).
#[inline(always)]
pub fn touch(client: &SockAffinityKey, id: u32) {
    if let Some(a) = SOCK_AFFINITY.get_ptr_mut(client) {
        // SAFETY: as in `sticky`.
        let a = unsafe { &mut *a };
        if a.backend_id == id {
            // SAFETY: a plain helper call.
            a.last_ns = unsafe { bpf_ktime_get_ns() };
        }
    }
}

/// Records that TCP socket `cookie` connects to backend `id` (`gen`) as `client`, so
/// that `sock_ops` can count it in the entry once its SYN leaves.
#[inline(always)]
pub fn remember(cookie: u64, client: &SockAffinityKey, id: u32, gen: u32) {
    let conn = SockStickyConn {
        client: *client,
        backend_id: id,
        gen,
    };
    let _ = SOCK_STICKY_TCP.insert(&cookie, &conn, 0);
}

/// The client entry `conn` counts in, if it still names `conn`'s backend (an entry
/// made afresh since, for another backend, is not the one it was counted in).
#[inline(always)]
fn entry_of(conn: &SockStickyConn) -> Option<*mut SockAffinity> {
    let a = SOCK_AFFINITY.get_ptr_mut(&conn.client)?;
    // SAFETY: a value pointer the map lookup just returned, used within this run.
    let same = unsafe { (*a).backend_id == conn.backend_id && (*a).gen == conn.gen };
    same.then_some(a)
}

/// TCP socket `cookie`'s SYN leaves: if it belongs to a client entry, the entry counts
/// it open. If the entry is gone (evicted) or names another backend now, the socket's
/// record goes, so that its close uncounts nothing it did not count.
#[inline(always)]
pub fn hold(cookie: u64) {
    // SAFETY: a hash map lookup; the value is copied out at once.
    let Some(conn) = (unsafe { SOCK_STICKY_TCP.get(&cookie) }).copied() else {
        return;
    };
    match entry_of(&conn) {
        // SAFETY: a map value's field, aligned; other CPUs add to it atomically too.
        Some(a) => unsafe {
            atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(&raw mut (*a).open, 1);
        },
        None => {
            let _ = SOCK_STICKY_TCP.remove(&cookie);
        }
    }
}

/// TCP socket `cookie` closes: if it belongs to a client entry, the entry counts it no
/// more, and its timeout runs from now.
#[inline(always)]
pub fn release(cookie: u64) {
    // SAFETY: a hash map lookup; the value is copied out at once.
    let Some(conn) = (unsafe { SOCK_STICKY_TCP.get(&cookie) }).copied() else {
        return;
    };
    let _ = SOCK_STICKY_TCP.remove(&cookie);
    if let Some(a) = entry_of(&conn) {
        // SAFETY: as in `hold`; `last_ns` is a plain store, as in `sticky`.
        unsafe {
            (*a).last_ns = bpf_ktime_get_ns();
            let open = &raw mut (*a).open;
            if (core::ptr::read_volatile(open) as i32) > 0 {
                atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(open, u32::MAX);
            }
        }
    }
}
