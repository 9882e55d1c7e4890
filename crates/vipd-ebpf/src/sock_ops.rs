//! `vipd_sock_ops` (cgroup `sock_ops`): how a TCP connection the connect hook sent to a
//! backend fares, for the health state machine. At `TCP_CONNECT_CB` (the SYN goes out) a
//! translated connection asks for RTO and state callbacks; an RTO while it is still in
//! SYN_SENT is a SYN retransmission (the backend has not answered),
//! `ACTIVE_ESTABLISHED_CB` is a success, and the move to CLOSE removes the socket's
//! translation record. A connection of a service with persistence holds its client's
//! entry open from its SYN to its close (`sock_affinity`). (An RST during the handshake
//! is `sock_reset`'s: a refusal.) The socket's peer is the backend itself (there is no
//! NAT), so the record names the VIP and the event needs no other attribution.
//! Connections not to a VIP are left alone: no flags, no events.
//!
//! `TIMEOUT_INIT` (asked while the connection is set up, right after `TCP_CONNECT_CB`
//! and before the SYN leaves): a connection translated from a TCP VIP that has an
//! initial SYN timeout in `SOCK_SYN_RTO` gets it (jiffies) instead of the kernel's 1 s.
//! For a VIP whose timeout is adaptive, the SYN is reported as it leaves
//! (`TCP_CONNECT_CB`), so that userspace learns the handshake times. The RTO that
//! follows an unanswered SYN is reported as above.
//!
//! The steps of one `connect()` hand on what they found in this CPU's
//! `SOCK_CONNECT_NEXT` slot (`sock_connect_next`). The connect hook leaves that it
//! translated the socket, whether the connection holds a client entry, and its VIP's
//! SYN timeout: `TCP_CONNECT_CB` then looks up nothing (but the record, to report the
//! SYN of an adaptive VIP). `TCP_CONNECT_CB` leaves the timeout for `TIMEOUT_INIT`,
//! which stops at once for a connection without callbacks (not translated). Where the
//! slot is another socket's (the task moved CPU in between), the socket's record, its
//! client entry and its VIP's timeout are looked up.

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_RTO_CB, BPF_SOCK_OPS_RTO_CB_FLAG,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB,
        BPF_SOCK_OPS_TIMEOUT_INIT,
    },
    helpers::bpf_get_socket_cookie,
    macros::sock_ops,
    programs::SockOpsContext,
    EbpfContext,
};
use vipd_common::{
    health::HealthKind,
    sock::{
        SockConnectNext, CONNECT_REPORT_SYN, CONNECT_STICKY, CONNECT_TIMED, CONNECT_TRANSLATED,
        PEER_REVERSE,
    },
    AF_INET, AF_INET6,
};

use crate::{
    sock_addr::{remote_port, Addr},
    sock_affinity::{hold, release},
    sock_connect_next::{leave, take},
    sock_health::emit,
    sock_maps::SOCK_PEERS,
    sock_select::peer_key,
    sock_syn_rto::syn_rto,
};

/// A `sock_ops` program's verdict: let the kernel go on.
const CONTINUE: u32 = 1;
/// `TCP_SYN_SENT` and `TCP_CLOSE` (include/net/tcp_states.h).
const TCP_SYN_SENT: u32 = 2;
const TCP_CLOSE: u32 = 7;

#[sock_ops]
pub fn vipd_sock_ops(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op != BPF_SOCK_OPS_TCP_CONNECT_CB
        && op != BPF_SOCK_OPS_RTO_CB
        && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB
        && op != BPF_SOCK_OPS_STATE_CB
        && op != BPF_SOCK_OPS_TIMEOUT_INIT
    {
        return CONTINUE;
    }
    // A translated connection calls back at each of its state changes; only the last
    // one (CLOSE) is of use, so the others stop here, before the socket is read.
    if op == BPF_SOCK_OPS_STATE_CB && ctx.arg(1) != TCP_CLOSE {
        return CONTINUE;
    }
    // Established and the SYN timeout (which the kernel asks after `TCP_CONNECT_CB`):
    // only a connection this program asked callbacks of at its SYN has a record, so any
    // other stops here, before the map lookup.
    if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || op == BPF_SOCK_OPS_TIMEOUT_INIT)
        && ctx.cb_flags() & BPF_SOCK_OPS_STATE_CB_FLAG == 0
    {
        return CONTINUE;
    }
    // SAFETY: the helper takes the program's own context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if op == BPF_SOCK_OPS_TIMEOUT_INIT {
        if let Some(next) = take(cookie, CONNECT_TIMED) {
            if next.jiffies != 0 {
                ctx.set_reply(next.jiffies);
            }
            return CONTINUE;
        }
    }
    // The SYN goes out in the `connect()` whose hook translated it: what it needs is in
    // this CPU's slot, unless the task moved CPU in between.
    let handed = if op == BPF_SOCK_OPS_TCP_CONNECT_CB {
        take(cookie, CONNECT_TRANSLATED)
    } else {
        None
    };
    if let Some(n) = handed {
        connecting(&ctx, cookie, n.has(CONNECT_STICKY), n.jiffies);
        if !n.has(CONNECT_REPORT_SYN) {
            return CONTINUE;
        }
    }
    let Some((family, local, backend)) = ends(&ctx) else {
        return CONTINUE;
    };
    let key = peer_key(cookie, &backend, family, PEER_REVERSE);
    if op == BPF_SOCK_OPS_STATE_CB {
        // The connection is gone: its translation goes too, so that the LRU map holds
        // live sockets (a reset was reported before the kernel closes the socket), and
        // its client's entry, if it held one open, counts it no more.
        let _ = SOCK_PEERS.remove(&key);
        release(cookie);
        return CONTINUE;
    }
    // SAFETY: a hash map lookup; the value is copied out at once.
    let Some(rec) = (unsafe { SOCK_PEERS.get(&key) }).copied() else {
        return CONTINUE;
    };
    if op == BPF_SOCK_OPS_TIMEOUT_INIT {
        if let Some(rto) = syn_rto(&rec) {
            ctx.set_reply(rto.jiffies);
        }
    } else if op == BPF_SOCK_OPS_TCP_CONNECT_CB {
        if handed.is_some() {
            // Set up from the slot already; here only to report an adaptive VIP's SYN.
            emit(HealthKind::SynSent, &rec, family, &local, &backend);
        } else {
            // Without the connect hook's word, the record says that the connection was
            // translated, `hold` looks for a client entry, and the timeout is looked up.
            let rto = syn_rto(&rec);
            connecting(&ctx, cookie, true, rto.map_or(0, |r| r.jiffies));
            if rto.is_some_and(|r| r.report_syn != 0) {
                emit(HealthKind::SynSent, &rec, family, &local, &backend);
            }
        }
    } else if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB {
        emit(HealthKind::Established, &rec, family, &local, &backend);
    } else if state(&ctx) == TCP_SYN_SENT {
        emit(HealthKind::SynRetransmit, &rec, family, &local, &backend);
    }
    CONTINUE
}

/// A translated connection sends its SYN: asks for its RTO and state callbacks; if it
/// may hold a client entry of a service with persistence, holds it (from here its close
/// is sure to call back, and lets it go); leaves its SYN timeout (`jiffies`, 0 for the
/// kernel's own) for `TIMEOUT_INIT`.
#[inline(always)]
fn connecting(ctx: &SockOpsContext, cookie: u64, may_hold: bool, jiffies: u32) {
    let flags = ctx.cb_flags() | BPF_SOCK_OPS_RTO_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG;
    let _ = ctx.set_cb_flags(flags as i32);
    if may_hold {
        hold(cookie);
    }
    leave(SockConnectNext::new(cookie, CONNECT_TIMED, jiffies, 0));
}

#[inline(always)]
fn state(ctx: &SockOpsContext) -> u32 {
    // SAFETY: the context pointer is valid for the program's run.
    unsafe { core::ptr::read_volatile(&(*ctx.ops).state) }
}

/// The socket's family, local end and remote end (the backend). Every field is read
/// once, up front and volatile: the verifier refuses a context pointer the compiler has
/// moved off the context's start and kept across a branch.
#[inline(always)]
fn ends(ctx: &SockOpsContext) -> Option<(u8, Addr, Addr)> {
    let ops = ctx.ops;
    // SAFETY: the context pointer is valid for the program's run; 4-byte loads of these
    // fields are what the verifier allows.
    let (family, l4, r4, l6, r6, lport, rport_raw) = unsafe {
        (
            core::ptr::read_volatile(&(*ops).family),
            core::ptr::read_volatile(&(*ops).local_ip4),
            core::ptr::read_volatile(&(*ops).remote_ip4),
            [
                core::ptr::read_volatile(&(*ops).local_ip6[0]),
                core::ptr::read_volatile(&(*ops).local_ip6[1]),
                core::ptr::read_volatile(&(*ops).local_ip6[2]),
                core::ptr::read_volatile(&(*ops).local_ip6[3]),
            ],
            [
                core::ptr::read_volatile(&(*ops).remote_ip6[0]),
                core::ptr::read_volatile(&(*ops).remote_ip6[1]),
                core::ptr::read_volatile(&(*ops).remote_ip6[2]),
                core::ptr::read_volatile(&(*ops).remote_ip6[3]),
            ],
            core::ptr::read_volatile(&(*ops).local_port),
            core::ptr::read_volatile(&(*ops).remote_port),
        )
    };
    let mut local = [0u8; 16];
    let mut remote = [0u8; 16];
    if family == u32::from(AF_INET) {
        local[..4].copy_from_slice(&l4.to_ne_bytes());
        remote[..4].copy_from_slice(&r4.to_ne_bytes());
    } else if family == u32::from(AF_INET6) {
        let mut i = 0;
        while i < 4 {
            local[i * 4..i * 4 + 4].copy_from_slice(&l6[i].to_ne_bytes());
            remote[i * 4..i * 4 + 4].copy_from_slice(&r6[i].to_ne_bytes());
            i += 1;
        }
    } else {
        return None;
    }
    // local_port is in host order; remote_port is not (see `remote_port`).
    let rport = remote_port(rport_raw);
    Some((
        family as u8,
        Addr {
            addr: local,
            port: lport as u16,
        },
        Addr {
            addr: remote,
            port: rport,
        },
    ))
}
