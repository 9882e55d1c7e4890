//! The XDP data plane's health records ([`decode_record`]).

use vipd::plane::xdp::{decode_record, RecordError};
use vipd_common::xdp::XdpHealthEvent;

pub fn run(data: &[u8]) {
    match decode_record(data) {
        Err(RecordError::Size(n)) => {
            assert_eq!(n, data.len());
            assert_ne!(n, XdpHealthEvent::SIZE);
        }
        Err(e) => {
            assert_eq!(data.len(), XdpHealthEvent::SIZE);
            assert!(!e.to_string().is_empty());
        }
        Ok(report) => {
            assert_eq!(data.len(), XdpHealthEvent::SIZE);
            let client = report.client.expect("a health record names its client");
            let backend = report.backend.expect("a health record names its backend");
            let family = report.vip.is_ipv4();
            assert!(client.is_ipv4() == family && backend.is_ipv4() == family);
            assert_eq!(report.syn_ns, report.ts_ns);
        }
    }
}
