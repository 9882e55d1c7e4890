//! Reading a socket tracepoint record (`sock/inet_sock_set_state`,
//! `tcp/tcp_retransmit_skb`, `tcp/tcp_receive_reset`) into an event, at the offsets
//! userspace took from the tracepoint's format file.
//!
//! The destination port is read first, alone, and looked up in `VIP_PORTS`: for a
//! connection to a port no VIP uses that is all the work done. Then the destination
//! address, and one `VIPS` lookup. Only a watched connection's record is read whole.

use aya_ebpf::programs::TracePointContext;
use vipd_common::{ConnEvent, EventKind, SockTracepointOffsets, IPPROTO_TCP, NO_FIELD};

use crate::{
    emit::emit,
    flow::{self, Destination},
};

/// Emits the record as an event of `kind`, attributed to its backend, if its
/// connection is watched.
#[inline(always)]
pub fn emit_watched(
    ctx: &TracePointContext,
    off: &SockTracepointOffsets,
    kind: EventKind,
) -> Result<(), i32> {
    // SAFETY: every offset comes from this kernel's format file for this tracepoint, and
    // read_at goes through bpf_probe_read.
    let port: u16 = unsafe { ctx.read_at(off.dport as usize)? };
    let vip_port = flow::vip_port(port);
    if !vip_port && !flow::fwmark_services() {
        return Ok(());
    }
    if !tcp(ctx, off)? {
        return Ok(());
    }
    let Some(dest) = destination(ctx, off, port)? else {
        return Ok(());
    };
    let vip = vip_port && flow::is_vip(&dest.key);
    if !vip && !flow::fwmark_services() {
        return Ok(());
    }
    let mut ev = read(ctx, off, kind, &dest)?;
    if vip || flow::fwmark_scheduled(&ev) {
        flow::attribute(&mut ev);
        emit(&ev);
    }
    Ok(())
}

/// Whether the record is a TCP socket's (the tcp/* tracepoints have no protocol field:
/// always).
#[inline(always)]
fn tcp(ctx: &TracePointContext, off: &SockTracepointOffsets) -> Result<bool, i32> {
    if off.protocol == NO_FIELD {
        return Ok(true);
    }
    // SAFETY: as in `emit_watched`.
    let protocol: u16 = unsafe { ctx.read_at(off.protocol as usize)? };
    Ok(protocol == IPPROTO_TCP)
}

/// The record's destination (port `port`); `None` for sockets that are neither IPv4
/// nor IPv6. Reads only the family and destination address.
#[inline(always)]
fn destination(
    ctx: &TracePointContext,
    off: &SockTracepointOffsets,
    port: u16,
) -> Result<Option<Destination>, i32> {
    // SAFETY: as in `emit_watched`.
    unsafe {
        let family: u16 = ctx.read_at(off.family as usize)?;
        if !flow::is_ip(family) {
            return Ok(None);
        }
        let addr = flow::address(
            family,
            || ctx.read_at(off.daddr as usize),
            || ctx.read_at(off.daddr_v6 as usize),
        )?;
        Ok(Some(Destination::new(family, addr, port)))
    }
}

/// The rest of the record of a connection to `dest`, as an event of `kind`.
#[inline(always)]
fn read(
    ctx: &TracePointContext,
    off: &SockTracepointOffsets,
    kind: EventKind,
    dest: &Destination,
) -> Result<ConnEvent, i32> {
    // SAFETY: as in `emit_watched`.
    unsafe {
        let saddr = flow::address(
            dest.family,
            || ctx.read_at(off.saddr as usize),
            || ctx.read_at(off.saddr_v6 as usize),
        )?;
        let sock = ctx.read_at::<u64>(off.skaddr as usize)?;
        let mut ev = dest.event(kind, sock, saddr, ctx.read_at(off.sport as usize)?);
        if off.oldstate != NO_FIELD {
            ev.old_state = ctx.read_at::<i32>(off.oldstate as usize)? as u8;
        }
        if off.newstate != NO_FIELD {
            ev.new_state = ctx.read_at::<i32>(off.newstate as usize)? as u8;
        }
        Ok(ev)
    }
}

/// The record's old and new state (`oldstate`, `newstate`); `None` if the tracepoint
/// lacks them.
#[inline(always)]
pub fn states(ctx: &TracePointContext, off: &SockTracepointOffsets) -> Option<(u8, u8)> {
    if off.oldstate == NO_FIELD || off.newstate == NO_FIELD {
        return None;
    }
    // SAFETY: as in `emit_watched`.
    unsafe {
        // Adjacent in every kernel's record so far: one read instead of two.
        if off.newstate == off.oldstate + 4 {
            let [old, new] = ctx.read_at::<[i32; 2]>(off.oldstate as usize).ok()?;
            return Some((old as u8, new as u8));
        }
        let old = ctx.read_at::<i32>(off.oldstate as usize).ok()?;
        let new = ctx.read_at::<i32>(off.newstate as usize).ok()?;
        Some((old as u8, new as u8))
    }
}
