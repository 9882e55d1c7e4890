//! kprobe on `tcp_connect(struct sock *sk)`: the first SYN is about to leave and the
//! source port is bound, which the first SYN_SENT state change lacks. Member offsets of
//! `struct sock_common` come from BTF (`SOCK_COMMON` global).

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::kprobe, programs::ProbeContext};
use vipd_common::{ConnEvent, EventKind, SockCommonOffsets, AF_INET, IPPROTO_TCP};

use crate::{
    emit::{emit, global},
    flow,
    kernel_read::read,
};

#[unsafe(no_mangle)]
static SOCK_COMMON: SockCommonOffsets = SockCommonOffsets {
    valid: 0,
    daddr: 0,
    rcv_saddr: 0,
    dport: 0,
    num: 0,
    family: 0,
    v6_daddr: 0,
    v6_rcv_saddr: 0,
};

#[kprobe]
pub fn tcp_connect(ctx: ProbeContext) -> u32 {
    let _ = try_tcp_connect(&ctx);
    0
}

#[inline(always)]
fn try_tcp_connect(ctx: &ProbeContext) -> Result<(), i32> {
    let off = global(&SOCK_COMMON);
    if off.valid != 1 {
        return Ok(());
    }
    let sk: *const u8 = ctx.arg(0).ok_or(1)?;
    // SAFETY: every read goes through bpf_probe_read_kernel.
    unsafe {
        let family: u16 = read(sk, off.family)?;
        let mut ev = ConnEvent {
            ts_ns: bpf_ktime_get_ns(),
            sock: sk as u64,
            kind: EventKind::Connect as u8,
            family: family as u8,
            protocol: IPPROTO_TCP as u8,
            sport: read(sk, off.num)?,
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
            return Ok(());
        }
        flow::normalise(&mut ev.family, &mut ev.saddr, &mut ev.daddr);
        if flow::watched(&ev) {
            emit(&ev);
        }
    }
    Ok(())
}
