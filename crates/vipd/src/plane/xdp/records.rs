//! The XDP program's health records as reports: the same currency as the connection
//! watcher's, so counters, metrics, fault-to-quarantine timing and health see no
//! difference.

use vipd_common::{
    xdp::{XdpHealthEvent, XdpHealthKind},
    AF_INET6,
};

use crate::{
    model::{
        kernel::{socket_addr, UnknownFamily},
        IcmpCode, Outcome, Report,
    },
    xdp::maps::{health_event, BadRecord},
};

/// The bytes of one health ring buffer item as a report.
pub fn decode_record(item: &[u8]) -> Result<Report, RecordError> {
    let ev = health_event(item).map_err(|BadRecord(size)| RecordError::Size(size))?;
    report_of(&ev)
}

/// A health record as a report.
pub fn report_of(ev: &XdpHealthEvent) -> Result<Report, RecordError> {
    let outcome = match XdpHealthKind::from_u8(ev.kind).ok_or(RecordError::Kind(ev.kind))? {
        XdpHealthKind::Refused => Outcome::Refused,
        XdpHealthKind::SynRetransmit => Outcome::SynRetransmit(1),
        XdpHealthKind::Established => Outcome::Established { latency: None },
        // The SYN itself, retransmitted 0 times: the start of a handshake deadline,
        // not an outcome (see `deadlines`).
        XdpHealthKind::SynSent => Outcome::SynRetransmit(0),
        XdpHealthKind::Unreachable => Outcome::Unreachable(IcmpCode {
            v6: u16::from(ev.family) == AF_INET6,
            icmp_type: ev.icmp_type,
            code: ev.icmp_code,
        }),
    };
    let addr = |a: &[u8; 16], port| socket_addr(ev.family, a, port);
    Ok(Report {
        ts_ns: ev.ts_ns,
        client: Some(addr(&ev.client, ev.cport)?),
        vip: addr(&ev.vip, ev.vport)?,
        backend: Some(addr(&ev.backend, ev.bport)?),
        outcome,
        // The program knows when it saw the repeated SYN, not the first one: a
        // blackhole's fault time is the repeat.
        syn_ns: ev.ts_ns,
        protocol: ev.protocol,
        fwmark: None,
    })
}

/// A queued record that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("health record of {0} bytes (expected {size})", size = XdpHealthEvent::SIZE)]
    Size(usize),
    #[error("health record of unknown kind {0}")]
    Kind(u8),
    #[error("health record: {0}")]
    Family(#[from] UnknownFamily),
}

#[cfg(test)]
mod tests {
    use vipd_common::AF_INET;

    use super::*;

    #[test]
    fn records_become_reports() {
        let mut ev = XdpHealthEvent {
            ts_ns: 42,
            kind: XdpHealthKind::Unreachable as u8,
            family: AF_INET6 as u8,
            protocol: 17,
            icmp_type: 1,
            icmp_code: 4,
            cport: 40000,
            vport: 53,
            bport: 5353,
            ..Default::default()
        };
        ev.client[15] = 1;
        ev.vip[15] = 2;
        ev.backend[15] = 3;
        let r = report_of(&ev).unwrap();
        assert_eq!(r.client, Some("[::1]:40000".parse().unwrap()));
        assert_eq!(r.vip, "[::2]:53".parse().unwrap());
        assert_eq!(r.backend, Some("[::3]:5353".parse().unwrap()));
        assert_eq!(r.protocol, 17);
        assert_eq!(r.ts_ns, 42);
        assert!(matches!(
            r.outcome,
            Outcome::Unreachable(IcmpCode {
                v6: true,
                icmp_type: 1,
                code: 4
            })
        ));
        let mut v4 = ev;
        v4.family = AF_INET as u8;
        v4.kind = XdpHealthKind::Refused as u8;
        v4.vip = [0; 16];
        v4.vip[..4].copy_from_slice(&[198, 18, 100, 1]);
        let r = report_of(&v4).unwrap();
        assert_eq!(r.vip, "198.18.100.1:53".parse().unwrap());
        assert_eq!(r.outcome, Outcome::Refused);
        v4.kind = 99;
        assert!(matches!(report_of(&v4), Err(RecordError::Kind(99))));
        v4.kind = XdpHealthKind::Refused as u8;
        v4.family = 7;
        let e = report_of(&v4).unwrap_err();
        assert_eq!(e.to_string(), "health record: unknown address family 7");
    }
}
