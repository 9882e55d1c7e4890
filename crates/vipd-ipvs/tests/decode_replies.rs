//! Decoding replies shaped like the kernel's (`ip_vs_genl_fill_service`,
//! `ip_vs_genl_fill_dest`, `ip_vs_genl_fill_stats{,64}`, `ip_vs_genl_get_cmd`), and
//! encode/decode round trips.

mod common;
use common::*;

use std::net::{IpAddr, Ipv4Addr};

use vipd_ipvs::attrs::*;
use vipd_ipvs::{
    decode_ipvs_message, decode_reply, AddressFamily, Destination, Error, ForwardMethod, Netmask,
    Protocol, Reply, Request, Service, ServiceFlags, ServiceKey, Stats, TunnelFlags, TunnelKind,
};

const FAMILY: u16 = 0x1c;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn stats_of(v: [u64; 10]) -> Stats {
    Stats {
        conns: v[0],
        inpkts: v[1],
        outpkts: v[2],
        inbytes: v[3],
        outbytes: v[4],
        cps: v[5],
        inpps: v[6],
        outpps: v[7],
        inbps: v[8],
        outbps: v[9],
    }
}

const S32: [u64; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const S64: [u64; 10] = [
    1 << 33,
    2 << 33,
    3 << 33,
    4 << 33,
    5 << 33,
    6,
    7,
    8,
    9,
    u64::MAX,
];

/// A service dump as the kernel sends it: NLM_F_MULTI messages, then NLMSG_DONE.
fn service_dump(seq: u32) -> Vec<u8> {
    let svc1 = kernel_service_addr(
        AF_INET,
        6,
        ip("192.0.2.10"),
        443,
        "wrr",
        Some("sip"),
        IP_VS_SVC_F_PERSISTENT | IP_VS_SVC_F_HASHED,
        300,
        [255, 255, 255, 0],
        Some((S32, S64)),
    );
    let svc2 = nest(
        IPVS_CMD_ATTR_SERVICE,
        &[
            a_u16(IPVS_SVC_ATTR_AF, AF_INET6),
            a_u32(IPVS_SVC_ATTR_FWMARK, 7),
            a_str(IPVS_SVC_ATTR_SCHED_NAME, "none"),
            nla(IPVS_SVC_ATTR_FLAGS, &[[0x2u8, 0, 0, 0], [0xff; 4]].concat()),
            a_u32(IPVS_SVC_ATTR_TIMEOUT, 0),
            nla(IPVS_SVC_ATTR_NETMASK, &128u32.to_ne_bytes()),
            stats32(IPVS_SVC_ATTR_STATS, S32),
            // An attribute from a future kernel.
            a_u32(60, 1),
        ],
    );
    [
        nlmsg(FAMILY, NLM_F_MULTI, seq, &genl(IPVS_CMD_NEW_SERVICE, &svc1)),
        nlmsg(FAMILY, NLM_F_MULTI, seq, &genl(IPVS_CMD_NEW_SERVICE, &svc2)),
        done(seq, 0),
    ]
    .concat()
}

#[test]
fn service_dump_decodes() {
    let msgs = decode_reply(&service_dump(5)).unwrap();
    assert_eq!(msgs.len(), 3);
    assert!(msgs.iter().all(|m| m.header.seq == 5));
    assert_eq!(msgs[0].header.message_type, FAMILY);
    assert_eq!(msgs[0].header.flags, NLM_F_MULTI);
    let Reply::Service(s1) = &msgs[0].reply else {
        panic!("{:?}", msgs[0])
    };
    assert_eq!(s1.key, ServiceKey::tcp(ip("192.0.2.10"), 443));
    assert_eq!(s1.scheduler, "wrr");
    assert_eq!(s1.pe_name.as_deref(), Some("sip"));
    assert!(s1.flags.contains(ServiceFlags::PERSISTENT));
    assert!(s1.flags.contains(ServiceFlags::HASHED));
    assert_eq!(s1.timeout, 300);
    assert_eq!(s1.netmask, Netmask::V4(Ipv4Addr::new(255, 255, 255, 0)));
    // STATS64 wins over STATS.
    assert_eq!(s1.stats, Some(stats_of(S64)));

    let Reply::Service(s2) = &msgs[1].reply else {
        panic!("{:?}", msgs[1])
    };
    assert_eq!(s2.key, ServiceKey::fwmark(AddressFamily::Inet6, 7));
    assert_eq!(s2.scheduler, "none");
    assert_eq!(s2.netmask, Netmask::V6Prefix(128));
    assert_eq!(s2.pe_name, None);
    // Only the 32-bit nest (older kernels): still decoded, widened.
    assert_eq!(s2.stats, Some(stats_of(S32)));

    assert_eq!(msgs[2].reply, Reply::Done { code: 0 });
}

#[test]
fn destination_dump_decodes() {
    let d1 = kernel_dest(
        ip("10.0.0.2"),
        8080,
        IP_VS_CONN_F_MASQ,
        5,
        (0, 0, 0),
        (100, 10),
        (3, 4, 5),
        Some(AF_INET),
        Some(S64),
    );
    let d2 = kernel_dest(
        ip("2001:db8::2"),
        80,
        IP_VS_CONN_F_TUNNEL,
        1,
        (
            IP_VS_CONN_F_TUNNEL_TYPE_GUE,
            6080,
            IP_VS_TUNNEL_ENCAP_FLAG_CSUM | IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM,
        ),
        (0, 0),
        (0, 0, 0),
        Some(AF_INET6),
        None,
    );
    let d3 = kernel_dest(
        ip("10.0.0.4"),
        80,
        IP_VS_CONN_F_DROUTE,
        0,
        (0, 0, 0),
        (0, 0),
        (0, 0, 0),
        Some(AF_INET),
        None,
    );
    let datagram = [
        nlmsg(FAMILY, NLM_F_MULTI, 9, &genl(IPVS_CMD_NEW_DEST, &d1)),
        nlmsg(FAMILY, NLM_F_MULTI, 9, &genl(IPVS_CMD_NEW_DEST, &d2)),
        nlmsg(FAMILY, NLM_F_MULTI, 9, &genl(IPVS_CMD_NEW_DEST, &d3)),
        done(9, 0),
    ]
    .concat();
    let msgs = decode_reply(&datagram).unwrap();
    let dests: Vec<&Destination> = msgs
        .iter()
        .filter_map(|m| match &m.reply {
            Reply::Destination(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dests.len(), 3);
    assert_eq!(dests[0].addr, ip("10.0.0.2"));
    assert_eq!(dests[0].port, 8080);
    assert_eq!(dests[0].forward, ForwardMethod::Masquerade);
    assert_eq!(dests[0].weight, 5);
    assert_eq!(
        (dests[0].upper_threshold, dests[0].lower_threshold),
        (100, 10)
    );
    assert_eq!(
        (
            dests[0].active_conns,
            dests[0].inactive_conns,
            dests[0].persistent_conns
        ),
        (3, 4, 5)
    );
    assert_eq!(dests[0].stats, Some(stats_of(S64)));
    assert_eq!(dests[1].family(), AddressFamily::Inet6);
    assert_eq!(
        dests[1].forward,
        ForwardMethod::Tunnel {
            kind: TunnelKind::Gue,
            port: 6080,
            flags: TunnelFlags::CSUM | TunnelFlags::REMCSUM
        }
    );
    assert_eq!(dests[1].stats, None);
    assert_eq!(dests[2].forward, ForwardMethod::DirectRoute);
    assert_eq!(dests[2].weight, 0);
}

#[test]
fn destination_without_family_needs_a_fallback() {
    let d = kernel_dest(
        ip("10.0.0.2"),
        80,
        IP_VS_CONN_F_LOCALNODE,
        1,
        (0, 0, 0),
        (0, 0),
        (0, 0, 0),
        None,
        None,
    );
    assert!(matches!(
        decode_ipvs_message(IPVS_CMD_NEW_DEST, &d, None),
        Err(Error::MissingAttribute {
            attr: "IPVS_DEST_ATTR_ADDR_FAMILY"
        })
    ));
    let Reply::Destination(dest) =
        decode_ipvs_message(IPVS_CMD_NEW_DEST, &d, Some(AddressFamily::Inet)).unwrap()
    else {
        panic!()
    };
    assert_eq!(dest.forward, ForwardMethod::Local);
}

#[test]
fn info_reply_then_ack() {
    let datagram = [
        nlmsg(
            FAMILY,
            0,
            3,
            &genl(
                IPVS_CMD_SET_INFO,
                &[
                    a_u32(IPVS_INFO_ATTR_VERSION, 0x010201),
                    a_u32(IPVS_INFO_ATTR_CONN_TAB_SIZE, 4096),
                ]
                .concat(),
            ),
        ),
        ack(3),
    ]
    .concat();
    let msgs = decode_reply(&datagram).unwrap();
    let Reply::Info(info) = &msgs[0].reply else {
        panic!()
    };
    assert_eq!(info.version, 0x010201);
    assert_eq!(info.conn_table_size, 4096);
    assert_eq!(msgs[1].reply, Reply::Ack);
    assert_eq!(msgs[1].header.seq, 3);
}

#[test]
fn config_reply_with_missing_protocols() {
    // A kernel without CONFIG_IP_VS_PROTO_TCP sends only the UDP timeout.
    let datagram = nlmsg(
        FAMILY,
        0,
        1,
        &genl(IPVS_CMD_SET_CONFIG, &a_u32(IPVS_CMD_ATTR_TIMEOUT_UDP, 300)),
    );
    let msgs = decode_reply(&datagram).unwrap();
    let Reply::Timeouts(t) = msgs[0].reply else {
        panic!()
    };
    assert_eq!((t.tcp, t.tcp_fin, t.udp), (None, None, Some(300)));
}

#[test]
fn errors_and_done_codes() {
    let tlv = a_str(1, "bad attribute");
    let datagram = [
        nlmsgerr(4, -libc::EEXIST, NLM_F_CAPPED | NLM_F_ACK_TLVS, &tlv),
        nlmsgerr(5, -libc::ESRCH, NLM_F_CAPPED, &[]),
        done(6, -libc::EINVAL),
        nlmsg(NLMSG_DONE, NLM_F_MULTI, 7, &[]),
        nlmsg(NLMSG_NOOP, 0, 8, &[]),
    ]
    .concat();
    let msgs = decode_reply(&datagram).unwrap();
    assert_eq!(
        msgs[0].reply,
        Reply::Error {
            errno: libc::EEXIST,
            message: Some("bad attribute".into())
        }
    );
    assert_eq!(
        msgs[1].reply,
        Reply::Error {
            errno: libc::ESRCH,
            message: None
        }
    );
    assert_eq!(
        msgs[2].reply,
        Reply::Done {
            code: -libc::EINVAL
        }
    );
    assert_eq!(msgs[3].reply, Reply::Done { code: 0 });
    assert_eq!(msgs[4].reply, Reply::Noop);
}

#[test]
fn uncapped_error_with_extack_after_the_echoed_request() {
    // Without NETLINK_CAP_ACK the whole request is echoed before the TLVs.
    let request = Request::get_info().to_netlink_message(FAMILY, 11);
    let mut payload = (-libc::EPERM).to_ne_bytes().to_vec();
    payload.extend_from_slice(&request);
    payload.extend_from_slice(&a_str(1, "denied"));
    let datagram = nlmsg(NLMSG_ERROR, NLM_F_ACK_TLVS, 11, &payload);
    let msgs = decode_reply(&datagram).unwrap();
    assert_eq!(
        msgs[0].reply,
        Reply::Error {
            errno: libc::EPERM,
            message: Some("denied".into())
        }
    );
}

#[test]
fn typed_errors_for_broken_replies() {
    // Missing scheduler.
    let svc = nest(
        IPVS_CMD_ATTR_SERVICE,
        &[
            a_u16(1, AF_INET),
            a_u32(5, 1),
            nla(7, &[0; 8]),
            a_u32(8, 0),
            nla(9, &[0; 4]),
        ],
    );
    assert!(matches!(
        decode_ipvs_message(IPVS_CMD_NEW_SERVICE, &svc, None),
        Err(Error::MissingAttribute {
            attr: "IPVS_SVC_ATTR_SCHED_NAME"
        })
    ));
    // Bad address family.
    let svc = nest(IPVS_CMD_ATTR_SERVICE, &[a_u16(1, 7)]);
    assert!(matches!(
        decode_ipvs_message(IPVS_CMD_NEW_SERVICE, &svc, None),
        Err(Error::MissingAttribute { .. }) | Err(Error::InvalidValue { .. })
    ));
    // Port of the wrong width.
    let svc = nest(IPVS_CMD_ATTR_SERVICE, &[a_u32(IPVS_SVC_ATTR_PORT, 80)]);
    assert!(matches!(
        decode_ipvs_message(IPVS_CMD_NEW_SERVICE, &svc, None),
        Err(Error::InvalidLength {
            what: "IPVS_SVC_ATTR_PORT",
            len: 4
        })
    ));
    // Unknown forwarding method and tunnel type.
    let d = kernel_dest(
        ip("10.0.0.1"),
        1,
        5,
        1,
        (0, 0, 0),
        (0, 0),
        (0, 0, 0),
        Some(AF_INET),
        None,
    );
    assert!(matches!(
        decode_ipvs_message(IPVS_CMD_NEW_DEST, &d, None),
        Err(Error::InvalidValue {
            what: "IPVS_DEST_ATTR_FWD_METHOD",
            value: 5
        })
    ));
    let d = kernel_dest(
        ip("10.0.0.1"),
        1,
        IP_VS_CONN_F_TUNNEL,
        1,
        (9, 0, 0),
        (0, 0),
        (0, 0, 0),
        Some(AF_INET),
        None,
    );
    assert!(matches!(
        decode_ipvs_message(IPVS_CMD_NEW_DEST, &d, None),
        Err(Error::InvalidValue {
            what: "IPVS_DEST_ATTR_TUN_TYPE",
            ..
        })
    ));
    // A request command in a reply.
    assert!(matches!(
        decode_ipvs_message(IPVS_CMD_FLUSH, &[], None),
        Err(Error::UnexpectedCommand { cmd: 17 })
    ));
    // Netlink framing.
    assert!(matches!(
        decode_reply(&[0; 10]),
        Err(Error::Truncated {
            what: "nlmsghdr",
            ..
        })
    ));
    let mut short = ack(1);
    short[0] = 200;
    assert!(matches!(
        decode_reply(&short),
        Err(Error::Truncated {
            what: "netlink message",
            need: 200,
            ..
        })
    ));
    short[0] = 8;
    assert!(matches!(
        decode_reply(&short),
        Err(Error::InvalidLength {
            what: "nlmsg_len",
            len: 8
        })
    ));
    assert!(matches!(
        decode_reply(&nlmsg(5, 0, 1, &[])),
        Err(Error::UnexpectedMessageType { message_type: 5 })
    ));
    assert!(matches!(
        decode_reply(&nlmsg(FAMILY, 0, 1, &[1, 1])),
        Err(Error::Truncated {
            what: "genlmsghdr",
            ..
        })
    ));
    // IPv6 prefix length out of range.
    let svc = nest(
        IPVS_CMD_ATTR_SERVICE,
        &[
            a_u16(1, AF_INET6),
            a_u32(5, 1),
            a_str(6, "rr"),
            nla(7, &[0; 8]),
            a_u32(8, 0),
            nla(9, &300u32.to_ne_bytes()),
        ],
    );
    assert!(matches!(
        decode_ipvs_message(IPVS_CMD_NEW_SERVICE, &svc, None),
        Err(Error::InvalidValue { value: 300, .. })
    ));
}

#[test]
fn service_round_trips_through_the_request_encoding() {
    // NEW_SERVICE requests and GET_SERVICE replies share their layout.
    let keys = [
        ServiceKey::tcp(ip("10.1.2.3"), 80),
        ServiceKey::udp(ip("2001:db8::53"), 53),
        ServiceKey::sctp(ip("192.0.2.1"), 3868),
        ServiceKey::fwmark(AddressFamily::Inet, 42),
        ServiceKey::fwmark(AddressFamily::Inet6, u32::MAX),
        ServiceKey::Addr {
            addr: ip("10.0.0.1"),
            protocol: Protocol::Other(50),
            port: 0,
        },
    ];
    for key in keys {
        let mut s = Service::new(key, "mh");
        s.flags = ServiceFlags::PERSISTENT | ServiceFlags::MH_PORT | ServiceFlags::from_bits(0x400);
        s.timeout = 3600;
        if key.family() == AddressFamily::Inet {
            s.netmask = Netmask::V4(Ipv4Addr::new(255, 255, 0, 0));
        } else {
            s.netmask = Netmask::V6Prefix(48);
        }
        s.pe_name = Some("sip".into());
        let r = Request::new_service(&s).unwrap();
        let got = decode_ipvs_message(IPVS_CMD_NEW_SERVICE, r.attributes(), None).unwrap();
        assert_eq!(got, Reply::Service(s.clone()), "{key}");
    }
}

#[test]
fn destination_round_trips_through_the_request_encoding() {
    let forwards = [
        ForwardMethod::Masquerade,
        ForwardMethod::Local,
        ForwardMethod::DirectRoute,
        ForwardMethod::Bypass,
        ForwardMethod::ipip(),
        ForwardMethod::Tunnel {
            kind: TunnelKind::Gre,
            port: 0,
            flags: TunnelFlags::CSUM,
        },
        ForwardMethod::Tunnel {
            kind: TunnelKind::Gue,
            port: 5555,
            flags: TunnelFlags::REMCSUM,
        },
    ];
    for (i, fwd) in forwards.into_iter().enumerate() {
        for addr in [ip("10.0.0.9"), ip("fd00::9")] {
            let key = ServiceKey::tcp(
                if addr.is_ipv4() {
                    ip("10.0.0.1")
                } else {
                    ip("fd00::1")
                },
                80,
            );
            let mut d = Destination::new(addr, 8000 + i as u16, fwd);
            d.weight = i32::MAX as u32;
            d.upper_threshold = 1000;
            d.lower_threshold = 500;
            let r = Request::new_destination(&key, &d).unwrap();
            let got = decode_ipvs_message(IPVS_CMD_NEW_DEST, r.attributes(), None).unwrap();
            assert_eq!(got, Reply::Destination(d), "{fwd:?} {addr}");
        }
    }
}

#[test]
fn stats_nests_decode_directly() {
    let raw = stats64(IPVS_SVC_ATTR_STATS64, S64);
    // Skip the nest header.
    assert_eq!(Stats::decode_attrs(&raw[4..]).unwrap(), stats_of(S64));
    let raw = stats32(IPVS_SVC_ATTR_STATS, S32);
    assert_eq!(Stats::decode_attrs(&raw[4..]).unwrap(), stats_of(S32));
    assert!(matches!(
        Stats::decode_attrs(&nla(1, &[1, 2, 3])),
        Err(Error::InvalidLength { .. })
    ));
}

#[test]
fn nested_flag_on_reply_nests_is_accepted() {
    // Newer code paths may set NLA_F_NESTED; decoding masks it off.
    let mut svc = kernel_service_addr(
        AF_INET,
        17,
        ip("10.0.0.1"),
        53,
        "rr",
        None,
        0,
        0,
        [255; 4],
        None,
    );
    svc[3] |= 0x80;
    let got = decode_ipvs_message(IPVS_CMD_NEW_SERVICE, &svc, None).unwrap();
    assert!(matches!(got, Reply::Service(s) if s.key == ServiceKey::udp(ip("10.0.0.1"), 53)));
}
