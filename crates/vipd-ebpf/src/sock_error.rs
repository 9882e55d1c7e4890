//! `vipd_sock_error` (tp_btf `inet_sk_error_report(sk)`): the kernel reported an error on
//! a socket. On a connected UDP socket the connect hook sent to a backend, that is an
//! ICMP error about a datagram to the backend: the kernel raises one there for a hard
//! error (port or protocol unreachable, administratively prohibited) and, on a socket
//! with `IP_RECVERR`, for any unreachable. The socket's peer is the backend and its
//! cookie finds the translation record, so the error names its service and backend at
//! once. The tracepoint fires for every inet socket's errors on the host; anything but a
//! UDP socket with an unreachable's errno and a translation record is left at that.
//!
//! An unconnected UDP socket gets no such report unless it asked for errors, and then
//! it has no peer to find its translation by; TCP's errors end the handshake the other
//! hooks follow.
//!
//! The socket's fields are read at offsets userspace took from BTF (`SOCK_ERROR_SK`);
//! unset, the program does nothing.

use aya_ebpf::{
    helpers::bpf_get_socket_cookie, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use vipd_common::{
    health::unreachable_of_errno,
    sock::{SockErrorOffsets, PEER_REVERSE},
    AF_INET, AF_INET6, IPPROTO_UDP,
};

use crate::{
    global::global, kernel_read::read, sock_addr::Addr, sock_health::emit_unreachable,
    sock_maps::SOCK_PEERS, sock_select::peer_key,
};

#[unsafe(no_mangle)]
static SOCK_ERROR_SK: SockErrorOffsets = SockErrorOffsets::UNSET;

#[btf_tracepoint(function = "inet_sk_error_report")]
pub fn vipd_sock_error(ctx: BtfTracePointContext) -> u32 {
    let off = global(&SOCK_ERROR_SK);
    if off.sock.valid == 1 {
        let sk: *const u8 = ctx.arg(0);
        // SAFETY: the tracepoint's only argument is a struct sock *, read through
        // bpf_probe_read_kernel at offsets from this kernel's BTF.
        let _ = unsafe { report(sk, &off) };
    }
    0
}

/// # Safety
/// `sk` must be a kernel `struct sock *`.
#[inline(always)]
unsafe fn report(sk: *const u8, off: &SockErrorOffsets) -> Result<(), i32> {
    let s = &off.sock;
    // SAFETY: see above, for every read here.
    unsafe {
        if read::<u16>(sk, s.protocol)? != IPPROTO_UDP {
            return Ok(());
        }
        let family: u16 = read(sk, s.family)?;
        let err: i32 = read(sk, off.err)?;
        let Some(icmp) = unreachable_of_errno(family == AF_INET6, err) else {
            return Ok(());
        };
        let mut local = [0u8; 16];
        let mut remote = [0u8; 16];
        if family == AF_INET {
            local[..4].copy_from_slice(&read::<[u8; 4]>(sk, s.rcv_saddr)?);
            remote[..4].copy_from_slice(&read::<[u8; 4]>(sk, s.daddr)?);
        } else if family == AF_INET6 {
            local = read(sk, s.v6_rcv_saddr)?;
            remote = read(sk, s.v6_daddr)?;
        } else {
            return Ok(());
        }
        let backend = Addr {
            addr: remote,
            port: u16::from_be(read(sk, s.dport)?),
        };
        let cookie = bpf_get_socket_cookie(sk as *mut _);
        let key = peer_key(cookie, &backend, family as u8, PEER_REVERSE);
        let Some(rec) = SOCK_PEERS.get(&key).copied() else {
            return Ok(());
        };
        let local = Addr {
            addr: local,
            port: u16::from_be(read(sk, s.sport)?),
        };
        emit_unreachable(&rec, family as u8, &local, &backend, icmp);
    }
    Ok(())
}
