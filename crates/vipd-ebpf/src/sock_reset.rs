//! `vipd_sock_reset` (tracepoint `tcp/tcp_receive_reset`): an RST to a translated
//! connection still in its handshake (SYN_SENT) is the backend refusing it. The
//! tracepoint fires for every socket on the host; the translation record, looked up by
//! the socket's cookie and peer, keeps everything else out, and only then is the
//! socket's state read (through the record's `skaddr`, at the offset userspace took
//! from BTF): an RST later in a connection's life is not a refusal. The record's field
//! offsets come from this kernel's format file, set by userspace in `SOCK_RESET_TP`
//! before loading; unset, the program does nothing.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use vipd_common::{
    health::HealthKind,
    sock::{SockResetOffsets, PEER_REVERSE},
    AF_INET, AF_INET6,
};

use crate::{
    global::global, kernel_read::read, sock_addr::Addr, sock_health::emit, sock_maps::SOCK_PEERS,
    sock_select::peer_key,
};

/// `TCP_SYN_SENT` (include/net/tcp_states.h).
const TCP_SYN_SENT: u8 = 2;

#[unsafe(no_mangle)]
static SOCK_RESET_TP: SockResetOffsets = SockResetOffsets::UNSET;

#[tracepoint]
pub fn vipd_sock_reset(ctx: TracePointContext) -> u32 {
    let off = global(&SOCK_RESET_TP);
    if off.valid == 1 {
        let _ = reset(&ctx, &off);
    }
    0
}

#[inline(always)]
fn reset(ctx: &TracePointContext, off: &SockResetOffsets) -> Result<(), i32> {
    // SAFETY: the offsets come from this kernel's format file for this tracepoint, and
    // read_at goes through bpf_probe_read.
    let cookie: u64 = unsafe { ctx.read_at(off.sock_cookie as usize)? };
    // SAFETY: as above (ports are in host order in the record).
    let (family, sport, dport): (u16, u16, u16) = unsafe {
        (
            ctx.read_at(off.family as usize)?,
            ctx.read_at(off.sport as usize)?,
            ctx.read_at(off.dport as usize)?,
        )
    };
    let mut local = [0u8; 16];
    let mut remote = [0u8; 16];
    if family == AF_INET {
        // SAFETY: as above.
        let (s, d): ([u8; 4], [u8; 4]) = unsafe {
            (
                ctx.read_at(off.saddr as usize)?,
                ctx.read_at(off.daddr as usize)?,
            )
        };
        local[..4].copy_from_slice(&s);
        remote[..4].copy_from_slice(&d);
    } else if family == AF_INET6 {
        // SAFETY: as above.
        (local, remote) = unsafe {
            (
                ctx.read_at(off.saddr_v6 as usize)?,
                ctx.read_at(off.daddr_v6 as usize)?,
            )
        };
    } else {
        return Ok(());
    }
    let backend = Addr {
        addr: remote,
        port: dport,
    };
    let key = peer_key(cookie, &backend, family as u8, PEER_REVERSE);
    // SAFETY: a hash map lookup; the value is copied out at once.
    let Some(rec) = (unsafe { SOCK_PEERS.get(&key) }).copied() else {
        return Ok(());
    };
    // SAFETY: as above; the socket is read through bpf_probe_read_kernel.
    let state: u8 = unsafe {
        let sk: u64 = ctx.read_at(off.skaddr as usize)?;
        read(sk as *const u8, off.state)?
    };
    if state != TCP_SYN_SENT {
        return Ok(());
    }
    let local = Addr {
        addr: local,
        port: sport,
    };
    emit(HealthKind::Refused, &rec, family as u8, &local, &backend);
    Ok(())
}
