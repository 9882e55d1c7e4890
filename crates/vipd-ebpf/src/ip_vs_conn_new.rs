//! kprobe on `ip_vs_conn_new()`: IPVS has chosen a real server for a new connection.
//!
//! ```c
//! struct ip_vs_conn *ip_vs_conn_new(const struct ip_vs_conn_param *p, int dest_af,
//!         const union nf_inet_addr *daddr, __be16 dport, unsigned int flags,
//!         struct ip_vs_dest *dest, __u32 fwmark);
//! ```
//! The client and virtual addresses come from `*p`, at member offsets read from BTF
//! (`IPVS_PARAM` global); the real server is `daddr:dport`. The choice is recorded in
//! `CONNS` so that every later event of the connection names its backend.
//!
//! A fwmark service matches packets by their mark, so `p`'s virtual address is the
//! packet's real destination and no VIP. Such a connection is watched when its
//! service's mark (`dest->vfwmark`; the `fwmark` argument is the 7th, on the stack) is
//! in `VIPS`; its `CONNS` entry carries the mark, and the other hooks follow it by that
//! entry (see `flow::watched`).

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::kprobe,
    programs::ProbeContext,
};
use vipd_common::{
    Backend, ConnEvent, EventKind, FlowKey, IpvsConnParamOffsets, VipKey, AF_INET, IPPROTO_UDP,
    NO_FIELD,
};

use crate::{
    emit::emit,
    flow,
    global::global,
    kernel_read::read,
    maps::{CONNS, NAT_FLOWS, VIPS},
};

/// `IP_VS_CONN_F_TEMPLATE` (include/uapi/linux/ip_vs.h): a persistence template, not a
/// connection.
const IP_VS_CONN_F_TEMPLATE: u64 = 0x1000;

#[unsafe(no_mangle)]
static IPVS_PARAM: IpvsConnParamOffsets = IpvsConnParamOffsets {
    valid: 0,
    caddr: 0,
    vaddr: 0,
    cport: 0,
    vport: 0,
    protocol: 0,
    af: 0,
    dest_vfwmark: 0,
};

#[kprobe]
pub fn ip_vs_conn_new(ctx: ProbeContext) -> u32 {
    let _ = try_ip_vs_conn_new(&ctx);
    0
}

#[inline(always)]
fn try_ip_vs_conn_new(ctx: &ProbeContext) -> Result<(), i32> {
    let off = global(&IPVS_PARAM);
    if off.valid != 1 {
        return Ok(());
    }
    let flags: u64 = ctx.arg(4).ok_or(1)?;
    if flags & IP_VS_CONN_F_TEMPLATE != 0 {
        return Ok(());
    }
    let param: *const u8 = ctx.arg(0).ok_or(1)?;
    let dest_af: u64 = ctx.arg(1).ok_or(1)?;
    let daddr: *const [u8; 16] = ctx.arg(2).ok_or(1)?;
    let dport: u64 = ctx.arg(3).ok_or(1)?;
    let dest: *const u8 = ctx.arg(5).ok_or(1)?;
    // SAFETY: every read goes through bpf_probe_read_kernel.
    unsafe {
        let caddr: *const u8 = read(param, off.caddr)?;
        let vaddr: *const u8 = read(param, off.vaddr)?;
        let af: u16 = read(param, off.af)?;
        let mut ev = ConnEvent {
            ts_ns: bpf_ktime_get_ns(),
            kind: EventKind::IpvsConn as u8,
            family: af as u8,
            protocol: read::<u16>(param, off.protocol)? as u8,
            backend_family: dest_af as u8,
            sport: u16::from_be(read(param, off.cport)?),
            dport: u16::from_be(read(param, off.vport)?),
            backend_port: u16::from_be(dport as u16),
            saddr: read(caddr, 0)?,
            daddr: read(vaddr, 0)?,
            backend_addr: bpf_probe_read_kernel(daddr)?,
            ..ConnEvent::default()
        };
        // For IPv4 only the first four bytes of a union nf_inet_addr are meaningful.
        flow::normalise(&mut ev.family, &mut ev.saddr, &mut ev.daddr);
        if u16::from(ev.backend_family) == AF_INET {
            ev.backend_addr[4..].fill(0);
        }
        if !flow::watched_vip(ev.daddr, ev.dport, ev.family, ev.protocol) {
            if off.dest_vfwmark == NO_FIELD || dest.is_null() {
                return Ok(());
            }
            let mark: u32 = read(dest, off.dest_vfwmark)?;
            if mark == 0 || VIPS.get_ptr(&VipKey::fwmark(ev.family, mark)).is_none() {
                return Ok(());
            }
            ev.fwmark = mark;
        }
        let backend = Backend {
            addr: ev.backend_addr,
            port: ev.backend_port,
            family: ev.backend_family,
            _pad: 0,
            fwmark: ev.fwmark,
            ts_ns: ev.ts_ns,
        };
        let _ = CONNS.insert(&flow::flow_key(&ev), &backend, 0);
        if u16::from(ev.protocol) == IPPROTO_UDP && ev.backend_family == ev.family {
            let translated = FlowKey {
                client: ev.saddr,
                vip: ev.backend_addr,
                cport: ev.sport,
                vport: ev.backend_port,
                family: ev.backend_family,
                protocol: ev.protocol,
                _pad: [0; 2],
            };
            let vip = VipKey {
                addr: ev.daddr,
                port: ev.dport,
                family: ev.family,
                protocol: ev.protocol,
            };
            let _ = NAT_FLOWS.insert(&translated, &vip, 0);
        }
        emit(&ev);
    }
    Ok(())
}
