//! kprobe on IPVS's transmit functions (`ip_vs_nat_xmit`, `ip_vs_tunnel_xmit`,
//! `ip_vs_dr_xmit` and their `_v6` twins): IPVS is sending a client's packet to the
//! real server of its connection entry. For UDP services this counts the datagram as
//! sent to that backend in `UDP_TRAFFIC` and, if the backend owed no reply yet, starts
//! its wait for one: a backend that stays silent is found by userspace from there.
//!
//! ```c
//! int ip_vs_nat_xmit(struct sk_buff *skb, struct ip_vs_conn *cp,
//!                    struct ip_vs_protocol *pp, struct ip_vs_iphdr *ipvsh);
//! ```
//! Every transmit function has this signature. Member offsets of `struct ip_vs_conn`
//! come from the ip_vs module's BTF (`IPVS_CONN` global).

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::kprobe, programs::ProbeContext};
use vipd_common::{DestKey, IpvsConnOffsets, UdpTraffic, AF_INET, IPPROTO_UDP};

use crate::{flow, global::global, kernel_read::read, maps::UDP_TRAFFIC};

#[unsafe(no_mangle)]
static IPVS_CONN: IpvsConnOffsets = IpvsConnOffsets {
    valid: 0,
    caddr: 0,
    vaddr: 0,
    daddr: 0,
    cport: 0,
    vport: 0,
    dport: 0,
    af: 0,
    daf: 0,
    protocol: 0,
};

#[kprobe]
pub fn ip_vs_xmit(ctx: ProbeContext) -> u32 {
    let _ = try_ip_vs_xmit(&ctx);
    0
}

#[inline(always)]
fn try_ip_vs_xmit(ctx: &ProbeContext) -> Result<(), i32> {
    let off = global(&IPVS_CONN);
    if off.valid != 1 {
        return Ok(());
    }
    let cp: *const u8 = ctx.arg(1).ok_or(1)?;
    // SAFETY: every read goes through bpf_probe_read_kernel.
    let key = unsafe {
        if read::<u16>(cp, off.protocol)? != IPPROTO_UDP {
            return Ok(());
        }
        let af: u16 = read(cp, off.af)?;
        let daf: u16 = read(cp, off.daf)?;
        let mut key = DestKey {
            vip: read(cp, off.vaddr)?,
            backend: read(cp, off.daddr)?,
            vport: u16::from_be(read(cp, off.vport)?),
            bport: u16::from_be(read(cp, off.dport)?),
            family: af as u8,
            backend_family: daf as u8,
            protocol: IPPROTO_UDP as u8,
            _pad: 0,
        };
        // For IPv4 only the first four bytes of a union nf_inet_addr are meaningful.
        if af == AF_INET {
            key.vip[4..].fill(0);
        }
        if daf == AF_INET {
            key.backend[4..].fill(0);
        }
        key
    };
    if !flow::watched_vip(key.vip, key.vport, key.family, IPPROTO_UDP as u8) {
        return Ok(());
    }
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match UDP_TRAFFIC.get_ptr_mut(&key) {
        Some(t) => {
            // SAFETY: a value pointer the map lookup just returned.
            let t = unsafe { &mut *t };
            t.sent += 1;
            if t.pending_since_ns == 0 {
                t.pending_since_ns = now;
            }
        }
        None => {
            let t = UdpTraffic {
                sent: 1,
                pending_since_ns: now,
                ..UdpTraffic::default()
            };
            let _ = UDP_TRAFFIC.insert(&key, &t, 0);
        }
    }
    Ok(())
}
