//! Reading a socket tracepoint record (`sock/inet_sock_set_state`,
//! `tcp/tcp_retransmit_skb`, `tcp/tcp_receive_reset`) into an event, at the offsets
//! userspace took from the tracepoint's format file.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TracePointContext};
use vipd_common::{ConnEvent, EventKind, SockTracepointOffsets, AF_INET, IPPROTO_TCP, NO_FIELD};

use crate::flow::normalise;

/// Reads the record; `None` for sockets that are not TCP over IPv4 or IPv6.
#[inline(always)]
pub fn read(
    ctx: &TracePointContext,
    off: &SockTracepointOffsets,
    kind: EventKind,
) -> Result<Option<ConnEvent>, i32> {
    // SAFETY: every offset comes from this kernel's format file for this tracepoint, and
    // read_at goes through bpf_probe_read.
    unsafe {
        if off.protocol != NO_FIELD {
            let protocol: u16 = ctx.read_at(off.protocol as usize)?;
            if protocol != IPPROTO_TCP {
                return Ok(None);
            }
        }
        let family: u16 = ctx.read_at(off.family as usize)?;
        let mut ev = ConnEvent {
            ts_ns: bpf_ktime_get_ns(),
            sock: ctx.read_at::<u64>(off.skaddr as usize)?,
            kind: kind as u8,
            family: family as u8,
            protocol: IPPROTO_TCP as u8,
            sport: ctx.read_at(off.sport as usize)?,
            dport: ctx.read_at(off.dport as usize)?,
            ..ConnEvent::default()
        };
        if off.oldstate != NO_FIELD {
            ev.old_state = ctx.read_at::<i32>(off.oldstate as usize)? as u8;
        }
        if off.newstate != NO_FIELD {
            ev.new_state = ctx.read_at::<i32>(off.newstate as usize)? as u8;
        }
        if family == AF_INET {
            let s: [u8; 4] = ctx.read_at(off.saddr as usize)?;
            let d: [u8; 4] = ctx.read_at(off.daddr as usize)?;
            ev.saddr[..4].copy_from_slice(&s);
            ev.daddr[..4].copy_from_slice(&d);
        } else if crate::flow::is_ipv6(ev.family) {
            ev.saddr = ctx.read_at(off.saddr_v6 as usize)?;
            ev.daddr = ctx.read_at(off.daddr_v6 as usize)?;
        } else {
            return Ok(None);
        }
        normalise(&mut ev.family, &mut ev.saddr, &mut ev.daddr);
        Ok(Some(ev))
    }
}
