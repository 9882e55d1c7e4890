//! `sock/inet_sock_set_state`: every TCP state change, with the socket's addresses.
//! Field offsets come from the tracepoint's format file via the `STATE_TP` global.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::tracepoint, programs::TracePointContext};
use vipd_common::{ConnEvent, EventKind, InetSockSetStateOffsets, AF_INET, IPPROTO_TCP};

use crate::emit::{emit, global};

#[unsafe(no_mangle)]
static STATE_TP: InetSockSetStateOffsets = InetSockSetStateOffsets {
    valid: 0,
    skaddr: 0,
    oldstate: 0,
    newstate: 0,
    sport: 0,
    dport: 0,
    family: 0,
    protocol: 0,
    saddr: 0,
    daddr: 0,
    saddr_v6: 0,
    daddr_v6: 0,
};

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let _ = try_inet_sock_set_state(&ctx);
    0
}

#[inline(always)]
fn try_inet_sock_set_state(ctx: &TracePointContext) -> Result<(), i32> {
    let off = global(&STATE_TP);
    if off.valid != 1 {
        return Ok(());
    }
    // SAFETY: offsets come from this kernel's format file for this tracepoint.
    unsafe {
        let protocol: u16 = ctx.read_at(off.protocol as usize)?;
        if protocol != IPPROTO_TCP {
            return Ok(());
        }
        let family: u16 = ctx.read_at(off.family as usize)?;
        let mut ev = ConnEvent {
            ts_ns: bpf_ktime_get_ns(),
            sock: ctx.read_at::<u64>(off.skaddr as usize)?,
            kind: EventKind::StateChange as u8,
            family: family as u8,
            protocol: protocol as u8,
            old_state: ctx.read_at::<i32>(off.oldstate as usize)? as u8,
            new_state: ctx.read_at::<i32>(off.newstate as usize)? as u8,
            sport: ctx.read_at(off.sport as usize)?,
            dport: ctx.read_at(off.dport as usize)?,
            ..ConnEvent::default()
        };
        if family == AF_INET {
            let s: [u8; 4] = ctx.read_at(off.saddr as usize)?;
            let d: [u8; 4] = ctx.read_at(off.daddr as usize)?;
            ev.saddr[..4].copy_from_slice(&s);
            ev.daddr[..4].copy_from_slice(&d);
        } else {
            ev.saddr = ctx.read_at(off.saddr_v6 as usize)?;
            ev.daddr = ctx.read_at(off.daddr_v6 as usize)?;
        }
        emit(&ev);
    }
    Ok(())
}
