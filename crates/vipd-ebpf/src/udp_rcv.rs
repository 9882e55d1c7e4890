//! kprobe on `udp_rcv()` and `udpv6_rcv()`: a UDP datagram is about to be delivered to
//! a local socket. A reply from a UDP backend arrives here already translated by IPVS
//! (source = VIP); joined with the client's flow in `CONNS` it counts as a reply of the
//! backend IPVS chose, in `UDP_TRAFFIC`, and ends that backend's wait for one.
//!
//! ```c
//! int udp_rcv(struct sk_buff *skb);
//! int udpv6_rcv(struct sk_buff *skb);
//! ```
//! `skb->data` points at the UDP header, `skb->head + skb->network_header` at the IP
//! header. Both are protocol handlers called through a pointer, so never inlined.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::kprobe, programs::ProbeContext};
use vipd_common::{DestKey, FlowKey, UdpTraffic, AF_INET, AF_INET6, IPPROTO_UDP};

use crate::{
    flow,
    kernel_read::read,
    maps::{CONNS, UDP_TRAFFIC},
    skb,
};

#[kprobe]
pub fn udp_rcv(ctx: ProbeContext) -> u32 {
    let _ = try_udp_rcv(&ctx);
    0
}

#[inline(always)]
fn try_udp_rcv(ctx: &ProbeContext) -> Result<(), i32> {
    let Some(off) = skb::offsets() else {
        return Ok(());
    };
    let skb_ptr: *const u8 = ctx.arg(0).ok_or(1)?;
    // SAFETY: every read goes through bpf_probe_read_kernel.
    let (family, vip, client, vport, cport) = unsafe {
        let nh = skb::network_header(skb_ptr, &off)?;
        let udph = skb::data(skb_ptr, &off)?;
        let version = read::<u8>(nh, 0)? >> 4;
        let (src, dst, family) = match version {
            4 => {
                let (s, d) = skb::ipv4_addrs(nh)?;
                (s, d, AF_INET)
            }
            6 => {
                let (s, d) = skb::ipv6_addrs(nh)?;
                (s, d, AF_INET6)
            }
            _ => return Ok(()),
        };
        let (sport, dport) = skb::udp_ports(udph)?;
        (family as u8, src, dst, sport, dport)
    };
    if !flow::watched_vip(vip, vport, family, IPPROTO_UDP as u8) {
        return Ok(());
    }
    let flow = FlowKey {
        client,
        vip,
        cport,
        vport,
        family,
        protocol: IPPROTO_UDP as u8,
        _pad: [0; 2],
    };
    let Some(b) = CONNS.get_ptr(&flow) else {
        return Ok(());
    };
    // SAFETY: a value pointer the map lookup just returned.
    let b = unsafe { &*b };
    let key = DestKey {
        vip,
        backend: b.addr,
        vport,
        bport: b.port,
        family,
        backend_family: b.family,
        protocol: IPPROTO_UDP as u8,
        _pad: 0,
    };
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    match UDP_TRAFFIC.get_ptr_mut(&key) {
        Some(t) => {
            // SAFETY: a value pointer the map lookup just returned.
            let t = unsafe { &mut *t };
            t.replied += 1;
            t.pending_since_ns = 0;
            t.last_reply_ns = now;
        }
        None => {
            let t = UdpTraffic {
                replied: 1,
                last_reply_ns: now,
                ..UdpTraffic::default()
            };
            let _ = UDP_TRAFFIC.insert(&key, &t, 0);
        }
    }
    Ok(())
}
