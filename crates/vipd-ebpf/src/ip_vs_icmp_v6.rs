//! kprobe on `ip_vs_out_icmp_v6()`: an ICMPv6 error arrives for a flow IPVS
//! masquerades, before IPVS translates (or drops) it.
//!
//! ```c
//! static int ip_vs_out_icmp_v6(struct netns_ipvs *ipvs, struct sk_buff *skb,
//!         int *related, unsigned int hooknum, struct ip_vs_iphdr *ipvsh);
//! ```
//! IPVS (seen on 6.1 and 6.12) checks the checksum of such an error without the IPv6
//! pseudo-header, so unless the device already validated it the check fails and the
//! error is dropped before the client's socket (and `udpv6_err`) sees it: the client
//! just times out. (Later kernels check it properly: `ip_vs_checksum_common_check`.)
//! This hook reads the error on its way in: the quoted datagram still carries the
//! backend's address, and `NAT_FLOWS` gives the VIP the client sent to. It records the
//! flow in `ICMP6_SEEN` so `udpv6_err` does not report the same error again where IPVS
//! lets it through. IPv4 errors pass IPVS and are reported by `udp_err`.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::kprobe, programs::ProbeContext};
use vipd_common::{ConnEvent, EventKind, FlowKey, AF_INET6, IPPROTO_UDP};

use crate::{
    emit::emit,
    flow,
    kernel_read::read,
    maps::{ICMP6_SEEN, NAT_FLOWS},
    skb,
};

const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_DEST_UNREACH: u8 = 1;

#[kprobe]
pub fn ip_vs_out_icmp_v6(ctx: ProbeContext) -> u32 {
    let _ = try_icmp_v6(&ctx);
    0
}

#[inline(always)]
fn try_icmp_v6(ctx: &ProbeContext) -> Result<(), i32> {
    let Some(off) = skb::offsets() else {
        return Ok(());
    };
    let skb_ptr: *const u8 = ctx.arg(1).ok_or(1)?;
    // SAFETY: every read goes through bpf_probe_read_kernel.
    unsafe {
        let ip6h = skb::network_header(skb_ptr, &off)?;
        if read::<u8>(ip6h, 0)? >> 4 != 6 || read::<u8>(ip6h, 6)? != IPPROTO_ICMPV6 {
            return Ok(());
        }
        let icmp = ip6h.add(40);
        let (icmp_type, code): (u8, u8) = (read(icmp, 0)?, read(icmp, 1)?);
        // Codes: no route, prohibited, address and port unreachable, policy, reject.
        if icmp_type != ICMPV6_DEST_UNREACH || !matches!(code, 0 | 1 | 3..=6) {
            return Ok(());
        }
        let inner = icmp.add(8);
        if read::<u8>(inner, 6)? != IPPROTO_UDP as u8 {
            return Ok(());
        }
        let (client, backend) = skb::ipv6_addrs(inner)?;
        let (cport, bport) = skb::udp_ports(inner.add(40))?;
        let translated = FlowKey {
            client,
            vip: backend,
            cport,
            vport: bport,
            family: AF_INET6 as u8,
            protocol: IPPROTO_UDP as u8,
            _pad: [0; 2],
        };
        let Some(vip) = NAT_FLOWS.get_ptr(&translated) else {
            return Ok(());
        };
        let vip = &*vip;
        let ev = ConnEvent {
            ts_ns: bpf_ktime_get_ns(),
            kind: EventKind::IcmpError as u8,
            family: vip.family,
            protocol: IPPROTO_UDP as u8,
            old_state: icmp_type,
            new_state: code,
            backend_family: AF_INET6 as u8,
            sport: cport,
            dport: vip.port,
            backend_port: bport,
            saddr: client,
            daddr: vip.addr,
            backend_addr: backend,
            ..ConnEvent::default()
        };
        if flow::watched(&ev) {
            let _ = ICMP6_SEEN.insert(&flow::flow_key(&ev), &ev.ts_ns, 0);
            emit(&ev);
        }
    }
    Ok(())
}
