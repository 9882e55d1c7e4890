//! Reading a TCP connection out of the kernel's `struct sock`, at member offsets
//! userspace took from BTF (`SOCK` global). Shared by every hook that is handed a
//! socket: the `tcp_connect` kprobe and fentry, and the tp_btf socket tracepoints.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use vipd_common::{ConnEvent, EventKind, SockOffsets, AF_INET, IPPROTO_TCP};

use crate::{flow, kernel_read::read};

#[unsafe(no_mangle)]
pub static SOCK: SockOffsets = SockOffsets::UNSET;

/// The connection of TCP socket `sk` as an event of `kind`; `None` for a socket that is
/// neither IPv4 nor IPv6. Addresses are normalised (see [`flow::normalise`]).
///
/// # Safety
/// `sk` must be a kernel `struct sock *`; every read goes through
/// bpf_probe_read_kernel.
#[inline(always)]
pub unsafe fn connection(
    sk: *const u8,
    off: &SockOffsets,
    kind: EventKind,
) -> Result<Option<ConnEvent>, i32> {
    // SAFETY: see above.
    unsafe {
        let family: u16 = read(sk, off.family)?;
        let mut ev = ConnEvent {
            ts_ns: bpf_ktime_get_ns(),
            sock: sk as u64,
            kind: kind as u8,
            family: family as u8,
            protocol: IPPROTO_TCP as u8,
            sport: u16::from_be(read(sk, off.sport)?),
            dport: u16::from_be(read(sk, off.dport)?),
            ..ConnEvent::default()
        };
        if family == AF_INET {
            let s: [u8; 4] = read(sk, off.rcv_saddr)?;
            let d: [u8; 4] = read(sk, off.daddr)?;
            ev.saddr[..4].copy_from_slice(&s);
            ev.daddr[..4].copy_from_slice(&d);
        } else if flow::is_ipv6(ev.family) {
            ev.saddr = read(sk, off.v6_rcv_saddr)?;
            ev.daddr = read(sk, off.v6_daddr)?;
        } else {
            return Ok(None);
        }
        flow::normalise(&mut ev.family, &mut ev.saddr, &mut ev.daddr);
        Ok(Some(ev))
    }
}

/// `sk`'s TCP state (`skc_state`).
///
/// # Safety
/// As for [`connection`].
#[inline(always)]
pub unsafe fn state(sk: *const u8, off: &SockOffsets) -> Result<u8, i32> {
    // SAFETY: see above.
    unsafe { read(sk, off.state) }
}

/// Reads `sk` as an event of `kind`, and emits it, attributed to its backend, if it
/// goes to a managed VIP. `fill` adds what the hook knows beyond the socket (states).
///
/// # Safety
/// As for [`connection`].
#[inline(always)]
pub unsafe fn emit_watched(
    sk: *const u8,
    off: &SockOffsets,
    kind: EventKind,
    fill: impl FnOnce(&mut ConnEvent) -> Result<(), i32>,
) -> Result<(), i32> {
    // SAFETY: see above.
    if let Some(mut ev) = unsafe { connection(sk, off, kind)? } {
        if flow::watched(&ev) {
            fill(&mut ev)?;
            flow::attribute(&mut ev);
            crate::emit::emit(&ev);
        }
    }
    Ok(())
}
