//! Reading a TCP connection out of the kernel's `struct sock`, at member offsets
//! userspace took from BTF (`SOCK` global). Shared by every hook that is handed a
//! socket: the `tcp_connect` kprobe and fentry, and the tp_btf socket tracepoints.

use vipd_common::{ConnEvent, EventKind, SockOffsets, IPPROTO_TCP};

use crate::{
    flow::{self, Destination},
    kernel_read::{self, KernelRead},
};

#[unsafe(no_mangle)]
pub static SOCK: SockOffsets = SockOffsets::UNSET;

/// The rest of TCP socket `sk`'s connection to `dest`, as an event of `kind`.
///
/// # Safety
/// `sk` must be a kernel `struct sock *`, read as `R` allows (see
/// [`KernelRead`]).
#[inline(always)]
unsafe fn connection<R: KernelRead>(
    sk: *const u8,
    off: &SockOffsets,
    kind: EventKind,
    dest: &Destination,
) -> Result<ConnEvent, i32> {
    // SAFETY: see above.
    unsafe {
        let saddr = flow::address(
            dest.family,
            || R::read(sk, off.rcv_saddr),
            || R::read(sk, off.v6_rcv_saddr),
        )?;
        // `inet_sport` is a member of `struct inet_sock`, past the `struct sock` the
        // hooks are typed with: a plain load would be refused, so it is always probed.
        let sport = u16::from_be(kernel_read::read(sk, off.sport)?);
        Ok(dest.event(kind, sk as u64, saddr, sport))
    }
}

/// `sk`'s TCP state (`skc_state`).
///
/// # Safety
/// As for [`connection`].
#[inline(always)]
pub unsafe fn state<R: KernelRead>(sk: *const u8, off: &SockOffsets) -> Result<u8, i32> {
    // SAFETY: see above.
    unsafe { R::read(sk, off.state) }
}

/// The destination of TCP socket `sk` (port `port`); `None` for a socket that is
/// neither IPv4 nor IPv6. Reads only the family and destination address.
///
/// # Safety
/// As for [`connection`].
#[inline(always)]
unsafe fn destination<R: KernelRead>(
    sk: *const u8,
    off: &SockOffsets,
    port: u16,
) -> Result<Option<Destination>, i32> {
    // SAFETY: see above.
    unsafe {
        let family: u16 = R::read(sk, off.family)?;
        if !flow::is_ip(family) {
            return Ok(None);
        }
        let addr = flow::address(
            family,
            || R::read(sk, off.daddr),
            || R::read(sk, off.v6_daddr),
        )?;
        Ok(Some(Destination::new(family, addr, port)))
    }
}

/// Emits `sk` as an event of `kind`, attributed to its backend, if its connection is
/// watched. `check_tcp`: whether the socket may be another protocol's (a hook every
/// socket passes), checked once the port matches. `fill` adds what the hook knows
/// beyond the socket (states).
///
/// # Safety
/// As for [`connection`].
#[inline(always)]
pub unsafe fn emit_watched<R: KernelRead>(
    sk: *const u8,
    off: &SockOffsets,
    kind: EventKind,
    check_tcp: bool,
    fill: impl FnOnce(&mut ConnEvent) -> Result<(), i32>,
) -> Result<(), i32> {
    // SAFETY: see above.
    let port = u16::from_be(unsafe { R::read(sk, off.dport)? });
    let vip_port = flow::vip_port(port);
    if !vip_port && !flow::fwmark_services() {
        return Ok(());
    }
    // SAFETY: see above.
    if check_tcp && unsafe { R::read::<u16>(sk, off.protocol)? } != IPPROTO_TCP {
        return Ok(());
    }
    // SAFETY: see above.
    let Some(dest) = (unsafe { destination::<R>(sk, off, port)? }) else {
        return Ok(());
    };
    let vip = vip_port && flow::is_vip(&dest.key);
    if !vip && !flow::fwmark_services() {
        return Ok(());
    }
    // SAFETY: see above.
    let mut ev = unsafe { connection::<R>(sk, off, kind, &dest)? };
    if vip || flow::fwmark_scheduled(&ev) {
        fill(&mut ev)?;
        flow::attribute(&mut ev);
        crate::emit::emit(&ev);
    }
    Ok(())
}
