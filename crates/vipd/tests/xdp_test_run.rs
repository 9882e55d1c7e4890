//! Host tier: the XDP balancer (`vipd_xdp_lb`) run on crafted packets with
//! BPF_PROG_TEST_RUN, inside a network namespace the test creates (the FIB and neighbour
//! lookups see its routes). Needs root; fails, never skips, without it.
//!
//! Namespace: a veth `d0` (peer `d1`) holding 198.18.1.1/24 (clients) and 198.18.2.1/24 (backends),
//! with permanent neighbour entries, so `bpf_fib_lookup` resolves everything to `d0` and
//! a forwarded packet comes back as XDP_TX with both MACs set.

mod xdp_common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use vipd::xdp::{
    packet::{self, Ipv4Opts, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_RST, TCP_SYN},
    test_run::{self, XDP_DROP, XDP_PASS, XDP_TX},
    Dataplane, Sizes, XdpProgram, XdpServiceSpec,
};
use vipd_common::xdp::{
    flow_hash, maglev_rehash, stat, XdpHealthKind, XdpTuple, BACKEND_OUT, MAGLEV_M, MAGLEV_REHASHES,
};
use xdp_common::Netns;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 100, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const B1: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);
const B2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 12);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 0x100, 0, 0, 0, 0, 1);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 1, 0, 0, 0, 0, 2);
const B1_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 2, 0, 0, 0, 0, 0x11);
const B2_6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x18, 2, 0, 0, 0, 0, 0x12);
const D0_MAC: [u8; 6] = [0x02, 0xd0, 0, 0, 0, 0x01];
const CLIENT_MAC: [u8; 6] = [0x02, 0xc1, 0, 0, 0, 0x02];
const B1_MAC: [u8; 6] = [0x02, 0xb1, 0, 0, 0, 0x11];
const B2_MAC: [u8; 6] = [0x02, 0xb2, 0, 0, 0, 0x12];

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

struct Lab {
    ns: Netns,
    ifindex: u32,
    prog: XdpProgram,
    dp: Dataplane,
}

fn sizes() -> Sizes {
    Sizes {
        services: 4,
        backends: 64,
        flows: 4096,
        events_bytes: 1 << 16,
    }
}

/// The namespace, the program, and `services` applied.
fn lab(services: &[XdpServiceSpec]) -> Lab {
    let ns = Netns::new("xt");
    ns.run(&format!(
        "ip link add d0 address {} type veth peer name d1 && ip link set d1 up && ip link set d0 up && \
         ip addr add 198.18.1.1/24 dev d0 && ip addr add 198.18.2.1/24 dev d0 && \
         ip neigh add {CLIENT} lladdr {} dev d0 nud permanent && \
         ip neigh add {B1} lladdr {} dev d0 nud permanent && \
         ip neigh add {B2} lladdr {} dev d0 nud permanent && \
         sysctl -qw net.ipv4.conf.all.forwarding=1 && \
         ip -6 addr add fd00:18:1::1/64 dev d0 nodad && ip -6 addr add fd00:18:2::1/64 dev d0 nodad && \
         ip -6 neigh add {CLIENT6} lladdr {} dev d0 nud permanent && \
         ip -6 neigh add {B1_6} lladdr {} dev d0 nud permanent && \
         ip -6 neigh add {B2_6} lladdr {} dev d0 nud permanent && \
         sysctl -qw net.ipv6.conf.all.forwarding=1",
        mac(D0_MAC),
        mac(CLIENT_MAC),
        mac(B1_MAC),
        mac(B2_MAC),
        mac(CLIENT_MAC),
        mac(B1_MAC),
        mac(B2_MAC)
    ));
    let ifindex = ns.ifindex("d0");
    let mut prog = XdpProgram::load(sizes(), None).expect("loading the XDP program (root?)");
    let mut dp = Dataplane::adopt(prog.take_maps().unwrap()).unwrap();
    dp.apply(services).unwrap();
    Lab {
        ns,
        ifindex,
        prog,
        dp,
    }
}

fn svc(port: u16, protocol: u8, backends: &[(Ipv4Addr, u16, u32)]) -> XdpServiceSpec {
    XdpServiceSpec {
        vip: SocketAddr::new(VIP.into(), port),
        protocol,
        backends: backends
            .iter()
            .map(|(a, p, w)| (SocketAddr::new((*a).into(), *p), *w))
            .collect(),
    }
}

fn web() -> Vec<XdpServiceSpec> {
    vec![
        svc(80, PROTO_TCP, &[(B1, 8080, 1), (B2, 8080, 1)]),
        svc(53, PROTO_UDP, &[(B1, 5353, 1), (B2, 5353, 1)]),
    ]
}

impl Lab {
    /// Runs the program on `frame` in the lab's namespace, as received on d0.
    fn run(&self, frame: &[u8]) -> test_run::RunResult {
        let fd = self.prog.lb_fd().unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let frame = frame.to_vec();
        let ifindex = self.ifindex;
        self.ns.enter(move || {
            // SAFETY: the descriptor stays open (owned by `self.prog`) until `enter`
            // returns, which joins this thread.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
            test_run::run(fd, &frame, ifindex, 1).expect("BPF_PROG_TEST_RUN")
        })
    }

    fn stat(&self, index: u32) -> u64 {
        self.dp.maps().stats().unwrap()[index as usize]
    }

    fn health(&mut self) -> Vec<vipd_common::xdp::XdpHealthEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.dp.maps_mut().next_health() {
            out.push(e.unwrap());
        }
        out
    }
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

fn tcp_frame(src: SocketAddrV4, dst: SocketAddrV4, flags: u8) -> Vec<u8> {
    packet::ipv4_frame(
        *src.ip(),
        *dst.ip(),
        PROTO_TCP,
        &packet::tcp(src, dst, flags, b""),
        &Ipv4Opts::default(),
    )
}

fn udp_frame(src: SocketAddrV4, dst: SocketAddrV4, o: &Ipv4Opts) -> Vec<u8> {
    packet::ipv4_frame(
        *src.ip(),
        *dst.ip(),
        PROTO_UDP,
        &packet::udp(src, dst, b"hello"),
        o,
    )
}

fn backend_mac(ip: Ipv4Addr) -> [u8; 6] {
    if ip == B1 {
        B1_MAC
    } else {
        B2_MAC
    }
}

/// A forwarded frame: XDP_TX, to a backend at `port`, MACs from the neighbour table,
/// TTL one less, checksums right. Returns the backend.
fn assert_forwarded(r: &test_run::RunResult, client: SocketAddrV4, port: u16) -> Ipv4Addr {
    assert_eq!(r.action, XDP_TX, "forward verdict");
    let p = packet::parse(&r.packet).unwrap();
    assert!(p.dst == B1 || p.dst == B2, "rewritten to a backend: {p:?}");
    assert_eq!(
        (p.src, p.sport),
        (*client.ip(), client.port()),
        "source untouched"
    );
    assert_eq!(p.dport, port);
    assert_eq!(p.dst_mac, backend_mac(p.dst));
    assert_eq!(p.src_mac, D0_MAC);
    assert_eq!(p.ttl, 63);
    packet::verify(&r.packet).unwrap_or_else(|e| panic!("bad {e} after forward"));
    p.dst
}

/// A reply translated back: from the VIP, to the client's MAC, checksums right.
fn assert_translated(r: &test_run::RunResult, vip_port: u16, client: SocketAddrV4) {
    assert_eq!(r.action, XDP_TX, "reply verdict");
    let p = packet::parse(&r.packet).unwrap();
    assert_eq!(
        (p.src, p.sport),
        (VIP, vip_port),
        "reply comes from the VIP"
    );
    assert_eq!((p.dst, p.dport), (*client.ip(), client.port()));
    assert_eq!(p.dst_mac, CLIENT_MAC);
    packet::verify(&r.packet).unwrap_or_else(|e| panic!("bad {e} after reply"));
}

#[test]
fn tcp_to_vip_is_forwarded_and_the_reply_comes_from_the_vip() {
    let mut lab = lab(&web());
    let client = sa(CLIENT, 40000);
    let r = lab.run(&tcp_frame(client, sa(VIP, 80), TCP_SYN));
    let b = assert_forwarded(&r, client, 8080);
    // Later segments of the flow go to the same backend.
    let again = lab.run(&tcp_frame(client, sa(VIP, 80), TCP_ACK));
    assert_eq!(assert_forwarded(&again, client, 8080), b);
    let reply = lab.run(&tcp_frame(sa(b, 8080), client, TCP_SYN | TCP_ACK));
    assert_translated(&reply, 80, client);
    let h = lab.health();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].kind, XdpHealthKind::Established as u8);
    assert_eq!(&h[0].backend[..4], &b.octets());
    assert_eq!(lab.stat(stat::FORWARDED), 2);
    assert_eq!(lab.stat(stat::REPLIED), 1);
}

#[test]
fn udp_to_vip_is_forwarded_and_the_reply_comes_from_the_vip() {
    let lab = lab(&web());
    let client = sa(CLIENT, 40001);
    let r = lab.run(&udp_frame(client, sa(VIP, 53), &Ipv4Opts::default()));
    let b = assert_forwarded(&r, client, 5353);
    let reply = lab.run(&udp_frame(sa(b, 5353), client, &Ipv4Opts::default()));
    assert_translated(&reply, 53, client);
}

#[test]
fn icmp_echo_to_vip_is_forwarded_and_the_reply_comes_from_the_vip() {
    let lab = lab(&web());
    let o = Ipv4Opts::default();
    let req = packet::ipv4_frame(
        CLIENT,
        VIP,
        PROTO_ICMP,
        &packet::icmp_echo(true, 77, 1, b"ping"),
        &o,
    );
    let r = lab.run(&req);
    assert_eq!(r.action, XDP_TX);
    let p = packet::parse(&r.packet).unwrap();
    assert!(p.dst == B1 || p.dst == B2);
    assert_eq!(p.sport, 77, "echo id kept");
    packet::verify(&r.packet).unwrap();
    // The ICMP message itself is untouched (its checksum has no pseudo-header).
    assert_eq!(&r.packet[34..], &req[34..]);
    let rep = packet::ipv4_frame(
        p.dst,
        CLIENT,
        PROTO_ICMP,
        &packet::icmp_echo(false, 77, 1, b"ping"),
        &o,
    );
    let back = lab.run(&rep);
    assert_eq!(back.action, XDP_TX);
    let q = packet::parse(&back.packet).unwrap();
    assert_eq!((q.src, q.dst, q.sport), (VIP, CLIENT, 77));
    assert_eq!(q.dst_mac, CLIENT_MAC);
    packet::verify(&back.packet).unwrap();
}

#[test]
fn ip_options_are_kept_and_the_l4_header_found_after_them() {
    let lab = lab(&web());
    let client = sa(CLIENT, 40002);
    // Four NOPs then end-of-options: IHL 6.
    let o = Ipv4Opts {
        options: vec![1, 1, 1, 0],
        ..Default::default()
    };
    let frame = udp_frame(client, sa(VIP, 53), &o);
    let r = lab.run(&frame);
    assert_forwarded(&r, client, 5353);
    let p = packet::parse(&r.packet).unwrap();
    assert_eq!(p.ihl, 24);
    assert_eq!(&r.packet[34..38], &[1, 1, 1, 0], "options untouched");
}

#[test]
fn fragments_are_passed_untouched() {
    let lab = lab(&web());
    let client = sa(CLIENT, 40003);
    for frag in [
        0x2000u16, /* first, more to come */
        0x0010,    /* offset 128 */
    ] {
        let frame = udp_frame(
            client,
            sa(VIP, 53),
            &Ipv4Opts {
                frag,
                ..Default::default()
            },
        );
        let r = lab.run(&frame);
        assert_eq!(r.action, XDP_PASS, "fragment {frag:#x}");
        assert_eq!(r.packet, frame, "fragment {frag:#x} changed");
    }
    assert_eq!(lab.stat(stat::FRAGMENTS), 2);
}

#[test]
fn a_bad_ipv4_header_checksum_is_dropped_and_a_bad_l4_checksum_stays_bad() {
    let lab = lab(&web());
    let client = sa(CLIENT, 40004);
    let mut frame = tcp_frame(client, sa(VIP, 80), TCP_SYN);
    frame[24] ^= 0x55;
    let r = lab.run(&frame);
    assert_eq!(r.action, XDP_DROP);
    assert_eq!(lab.stat(stat::BAD_CHECKSUM), 1);

    // A wrong TCP checksum is not repaired by the incremental update: the backend's
    // stack must still see it wrong (and drop it), as it would without the balancer.
    let mut frame = tcp_frame(client, sa(VIP, 80), TCP_SYN);
    frame[14 + 20 + 16] ^= 0x0f;
    let r = lab.run(&frame);
    assert_eq!(r.action, XDP_TX);
    let e = packet::verify(&r.packet).unwrap_err();
    assert!(e.contains("L4"), "{e}");
}

#[test]
fn truncated_headers_are_passed_untouched() {
    let lab = lab(&web());
    let client = sa(CLIENT, 40005);
    let full = tcp_frame(client, sa(VIP, 80), TCP_SYN);
    // Cut inside the TCP header (before and after the ports), and inside the IPv4
    // header. (BPF_PROG_TEST_RUN, like every driver, hands XDP at least an Ethernet
    // header.)
    for len in [14 + 20 + 10, 14 + 20 + 2, 14 + 12] {
        let frame = &full[..len];
        let r = lab.run(frame);
        assert_eq!(r.action, XDP_PASS, "cut at {len}");
        assert_eq!(r.packet, frame, "cut at {len} changed");
    }
    // An IHL pointing past the end of the packet.
    let mut frame = full[..14 + 20 + 20].to_vec();
    frame[14] = 0x4f;
    let r = lab.run(&frame);
    assert_eq!(r.action, XDP_PASS);
    assert_eq!(r.packet, frame);
    assert!(lab.stat(stat::TRUNCATED) >= 3);
}

#[test]
fn traffic_not_for_a_vip_is_passed_untouched() {
    let lab = lab(&web());
    let client = sa(CLIENT, 40006);
    let frames = [
        // Another address, a VIP port without a service, a UDP port of a TCP service.
        tcp_frame(client, sa(Ipv4Addr::new(198, 18, 100, 2), 80), TCP_SYN),
        tcp_frame(client, sa(VIP, 81), TCP_SYN),
        udp_frame(client, sa(VIP, 80), &Ipv4Opts::default()),
        // A backend's packet to a client it has no flow with.
        tcp_frame(sa(B1, 8080), client, TCP_SYN | TCP_ACK),
        // ARP.
        {
            let mut f = vec![0xff; 6];
            f.extend_from_slice(&CLIENT_MAC);
            f.extend_from_slice(&[0x08, 0x06]);
            f.extend_from_slice(&[0; 28]);
            f
        },
    ];
    for (i, frame) in frames.iter().enumerate() {
        let r = lab.run(frame);
        assert_eq!(r.action, XDP_PASS, "frame {i}");
        assert_eq!(&r.packet, frame, "frame {i} changed");
    }
    assert_eq!(lab.stat(stat::FORWARDED), 0);
}

#[test]
fn flows_spread_per_weights_and_stick_to_their_backend() {
    let mut lab = lab(&[svc(80, PROTO_TCP, &[(B1, 8080, 1), (B2, 8080, 3)])]);
    let mut to_b1 = 0;
    let mut first = Vec::new();
    for port in 20000..22000u16 {
        let client = sa(CLIENT, port);
        let r = lab.run(&tcp_frame(client, sa(VIP, 80), TCP_SYN));
        let b = assert_forwarded(&r, client, 8080);
        to_b1 += usize::from(b == B1);
        first.push(b);
    }
    let share = to_b1 as f64 / 2000.0;
    assert!(
        (share - 0.25).abs() < 0.04,
        "B1 got {share} of flows, weight share 0.25"
    );
    // Weights change (B1 now 3, B2 1): existing flows stay where they are.
    lab.dp
        .apply(&[svc(80, PROTO_TCP, &[(B1, 8080, 3), (B2, 8080, 1)])])
        .unwrap();
    for (i, port) in (20000..22000u16).enumerate().step_by(7) {
        let client = sa(CLIENT, port);
        let r = lab.run(&tcp_frame(client, sa(VIP, 80), TCP_ACK));
        assert_eq!(
            assert_forwarded(&r, client, 8080),
            first[i],
            "flow {port} moved"
        );
    }
    // B2 removed: its flows move to B1, B1's stay.
    lab.dp
        .apply(&[svc(80, PROTO_TCP, &[(B1, 8080, 3)])])
        .unwrap();
    for (i, port) in (20000..22000u16).enumerate().step_by(7) {
        let client = sa(CLIENT, port);
        let r = lab.run(&tcp_frame(client, sa(VIP, 80), TCP_ACK));
        assert_eq!(
            assert_forwarded(&r, client, 8080),
            B1,
            "flow {port} (was {})",
            first[i]
        );
    }
}

/// The backend a new TCP flow from `client` to VIP:80 should get by the table of `slot`,
/// with backend `out` marked out: as the program computes it.
fn expected_pick(table: &[u32], client: SocketAddrV4, out: u32) -> u32 {
    let mut t = XdpTuple {
        sport: client.port(),
        dport: 80,
        family: 2,
        protocol: PROTO_TCP,
        ..Default::default()
    };
    t.src[..4].copy_from_slice(&client.ip().octets());
    t.dst[..4].copy_from_slice(&VIP.octets());
    let hash = flow_hash(&t);
    let own = table[(hash % MAGLEV_M) as usize];
    if own != out {
        return own;
    }
    (1..=MAGLEV_REHASHES)
        .map(|k| table[(maglev_rehash(hash, k) % MAGLEV_M) as usize])
        .find(|&id| id != out)
        .unwrap_or(own)
}

/// A backend marked out takes no new flow even while its service's table still names
/// it (the mark is one write, the table tens of thousands): each new flow lands where
/// the rehash rule says, flows already on it stay. `Dataplane::apply` marks a backend
/// whose weight drops to 0 before it rewrites the table, says when, and clears the mark
/// when the weight comes back.
#[test]
fn a_backend_marked_out_takes_no_new_flow_before_its_table_changes() {
    let two = |w1| [svc(80, PROTO_TCP, &[(B1, 8080, w1), (B2, 8080, 1)])];
    let mut lab = lab(&two(1));
    let key = two(1)[0].key();
    let id = lab
        .dp
        .backend_id(&key, SocketAddr::new(B1.into(), 8080))
        .unwrap();
    let slot = lab
        .dp
        .maps()
        .services()
        .unwrap()
        .into_iter()
        .find(|(k, _)| *k == key)
        .unwrap()
        .1
        .slot;
    let table = lab.dp.maps().table(slot).unwrap();
    let syn = |lab: &Lab, c: SocketAddrV4| {
        assert_forwarded(&lab.run(&tcp_frame(c, sa(VIP, 80), TCP_SYN)), c, 8080)
    };
    let kept = (30000..31000u16)
        .map(|p| sa(CLIENT, p))
        .find(|c| syn(&lab, *c) == B1)
        .expect("a flow on B1");

    // Marked out by hand, the table untouched.
    let entry = lab.dp.maps().backend(id).unwrap();
    let out = vipd_common::xdp::XdpBackend {
        flags: BACKEND_OUT,
        ..entry
    };
    lab.dp.maps_mut().set_backend(id, out).unwrap();
    let mut to_b1 = 0;
    for port in 20000..22000u16 {
        let c = sa(CLIENT, port);
        let want_b1 = expected_pick(&table, c, id) == id;
        let got = syn(&lab, c);
        assert_eq!(got == B1, want_b1, "flow {port} went to {got}");
        to_b1 += usize::from(got == B1);
    }
    // Half the entries name B1; a flow stays on it only if 7 more tries all do too.
    assert!(to_b1 < 20, "{to_b1} of 2000 new flows still went to B1");
    let r = lab.run(&tcp_frame(kept, sa(VIP, 80), TCP_ACK));
    assert_eq!(
        assert_forwarded(&r, kept, 8080),
        B1,
        "an established flow moved"
    );
    lab.dp.maps_mut().set_backend(id, entry).unwrap();

    // Weight 0: marked, then the table rewritten without it.
    let ch = lab.dp.apply(&two(0)).unwrap();
    assert_eq!(ch.backends_flagged, 1, "{ch:?}");
    assert!(ch.out_at_ns.is_some() && ch.maglev_entries > 0, "{ch:?}");
    assert_eq!(lab.dp.maps().backend(id).unwrap().flags, BACKEND_OUT);
    assert!(!lab.dp.maps().table(slot).unwrap().contains(&id));
    // Back: unmarked, in the table again; then nothing left to write.
    let ch = lab.dp.apply(&two(1)).unwrap();
    assert_eq!((ch.backends_flagged, ch.out_at_ns), (1, None), "{ch:?}");
    assert_eq!(lab.dp.maps().backend(id).unwrap().flags, 0);
    assert!(lab.dp.maps().table(slot).unwrap().contains(&id));
    assert_eq!(lab.dp.apply(&two(1)).unwrap().total(), 0);
}

#[test]
fn a_service_without_weight_drops_and_an_unresolved_neighbour_goes_to_the_kernel() {
    let lab = lab(&[
        svc(80, PROTO_TCP, &[(B1, 8080, 0)]),
        svc(81, PROTO_TCP, &[(Ipv4Addr::new(198, 18, 2, 99), 8080, 1)]),
    ]);
    let client = sa(CLIENT, 40007);
    let r = lab.run(&tcp_frame(client, sa(VIP, 80), TCP_SYN));
    assert_eq!(r.action, XDP_DROP);
    assert_eq!(lab.stat(stat::NO_BACKEND), 1);
    // No neighbour entry for 198.18.2.99: the rewritten packet is passed, so the kernel
    // forwards it and resolves the neighbour.
    let r = lab.run(&tcp_frame(client, sa(VIP, 81), TCP_SYN));
    assert_eq!(r.action, XDP_PASS);
    let p = packet::parse(&r.packet).unwrap();
    assert_eq!(
        (p.dst, p.dport, p.ttl),
        (Ipv4Addr::new(198, 18, 2, 99), 8080, 64)
    );
    packet::verify(&r.packet).unwrap();
    assert_eq!(lab.stat(stat::FIB_PASS), 1);
}

#[test]
fn a_reset_answering_a_syn_is_reported_as_a_refusal() {
    let mut lab = lab(&web());
    let client = sa(CLIENT, 40008);
    let b = assert_forwarded(
        &lab.run(&tcp_frame(client, sa(VIP, 80), TCP_SYN)),
        client,
        8080,
    );
    let rst = lab.run(&tcp_frame(sa(b, 8080), client, TCP_RST | TCP_ACK));
    assert_translated(&rst, 80, client);
    let h = lab.health();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].kind, XdpHealthKind::Refused as u8);
    assert_eq!(&h[0].backend[..4], &b.octets());
    assert_eq!((h[0].cport, h[0].vport, h[0].bport), (40008, 80, 8080));
    assert_eq!(&h[0].vip[..4], &VIP.octets());
    let id = lab.dp.backend(h[0].backend_id).unwrap();
    assert_eq!(id.addr, SocketAddr::new(b.into(), 8080));
}

#[test]
fn a_syn_sent_again_unanswered_is_reported_as_a_retransmission() {
    let mut lab = lab(&web());
    let client = sa(CLIENT, 40009);
    let syn = tcp_frame(client, sa(VIP, 80), TCP_SYN);
    let b = assert_forwarded(&lab.run(&syn), client, 8080);
    // A duplicate right away is not a retransmission.
    lab.run(&syn);
    assert!(lab.health().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(assert_forwarded(&lab.run(&syn), client, 8080), b);
    let h = lab.health();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].kind, XdpHealthKind::SynRetransmit as u8);
    assert_eq!(&h[0].backend[..4], &b.octets());
}

#[test]
fn syns_of_a_watched_service_are_reported_as_they_leave() {
    let mut lab = lab(&web());
    let vip = svc(80, PROTO_TCP, &[]).key();
    let slot = lab.dp.slot(&vip).expect("the TCP service's slot");
    // Not watched: a SYN is forwarded and reported to no one.
    let first = sa(CLIENT, 40020);
    assert_forwarded(
        &lab.run(&tcp_frame(first, sa(VIP, 80), TCP_SYN)),
        first,
        8080,
    );
    assert!(lab.health().is_empty());
    // Watched: the SYN of a new flow is reported, with its backend; the flow's other
    // segments are not.
    lab.dp.maps_mut().set_syn_watch(slot, true).unwrap();
    assert_eq!(lab.dp.maps().syn_watch().unwrap(), [slot]);
    let client = sa(CLIENT, 40021);
    let b = assert_forwarded(
        &lab.run(&tcp_frame(client, sa(VIP, 80), TCP_SYN)),
        client,
        8080,
    );
    lab.run(&tcp_frame(client, sa(VIP, 80), TCP_ACK));
    let h = lab.health();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].kind, XdpHealthKind::SynSent as u8);
    assert_eq!(&h[0].backend[..4], &b.octets());
    assert_eq!(h[0].cport, 40021);
    // A fresh attempt on the tuple after an answer is a new handshake: reported again.
    lab.run(&tcp_frame(sa(b, 8080), client, TCP_SYN | TCP_ACK));
    assert_eq!(lab.health()[0].kind, XdpHealthKind::Established as u8);
    lab.run(&tcp_frame(client, sa(VIP, 80), TCP_SYN));
    let h = lab.health();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].kind, XdpHealthKind::SynSent as u8);
    // Unwatched again: nothing.
    lab.dp.maps_mut().set_syn_watch(slot, false).unwrap();
    lab.dp.maps_mut().set_syn_watch(slot, false).unwrap();
    let other = sa(CLIENT, 40022);
    lab.run(&tcp_frame(other, sa(VIP, 80), TCP_SYN));
    assert!(lab.health().is_empty());
}

/// With three quarters of the health ring unread, successes (here: SYNs leaving) are
/// shed and counted, and a refusal still finds room.
#[test]
fn a_ring_three_quarters_full_sheds_successes_and_keeps_room_for_failures() {
    let mut lab = lab(&web());
    let slot = lab.dp.slot(&svc(80, PROTO_TCP, &[]).key()).unwrap();
    lab.dp.maps_mut().set_syn_watch(slot, true).unwrap();
    // A record takes 88 bytes of the 64 KiB ring (80 and an 8-byte header): about 560
    // fill three quarters, 744 all of it.
    let n = 800u16;
    let mut first = None;
    for port in 0..n {
        let client = sa(CLIENT, 41000 + port);
        let b = assert_forwarded(
            &lab.run(&tcp_frame(client, sa(VIP, 80), TCP_SYN)),
            client,
            8080,
        );
        first.get_or_insert((client, b));
    }
    let shed = lab.stat(stat::EVENTS_SHED);
    assert!(
        (200..=300).contains(&shed),
        "{shed} of {n} SYN records shed"
    );
    assert_eq!(lab.stat(stat::EVENTS_LOST), 0, "records lost, not shed");
    let (client, b) = first.unwrap();
    lab.run(&tcp_frame(sa(b, 8080), client, TCP_RST | TCP_ACK));
    let h = lab.health();
    assert_eq!(h.len() as u64, u64::from(n) - shed + 1);
    let last = h.last().unwrap();
    assert_eq!(last.kind, XdpHealthKind::Refused as u8, "{last:?}");
    assert_eq!(last.cport, client.port());
    assert_eq!(lab.stat(stat::EVENTS_LOST), 0);
    // Drained: successes go in again.
    let again = sa(CLIENT, 42000);
    lab.run(&tcp_frame(again, sa(VIP, 80), TCP_SYN));
    assert_eq!(lab.health().len(), 1);
    assert_eq!(lab.stat(stat::EVENTS_SHED), shed);
}

#[test]
fn an_icmp_unreachable_from_a_backend_is_reported_and_translated() {
    let mut lab = lab(&web());
    let client = sa(CLIENT, 40010);
    let fwd = lab.run(&udp_frame(client, sa(VIP, 53), &Ipv4Opts::default()));
    let b = assert_forwarded(&fwd, client, 5353);
    // The backend's port unreachable quotes the datagram as it got it.
    let quoted = &fwd.packet[14..];
    let err = packet::ipv4_frame(
        b,
        CLIENT,
        PROTO_ICMP,
        &packet::icmp_unreachable(3, quoted),
        &Ipv4Opts::default(),
    );
    let r = lab.run(&err);
    assert_eq!(r.action, XDP_TX);
    let p = packet::parse(&r.packet).unwrap();
    assert_eq!((p.src, p.dst), (VIP, CLIENT), "outer header from the VIP");
    packet::verify(&r.packet).unwrap();
    // The quoted packet is the client's own again: to the VIP's address and port, with
    // valid checksums.
    let inner = &r.packet[34 + 8..];
    assert_eq!(&inner[16..20], &VIP.octets());
    assert_eq!(&inner[22..24], &53u16.to_be_bytes());
    assert_eq!(packet::checksum(&inner[..20], 0), 0, "quoted IPv4 checksum");
    let mut as_frame = r.packet[..14].to_vec();
    as_frame.extend_from_slice(inner);
    packet::verify(&as_frame).unwrap_or_else(|e| panic!("quoted packet: bad {e}"));
    let h = lab.health();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].kind, XdpHealthKind::Unreachable as u8);
    assert_eq!((h[0].icmp_type, h[0].icmp_code), (3, 3));
    assert_eq!(&h[0].backend[..4], &b.octets());
}

// ---------------------------------------------------------------------------------------
// IPv6.

fn web6() -> Vec<XdpServiceSpec> {
    let s = |port, protocol, bport| XdpServiceSpec {
        vip: SocketAddr::new(VIP6.into(), port),
        protocol,
        backends: vec![
            (SocketAddr::new(B1_6.into(), bport), 1),
            (SocketAddr::new(B2_6.into(), bport), 1),
        ],
    };
    vec![s(80, PROTO_TCP, 8080), s(53, PROTO_UDP, 5353)]
}

fn sa6(ip: Ipv6Addr, port: u16) -> SocketAddrV6 {
    SocketAddrV6::new(ip, port, 0, 0)
}

/// Forwarded over IPv6: XDP_TX to a backend at `port`, hop limit one less, MACs and the
/// L4 checksum right. Returns the backend.
fn assert_forwarded6(r: &test_run::RunResult, client: SocketAddrV6, port: u16) -> Ipv6Addr {
    assert_eq!(r.action, XDP_TX, "forward verdict");
    let (src, dst, hop, _, sport, dport) = packet::parse6(&r.packet).unwrap();
    assert!(dst == B1_6 || dst == B2_6, "rewritten to a backend: {dst}");
    assert_eq!((src, sport), (*client.ip(), client.port()));
    assert_eq!(dport, port);
    assert_eq!(hop, 63);
    assert_eq!(&r.packet[..6], &if dst == B1_6 { B1_MAC } else { B2_MAC });
    packet::verify6(&r.packet).unwrap_or_else(|e| panic!("bad {e} after forward"));
    dst
}

fn assert_translated6(r: &test_run::RunResult, vip_port: u16, client: SocketAddrV6) {
    assert_eq!(r.action, XDP_TX, "reply verdict");
    let (src, dst, _, _, sport, dport) = packet::parse6(&r.packet).unwrap();
    assert_eq!((src, sport), (VIP6, vip_port), "reply comes from the VIP");
    assert_eq!((dst, dport), (*client.ip(), client.port()));
    assert_eq!(&r.packet[..6], &CLIENT_MAC);
    packet::verify6(&r.packet).unwrap_or_else(|e| panic!("bad {e} after reply"));
}

#[test]
fn ipv6_tcp_and_udp_are_forwarded_and_answered_from_the_vip() {
    let mut lab = lab(&web6());
    let client = sa6(CLIENT6, 40100);
    let syn = packet::ipv6_frame(
        CLIENT6,
        VIP6,
        PROTO_TCP,
        &packet::tcp6(client, sa6(VIP6, 80), TCP_SYN),
    );
    let b = assert_forwarded6(&lab.run(&syn), client, 8080);
    let synack = packet::ipv6_frame(
        b,
        CLIENT6,
        PROTO_TCP,
        &packet::tcp6(sa6(b, 8080), client, TCP_SYN | TCP_ACK),
    );
    assert_translated6(&lab.run(&synack), 80, client);
    let h = lab.health();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].kind, XdpHealthKind::Established as u8);
    assert_eq!(h[0].backend, b.octets());

    let client = sa6(CLIENT6, 40101);
    let dgram = packet::ipv6_frame(
        CLIENT6,
        VIP6,
        PROTO_UDP,
        &packet::udp6(client, sa6(VIP6, 53), b"q"),
    );
    let b = assert_forwarded6(&lab.run(&dgram), client, 5353);
    let answer = packet::ipv6_frame(
        b,
        CLIENT6,
        PROTO_UDP,
        &packet::udp6(sa6(b, 5353), client, b"a"),
    );
    assert_translated6(&lab.run(&answer), 53, client);
}

#[test]
fn ipv6_echo_checksum_follows_the_address_rewrite() {
    let lab = lab(&web6());
    let req = packet::ipv6_frame(
        CLIENT6,
        VIP6,
        packet::PROTO_ICMPV6,
        &packet::icmp6_echo(CLIENT6, VIP6, true, 9, 1),
    );
    let r = lab.run(&req);
    assert_eq!(r.action, XDP_TX);
    let (_, b, _, _, id, _) = packet::parse6(&r.packet).unwrap();
    assert!(b == B1_6 || b == B2_6);
    assert_eq!(id, 9);
    // Unlike ICMPv4, the ICMPv6 checksum covers the addresses: it must have followed.
    packet::verify6(&r.packet).unwrap_or_else(|e| panic!("bad {e} after forward"));
    let rep = packet::ipv6_frame(
        b,
        CLIENT6,
        packet::PROTO_ICMPV6,
        &packet::icmp6_echo(b, CLIENT6, false, 9, 1),
    );
    let back = lab.run(&rep);
    assert_eq!(back.action, XDP_TX);
    let (src, dst, _, _, id, _) = packet::parse6(&back.packet).unwrap();
    assert_eq!((src, dst, id), (VIP6, CLIENT6, 9));
    packet::verify6(&back.packet).unwrap();
}

#[test]
fn ipv6_port_unreachable_from_a_backend_is_reported_and_translated() {
    let mut lab = lab(&web6());
    let client = sa6(CLIENT6, 40102);
    let dgram = packet::ipv6_frame(
        CLIENT6,
        VIP6,
        PROTO_UDP,
        &packet::udp6(client, sa6(VIP6, 53), b"q"),
    );
    let fwd = lab.run(&dgram);
    let b = assert_forwarded6(&fwd, client, 5353);
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&fwd.packet[14..]);
    let err = packet::ipv6_frame(
        b,
        CLIENT6,
        packet::PROTO_ICMPV6,
        &packet::icmp6(b, CLIENT6, 1, 4, &body),
    );
    let r = lab.run(&err);
    assert_eq!(r.action, XDP_TX);
    let (src, dst, ..) = packet::parse6(&r.packet).unwrap();
    assert_eq!((src, dst), (VIP6, CLIENT6));
    packet::verify6(&r.packet).unwrap_or_else(|e| panic!("bad {e} in the error"));
    // The quoted datagram is the client's own again, with a valid UDP checksum.
    let mut quoted = r.packet[..14].to_vec();
    quoted.extend_from_slice(&r.packet[14 + 40 + 8..]);
    let (qs, qd, _, _, _, qport) = packet::parse6(&quoted).unwrap();
    assert_eq!((qs, qd, qport), (CLIENT6, VIP6, 53));
    packet::verify6(&quoted).unwrap_or_else(|e| panic!("quoted: bad {e}"));
    let h = lab.health();
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].kind, XdpHealthKind::Unreachable as u8);
    assert_eq!((h[0].icmp_type, h[0].icmp_code), (1, 4));
}

#[test]
fn ipv6_fragments_extension_headers_and_other_traffic_pass_untouched() {
    let lab = lab(&web6());
    let client = sa6(CLIENT6, 40103);
    let udp = packet::udp6(client, sa6(VIP6, 53), b"q");
    // A fragment header (44) before the UDP header.
    let mut frag = vec![PROTO_UDP, 0, 0, 1, 0, 0, 0, 7];
    frag.extend_from_slice(&udp);
    // Hop-by-hop options (0): an extension header vipd does not parse.
    let mut hbh = vec![PROTO_UDP, 0, 1, 4, 0, 0, 0, 0];
    hbh.extend_from_slice(&udp);
    let other = Ipv6Addr::new(0xfd00, 0x18, 0x100, 0, 0, 0, 0, 2);
    let frames = [
        packet::ipv6_frame(CLIENT6, VIP6, 44, &frag),
        packet::ipv6_frame(CLIENT6, VIP6, 0, &hbh),
        packet::ipv6_frame(CLIENT6, other, PROTO_UDP, &udp),
        // Neighbour solicitation.
        packet::ipv6_frame(
            CLIENT6,
            VIP6,
            packet::PROTO_ICMPV6,
            &packet::icmp6(CLIENT6, VIP6, 135, 0, &[0; 20]),
        ),
    ];
    for (i, f) in frames.iter().enumerate() {
        let r = lab.run(f);
        assert_eq!(r.action, XDP_PASS, "frame {i}");
        assert_eq!(&r.packet, f, "frame {i} changed");
    }
    assert_eq!(lab.stat(stat::FRAGMENTS), 1);
}
