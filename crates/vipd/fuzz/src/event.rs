//! The connection watcher's ring buffer records ([`Event::decode`]).

use vipd::watcher::{DecodeError, Event};
use vipd_common::ConnEvent;

pub fn run(data: &[u8]) {
    let decoded = Event::decode(data);
    assert_eq!(decoded, Event::decode(data), "decoding is deterministic");
    match decoded {
        Err(DecodeError::Length(n)) => {
            assert_eq!(n, data.len());
            assert_ne!(n, ConnEvent::SIZE);
        }
        Err(_) => assert_eq!(data.len(), ConnEvent::SIZE),
        Ok(event) => {
            assert_eq!(data.len(), ConnEvent::SIZE);
            // Both ends of a connection come from the record's one family.
            let ends = match event {
                Event::StateChange { src, dst, .. }
                | Event::Connect { src, dst, .. }
                | Event::Retransmit { src, dst, .. }
                | Event::ReceiveReset { src, dst, .. } => (src, dst),
                Event::IpvsConn { client, vip, .. } | Event::IcmpError { client, vip, .. } => {
                    (client, vip)
                }
            };
            assert_eq!(ends.0.is_ipv4(), ends.1.is_ipv4(), "{event:?}");
        }
    }
}
