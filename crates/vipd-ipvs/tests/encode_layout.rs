//! Byte-exact encodings of every IPVS command, written out from `include/uapi/linux/ip_vs.h`
//! and the netlink attribute layout:
//!
//! * `struct nlattr { __u16 nla_len; __u16 nla_type; }`, host order (little-endian here),
//!   `nla_len` = 4 + payload, padding to 4 bytes not counted;
//! * nests carry `NLA_F_NESTED` (0x8000) in their type;
//! * `IPVS_CMD_*`, `IPVS_CMD_ATTR_*`, `IPVS_SVC_ATTR_*`, `IPVS_DEST_ATTR_*` numbers are the
//!   positions in the header's enums (spelled out as literals below, not taken from the
//!   crate);
//! * ports (`IPVS_SVC_ATTR_PORT`, `IPVS_DEST_ATTR_PORT`, `IPVS_DEST_ATTR_TUN_PORT`) are
//!   `__be16`; addresses are the 16-byte `union nf_inet_addr`; `IPVS_SVC_ATTR_FLAGS` is
//!   `struct ip_vs_flags { __u32 flags; __u32 mask; }`; IPv4 netmasks are `__be32`, IPv6
//!   "netmasks" a host-order prefix length.
#![cfg(target_endian = "little")]

use std::net::{IpAddr, Ipv4Addr};

use vipd_ipvs::{
    AddressFamily, Command, Destination, ForwardMethod, Netmask, Protocol, Request, Service,
    ServiceFlags, ServiceKey, Timeouts, TunnelFlags, TunnelKind,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `genlmsghdr` + attributes.
fn payload(cmd: u8, attrs: &[&[u8]]) -> Vec<u8> {
    let mut v = vec![cmd, 1, 0, 0];
    for a in attrs {
        v.extend_from_slice(a);
    }
    v
}

/// IPVS_CMD_ATTR_SERVICE nest identifying TCP 10.0.0.1:80.
#[rustfmt::skip]
const SVC_TCP_10_0_0_1_80: [u8; 48] = [
    48, 0, 1, 0x80,                 // nla_len 48, IPVS_CMD_ATTR_SERVICE (1) | NLA_F_NESTED
    6, 0, 1, 0,   2, 0, 0, 0,       // IPVS_SVC_ATTR_AF (1) = AF_INET (2), u16 + 2 pad
    6, 0, 2, 0,   6, 0, 0, 0,       // IPVS_SVC_ATTR_PROTOCOL (2) = IPPROTO_TCP (6)
    20, 0, 3, 0,  10, 0, 0, 1,      // IPVS_SVC_ATTR_ADDR (3): nf_inet_addr, IPv4 first
                  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    6, 0, 4, 0,   0, 80, 0, 0,      // IPVS_SVC_ATTR_PORT (4) = htons(80)
];

fn tcp_key() -> ServiceKey {
    ServiceKey::tcp(ip("10.0.0.1"), 80)
}

#[test]
fn get_info() {
    let r = Request::get_info();
    assert_eq!(r.command(), Command::GetInfo);
    assert_eq!(r.genl_payload(), [15, 1, 0, 0]);
    assert!(!r.is_dump());
}

#[test]
fn get_info_full_netlink_message() {
    let bytes = Request::get_info().to_netlink_message(0x1c, 7);
    #[rustfmt::skip]
    let want: [u8; 20] = [
        20, 0, 0, 0,      // nlmsg_len
        0x1c, 0,          // nlmsg_type = resolved family id
        0x05, 0,          // NLM_F_REQUEST (1) | NLM_F_ACK (4)
        7, 0, 0, 0,       // nlmsg_seq
        0, 0, 0, 0,       // nlmsg_pid
        15, 1, 0, 0,      // genlmsghdr: IPVS_CMD_GET_INFO (15), version 1, reserved
    ];
    assert_eq!(bytes, want);
}

#[test]
fn dump_services_full_netlink_message() {
    let r = Request::dump_services();
    assert!(r.is_dump());
    let bytes = r.to_netlink_message(0x1c, 1);
    #[rustfmt::skip]
    let want: [u8; 20] = [
        20, 0, 0, 0, 0x1c, 0,
        0x01, 0x03,       // NLM_F_REQUEST | NLM_F_DUMP (NLM_F_ROOT | NLM_F_MATCH = 0x300)
        1, 0, 0, 0, 0, 0, 0, 0,
        4, 1, 0, 0,       // IPVS_CMD_GET_SERVICE (4)
    ];
    assert_eq!(bytes, want);
}

#[test]
fn get_service_tcp_v4() {
    let r = Request::get_service(&tcp_key()).unwrap();
    assert_eq!(r.genl_payload(), payload(4, &[&SVC_TCP_10_0_0_1_80]));
    let bytes = r.to_netlink_message(0x1c, 9);
    assert_eq!(&bytes[0..4], &[68, 0, 0, 0]);
    assert_eq!(&bytes[16..], payload(4, &[&SVC_TCP_10_0_0_1_80]));
}

#[test]
fn del_service() {
    let r = Request::del_service(&tcp_key()).unwrap();
    assert_eq!(r.genl_payload(), payload(3, &[&SVC_TCP_10_0_0_1_80]));
}

#[test]
fn zero_service_and_zero_all() {
    let r = Request::zero_service(&tcp_key()).unwrap();
    assert_eq!(r.genl_payload(), payload(16, &[&SVC_TCP_10_0_0_1_80]));
    assert_eq!(Request::zero_all_services().genl_payload(), [16, 1, 0, 0]);
}

#[test]
fn flush_is_encodable_only() {
    assert_eq!(
        Request::flush_all_services_dangerous().genl_payload(),
        [17, 1, 0, 0]
    );
}

#[test]
fn new_service_v4_persistent_with_pe() {
    let mut s = Service::new(ServiceKey::tcp(ip("192.0.2.10"), 443), "wrr");
    s.flags = ServiceFlags::PERSISTENT | ServiceFlags::ONE_PACKET | ServiceFlags::HASHED;
    s.timeout = 300;
    s.netmask = Netmask::V4(Ipv4Addr::new(255, 255, 255, 0));
    s.pe_name = Some("sip".into());
    let r = Request::new_service(&s).unwrap();
    #[rustfmt::skip]
    let nest: [u8; 92] = [
        92, 0, 1, 0x80,
        6, 0, 1, 0,   2, 0, 0, 0,                  // AF_INET
        6, 0, 2, 0,   6, 0, 0, 0,                  // IPPROTO_TCP
        20, 0, 3, 0,  192, 0, 2, 10,               // address
                      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        6, 0, 4, 0,   0x01, 0xbb, 0, 0,            // htons(443)
        8, 0, 6, 0,   b'w', b'r', b'r', 0,         // IPVS_SVC_ATTR_SCHED_NAME (6), NUL-terminated
        12, 0, 7, 0,  0x05, 0, 0, 0,               // IPVS_SVC_ATTR_FLAGS (7): flags, HASHED cleared
                      0xff, 0xff, 0xff, 0xff,      //   mask = ~0
        8, 0, 8, 0,   0x2c, 0x01, 0, 0,            // IPVS_SVC_ATTR_TIMEOUT (8) = 300
        8, 0, 9, 0,   255, 255, 255, 0,            // IPVS_SVC_ATTR_NETMASK (9), __be32
        8, 0, 11, 0,  b's', b'i', b'p', 0,         // IPVS_SVC_ATTR_PE_NAME (11)
    ];
    assert_eq!(r.genl_payload(), payload(1, &[&nest]));
    let r = Request::set_service(&s).unwrap();
    assert_eq!(r.genl_payload(), payload(2, &[&nest]));
}

#[test]
fn new_service_v6_udp_sh_flags() {
    let mut s = Service::new(ServiceKey::udp(ip("2001:db8::1"), 53), "sh");
    s.flags = ServiceFlags::SH_FALLBACK | ServiceFlags::SH_PORT;
    s.netmask = Netmask::V6Prefix(64);
    let r = Request::new_service(&s).unwrap();
    #[rustfmt::skip]
    let nest: [u8; 84] = [
        84, 0, 1, 0x80,
        6, 0, 1, 0,   10, 0, 0, 0,                 // AF_INET6 (10)
        6, 0, 2, 0,   17, 0, 0, 0,                 // IPPROTO_UDP (17)
        20, 0, 3, 0,  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        6, 0, 4, 0,   0, 53, 0, 0,
        7, 0, 6, 0,   b's', b'h', 0, 0,            // "sh\0" (nla_len 7) + 1 pad
        12, 0, 7, 0,  0x18, 0, 0, 0,               // SCHED1 | SCHED2
                      0xff, 0xff, 0xff, 0xff,
        8, 0, 8, 0,   0, 0, 0, 0,                  // timeout 0
        8, 0, 9, 0,   64, 0, 0, 0,                 // prefix length 64, host order
    ];
    assert_eq!(r.genl_payload(), payload(1, &[&nest]));
}

#[test]
fn new_service_sctp_and_mh_flags() {
    let mut s = Service::new(ServiceKey::sctp(ip("10.0.0.1"), 80), "mh");
    s.flags = ServiceFlags::MH_FALLBACK | ServiceFlags::MH_PORT;
    let attrs = Request::new_service(&s).unwrap();
    let b = attrs.attributes();
    assert_eq!(
        &b[12..20],
        &[6, 0, 2, 0, 132, 0, 0, 0],
        "IPPROTO_SCTP (132)"
    );
    assert_eq!(&b[48..56], &[7, 0, 6, 0, b'm', b'h', 0, 0]);
    assert_eq!(
        &b[56..68],
        &[12, 0, 7, 0, 0x18, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
    );
    assert_eq!(&b[76..84], &[8, 0, 9, 0, 255, 255, 255, 255], "default /32");
}

#[test]
fn new_service_fwmark() {
    let s = Service::new(ServiceKey::fwmark(AddressFamily::Inet6, 0x10), "rr");
    let r = Request::new_service(&s).unwrap();
    #[rustfmt::skip]
    let nest: [u8; 56] = [
        56, 0, 1, 0x80,
        6, 0, 1, 0,   10, 0, 0, 0,                 // AF_INET6
        8, 0, 5, 0,   0x10, 0, 0, 0,               // IPVS_SVC_ATTR_FWMARK (5), u32
        7, 0, 6, 0,   b'r', b'r', 0, 0,
        12, 0, 7, 0,  0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
        8, 0, 8, 0,   0, 0, 0, 0,
        8, 0, 9, 0,   128, 0, 0, 0,                // default /128
    ];
    assert_eq!(r.genl_payload(), payload(1, &[&nest]));
}

#[test]
fn dump_destinations() {
    let r = Request::dump_destinations(&tcp_key()).unwrap();
    assert!(r.is_dump());
    assert_eq!(r.genl_payload(), payload(8, &[&SVC_TCP_10_0_0_1_80]));
    let bytes = r.to_netlink_message(0x1c, 3);
    assert_eq!(&bytes[6..8], &[0x01, 0x03]);
}

#[test]
fn new_destination_masquerade() {
    let mut d = Destination::new(ip("10.0.0.2"), 8080, ForwardMethod::Masquerade);
    d.weight = 5;
    d.upper_threshold = 100;
    d.lower_threshold = 10;
    d.active_conns = 99; // read-only: never encoded
    let r = Request::new_destination(&tcp_key(), &d).unwrap();
    #[rustfmt::skip]
    let nest: [u8; 72] = [
        72, 0, 2, 0x80,                            // IPVS_CMD_ATTR_DEST (2) | NLA_F_NESTED
        20, 0, 1, 0,  10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // IPVS_DEST_ATTR_ADDR (1)
        6, 0, 2, 0,   0x1f, 0x90, 0, 0,            // IPVS_DEST_ATTR_PORT (2) = htons(8080)
        6, 0, 11, 0,  2, 0, 0, 0,                  // IPVS_DEST_ATTR_ADDR_FAMILY (11) = AF_INET
        8, 0, 3, 0,   0, 0, 0, 0,                  // IPVS_DEST_ATTR_FWD_METHOD (3) = MASQ (0)
        8, 0, 4, 0,   5, 0, 0, 0,                  // IPVS_DEST_ATTR_WEIGHT (4)
        8, 0, 5, 0,   100, 0, 0, 0,                // IPVS_DEST_ATTR_U_THRESH (5)
        8, 0, 6, 0,   10, 0, 0, 0,                 // IPVS_DEST_ATTR_L_THRESH (6)
    ];
    assert_eq!(r.genl_payload(), payload(5, &[&SVC_TCP_10_0_0_1_80, &nest]));
    let r = Request::set_destination(&tcp_key(), &d).unwrap();
    assert_eq!(r.genl_payload(), payload(6, &[&SVC_TCP_10_0_0_1_80, &nest]));
}

#[test]
fn forwarding_method_numbers() {
    let key = tcp_key();
    for (fwd, n) in [
        (ForwardMethod::Masquerade, 0u8),
        (ForwardMethod::Local, 1),
        (ForwardMethod::ipip(), 2),
        (ForwardMethod::DirectRoute, 3),
        (ForwardMethod::Bypass, 4),
    ] {
        let r = Request::new_destination(&key, &Destination::new(ip("10.0.0.2"), 80, fwd)).unwrap();
        let a = r.attributes();
        // Service nest (48), dest nest header (4), ADDR (20), PORT (8), ADDR_FAMILY (8).
        assert_eq!(&a[88..96], &[8, 0, 3, 0, n, 0, 0, 0], "{fwd:?}");
    }
}

#[test]
fn new_destination_gue_tunnel_mixed_family() {
    let d = Destination::new(
        ip("2001:db8::2"),
        80,
        ForwardMethod::Tunnel {
            kind: TunnelKind::Gue,
            port: 6080,
            flags: TunnelFlags::CSUM | TunnelFlags::REMCSUM,
        },
    );
    let r = Request::new_destination(&tcp_key(), &d).unwrap();
    #[rustfmt::skip]
    let nest: [u8; 96] = [
        96, 0, 2, 0x80,
        20, 0, 1, 0,  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        6, 0, 2, 0,   0, 80, 0, 0,
        6, 0, 11, 0,  10, 0, 0, 0,                 // AF_INET6 on an AF_INET service
        8, 0, 3, 0,   2, 0, 0, 0,                  // IP_VS_CONN_F_TUNNEL
        8, 0, 4, 0,   1, 0, 0, 0,                  // weight 1
        8, 0, 5, 0,   0, 0, 0, 0,
        8, 0, 6, 0,   0, 0, 0, 0,
        5, 0, 13, 0,  1, 0, 0, 0,                  // IPVS_DEST_ATTR_TUN_TYPE (13), u8 GUE (1)
        6, 0, 14, 0,  0x17, 0xc0, 0, 0,            // IPVS_DEST_ATTR_TUN_PORT (14) = htons(6080)
        6, 0, 15, 0,  3, 0, 0, 0,                  // IPVS_DEST_ATTR_TUN_FLAGS (15): CSUM | REMCSUM
    ];
    assert_eq!(r.genl_payload(), payload(5, &[&SVC_TCP_10_0_0_1_80, &nest]));
}

#[test]
fn gre_and_ipip_tunnel_types() {
    for (kind, n) in [(TunnelKind::Ipip, 0u8), (TunnelKind::Gre, 2)] {
        let d = Destination::new(
            ip("10.0.0.3"),
            80,
            ForwardMethod::Tunnel {
                kind,
                port: 0,
                flags: TunnelFlags::NO_CSUM,
            },
        );
        let r = Request::new_destination(&tcp_key(), &d).unwrap();
        let a = r.attributes();
        let n0 = a.len();
        assert_eq!(&a[n0 - 24..n0 - 16], &[5, 0, 13, 0, n, 0, 0, 0]);
        assert_eq!(
            &a[n0 - 16..],
            &[6, 0, 14, 0, 0, 0, 0, 0, 6, 0, 15, 0, 0, 0, 0, 0]
        );
    }
}

#[test]
fn del_destination() {
    let r = Request::del_destination(&tcp_key(), ip("10.0.0.2"), 8080).unwrap();
    #[rustfmt::skip]
    let nest: [u8; 40] = [
        40, 0, 2, 0x80,
        20, 0, 1, 0,  10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        6, 0, 2, 0,   0x1f, 0x90, 0, 0,
        6, 0, 11, 0,  2, 0, 0, 0,
    ];
    assert_eq!(r.genl_payload(), payload(7, &[&SVC_TCP_10_0_0_1_80, &nest]));
}

#[test]
fn timeouts() {
    assert_eq!(Request::get_timeouts().genl_payload(), [13, 1, 0, 0]);
    let t = Timeouts {
        tcp: Some(900),
        tcp_fin: Some(120),
        udp: Some(300),
    };
    #[rustfmt::skip]
    let want = payload(12, &[
        &[8, 0, 4, 0, 0x84, 0x03, 0, 0],           // IPVS_CMD_ATTR_TIMEOUT_TCP (4) = 900
        &[8, 0, 5, 0, 120, 0, 0, 0],               // IPVS_CMD_ATTR_TIMEOUT_TCP_FIN (5)
        &[8, 0, 6, 0, 0x2c, 0x01, 0, 0],           // IPVS_CMD_ATTR_TIMEOUT_UDP (6) = 300
    ]);
    assert_eq!(Request::set_timeouts(&t).unwrap().genl_payload(), want);
    let only_udp = Timeouts {
        udp: Some(60),
        ..Timeouts::default()
    };
    assert_eq!(
        Request::set_timeouts(&only_udp).unwrap().genl_payload(),
        payload(12, &[&[8, 0, 6, 0, 60, 0, 0, 0]])
    );
}

#[test]
fn resolve_family_request_layout() {
    let b = vipd_ipvs::resolve_family_request(1);
    #[rustfmt::skip]
    let want: [u8; 32] = [
        32, 0, 0, 0,  0x10, 0,  0x05, 0,  1, 0, 0, 0,  0, 0, 0, 0, // GENL_ID_CTRL, REQUEST|ACK
        3, 2, 0, 0,                                // CTRL_CMD_GETFAMILY, nlctrl version 2
        9, 0, 2, 0,  b'I', b'P', b'V', b'S', 0, 0, 0, 0, // CTRL_ATTR_FAMILY_NAME "IPVS\0"
    ];
    assert_eq!(b, want);
}

#[test]
fn argument_errors() {
    let long = Service::new(tcp_key(), "a_scheduler_name_");
    assert!(matches!(
        Request::new_service(&long),
        Err(vipd_ipvs::Error::InvalidArgument {
            what: "scheduler",
            ..
        })
    ));
    // 15 bytes is the limit (IP_VS_SCHEDNAME_MAXLEN 16 with the NUL).
    assert!(Request::new_service(&Service::new(tcp_key(), "abcdefghijklmno")).is_ok());
    assert!(Request::new_service(&Service::new(tcp_key(), "")).is_err());
    assert!(Request::new_service(&Service::new(tcp_key(), "r\0r")).is_err());
    let mut pe = Service::new(tcp_key(), "rr");
    pe.pe_name = Some("x".repeat(17));
    assert!(Request::new_service(&pe).is_err());
    let mut wrong_mask = Service::new(tcp_key(), "rr");
    wrong_mask.netmask = Netmask::V6Prefix(64);
    assert!(Request::new_service(&wrong_mask).is_err());
    let mut v6 = Service::new(ServiceKey::tcp(ip("::1"), 1), "rr");
    v6.netmask = Netmask::V6Prefix(0);
    assert!(Request::new_service(&v6).is_err());
    v6.netmask = Netmask::V6Prefix(129);
    assert!(Request::new_service(&v6).is_err());
    assert!(Request::get_service(&ServiceKey::fwmark(AddressFamily::Inet, 0)).is_err());
    let mut heavy = Destination::new(ip("10.0.0.2"), 1, ForwardMethod::DirectRoute);
    heavy.weight = u32::MAX;
    assert!(Request::new_destination(&tcp_key(), &heavy).is_err());
    // Checks the kernel would answer with a bare EINVAL.
    let v6_masq = Destination::new(ip("fd00::2"), 1, ForwardMethod::Masquerade);
    assert!(Request::new_destination(&tcp_key(), &v6_masq).is_err());
    assert!(Request::set_destination(&tcp_key(), &v6_masq).is_err());
    let gue0 = Destination::new(
        ip("10.0.0.2"),
        1,
        ForwardMethod::Tunnel {
            kind: TunnelKind::Gue,
            port: 0,
            flags: TunnelFlags::NO_CSUM,
        },
    );
    assert!(Request::new_destination(&tcp_key(), &gue0).is_err());
    // Deleting needs no forwarding method, so any family goes.
    assert!(Request::del_destination(&tcp_key(), ip("fd00::2"), 1).is_ok());
    let huge = Timeouts {
        tcp: Some(u32::MAX),
        ..Timeouts::default()
    };
    assert!(Request::set_timeouts(&huge).is_err());
    let other = ServiceKey::Addr {
        addr: ip("10.0.0.1"),
        protocol: Protocol::Other(50),
        port: 0,
    };
    assert!(Request::get_service(&other).is_ok());
}
