//! Decoding rtnetlink replies: one undecodable message in a dump is skipped and counted.

use netlink_packet_core::{DoneMessage, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{link::LinkMessage, RouteNetlinkMessage};

use super::{parse_datagram, Parsed};

const SEQ: u32 = 7;

fn bytes(payload: NetlinkPayload<RouteNetlinkMessage>, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, payload);
    m.finalize();
    let mut b = vec![0u8; m.buffer_len()];
    m.serialize(&mut b);
    b
}

fn link(index: u32) -> Vec<u8> {
    let mut l = LinkMessage::default();
    l.header.index = index;
    bytes(
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)),
        SEQ,
    )
}

/// A RTM_NEWLINK whose only attribute claims to be longer than the message.
fn broken_link() -> Vec<u8> {
    let mut b = link(2);
    b.extend_from_slice(&[0xff, 0x00, 3, 0]); // nla_len 255, IFLA_IFNAME
    let len = b.len() as u32;
    b[..4].copy_from_slice(&len.to_ne_bytes());
    b
}

fn done() -> Vec<u8> {
    bytes(NetlinkPayload::Done(DoneMessage::default()), SEQ)
}

#[test]
fn an_undecodable_message_is_skipped_and_counted_not_fatal() {
    let mut buf = link(1);
    buf.extend(broken_link());
    buf.extend(link(3));
    let mut out = Vec::new();
    let parsed = parse_datagram(&buf, SEQ, "dumping links", &mut out).unwrap();
    assert_eq!(
        parsed,
        Parsed {
            done: false,
            skipped: 1
        }
    );
    let indexes: Vec<u32> = out
        .iter()
        .map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => l.header.index,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(indexes, [1, 3]);
    // The end of the dump ends it; other requests' messages are not ours.
    let mut buf = bytes(
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(LinkMessage::default())),
        SEQ + 1,
    );
    buf.extend(done());
    let parsed = parse_datagram(&buf, SEQ, "dumping links", &mut out).unwrap();
    assert!(parsed.done);
    assert_eq!(out.len(), 2);
}

#[test]
fn a_malformed_header_is_an_error_that_names_the_request() {
    let mut out = Vec::new();
    let e = parse_datagram(&[1, 0, 0, 0, 0, 0], SEQ, "dumping routes", &mut out).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("dumping routes") && e.contains("malformed netlink header"),
        "{e}"
    );
}
