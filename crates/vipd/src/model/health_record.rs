//! The health records of the balancing planes' programs (XDP, socket;
//! [`vipd_common::health::HealthEvent`]) as reports: the same currency as the connection
//! watcher's, so counters, metrics, fault-to-quarantine timing and health see no
//! difference.

use vipd_common::{
    health::{HealthEvent, HealthKind},
    AF_INET6,
};

use super::{
    kernel::{socket_addr, UnknownFamily},
    IcmpCode, Outcome, Report,
};

/// A health record of the wrong size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("health record of {0} bytes, expected {size}", size = HealthEvent::SIZE)]
pub struct BadRecord(pub usize);

/// A health record from the bytes of one ring buffer item.
pub fn health_event(item: &[u8]) -> Result<HealthEvent, BadRecord> {
    if item.len() != HealthEvent::SIZE {
        return Err(BadRecord(item.len()));
    }
    // SAFETY: the length matches and HealthEvent is plain integers (any bytes are a
    // valid value); read_unaligned copes with the ring buffer's alignment.
    Ok(unsafe { std::ptr::read_unaligned(item.as_ptr() as *const HealthEvent) })
}

/// The bytes of one health ring buffer item as a report.
pub fn decode_record(item: &[u8]) -> Result<Report, RecordError> {
    let ev = health_event(item).map_err(|BadRecord(size)| RecordError::Size(size))?;
    report_of(&ev)
}

/// A health record as a report.
pub fn report_of(ev: &HealthEvent) -> Result<Report, RecordError> {
    let outcome = match HealthKind::from_u8(ev.kind).ok_or(RecordError::Kind(ev.kind))? {
        HealthKind::Refused => Outcome::Refused,
        HealthKind::SynRetransmit => Outcome::SynRetransmit(1),
        HealthKind::Established => Outcome::Established { latency: None },
        // The SYN itself, retransmitted 0 times: the start of a handshake deadline
        // (XDP), not an outcome.
        HealthKind::SynSent => Outcome::SynRetransmit(0),
        HealthKind::Unreachable => Outcome::Unreachable(IcmpCode {
            v6: u16::from(ev.family) == AF_INET6,
            icmp_type: ev.icmp_type,
            code: ev.icmp_code,
        }),
    };
    let addr = |a: &[u8; 16], port| socket_addr(ev.family, a, port);
    let (mut client, mut vip, mut backend) = (
        addr(&ev.client, ev.cport)?,
        addr(&ev.vip, ev.vport)?,
        addr(&ev.backend, ev.bport)?,
    );
    // A dual-stack socket's connection to an IPv4 VIP (`::ffff:a.b.c.d`) is an IPv4
    // connection: all three addresses are IPv4-mapped, or the record is not one.
    if vip.ip().to_canonical().is_ipv4() {
        for a in [&mut client, &mut vip, &mut backend] {
            let ip = a.ip().to_canonical();
            if !ip.is_ipv4() {
                return Err(RecordError::MixedFamilies);
            }
            a.set_ip(ip);
        }
    } else if client.ip().to_canonical().is_ipv4() || backend.ip().to_canonical().is_ipv4() {
        return Err(RecordError::MixedFamilies);
    }
    Ok(Report {
        ts_ns: ev.ts_ns,
        client: Some(client),
        vip,
        backend: Some(backend),
        outcome,
        // The programs know when they saw the repeated SYN, not the first one: a
        // blackhole's fault time is the repeat.
        syn_ns: ev.ts_ns,
        protocol: ev.protocol,
        fwmark: None,
    })
}

/// Takes up to `max` records from `next` (a ring buffer's, non-blocking), adding the
/// reports they make to `out`; an unusable record is counted in `decode_errors` and
/// logged at every power of two. Returns how many records it took.
pub fn take_reports(
    mut next: impl FnMut() -> Option<Result<HealthEvent, BadRecord>>,
    max: usize,
    out: &mut Vec<Report>,
    decode_errors: &mut u64,
    plane: &'static str,
) -> usize {
    let mut n = 0;
    while n < max {
        let report = match next() {
            Some(Ok(ev)) => report_of(&ev),
            Some(Err(BadRecord(size))) => Err(RecordError::Size(size)),
            None => break,
        };
        match report {
            Ok(r) => out.push(r),
            Err(e) => {
                *decode_errors += 1;
                if decode_errors.is_power_of_two() {
                    tracing::warn!(
                        error = %e,
                        decode_failures = *decode_errors,
                        dataplane = plane,
                        "unusable health record"
                    );
                }
            }
        }
        n += 1;
    }
    n
}

/// A queued record that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("health record of {0} bytes (expected {size})", size = HealthEvent::SIZE)]
    Size(usize),
    #[error("health record of unknown kind {0}")]
    Kind(u8),
    #[error("health record: {0}")]
    Family(#[from] UnknownFamily),
    #[error("health record mixes IPv4-mapped and IPv6 addresses")]
    MixedFamilies,
}

#[cfg(test)]
mod tests {
    use vipd_common::AF_INET;

    use super::*;

    #[test]
    fn a_dual_stack_sockets_ipv4_peer_is_reported_as_ipv4() {
        let mut ev = HealthEvent {
            kind: HealthKind::Established as u8,
            family: AF_INET6 as u8,
            protocol: 6,
            cport: 40000,
            vport: 80,
            bport: 8080,
            ..Default::default()
        };
        for a in [&mut ev.client, &mut ev.vip, &mut ev.backend] {
            a[10] = 0xff;
            a[11] = 0xff;
            a[12] = 198;
            a[13] = 18;
        }
        ev.backend[15] = 11;
        let r = report_of(&ev).unwrap();
        assert_eq!(r.vip, "198.18.0.0:80".parse().unwrap());
        assert_eq!(r.backend, Some("198.18.0.11:8080".parse().unwrap()));
        assert_eq!(r.client, Some("198.18.0.0:40000".parse().unwrap()));
        // One IPv4-mapped address among IPv6 ones, or the other way round: not a record
        // any program writes.
        let mut mixed = ev;
        mixed.client = [0xfd; 16];
        assert!(matches!(report_of(&mixed), Err(RecordError::MixedFamilies)));
        let mut mixed = ev;
        mixed.vip = [0xfd; 16];
        mixed.client = [0xfd; 16];
        assert!(matches!(report_of(&mixed), Err(RecordError::MixedFamilies)));
    }

    #[test]
    fn records_become_reports() {
        let mut ev = HealthEvent {
            ts_ns: 42,
            kind: HealthKind::Unreachable as u8,
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
        v4.kind = HealthKind::Refused as u8;
        v4.vip = [0; 16];
        v4.vip[..4].copy_from_slice(&[198, 18, 100, 1]);
        let r = report_of(&v4).unwrap();
        assert_eq!(r.vip, "198.18.100.1:53".parse().unwrap());
        assert_eq!(r.outcome, Outcome::Refused);
        v4.kind = 99;
        assert!(matches!(report_of(&v4), Err(RecordError::Kind(99))));
        v4.kind = HealthKind::Refused as u8;
        v4.family = 7;
        let e = report_of(&v4).unwrap_err();
        assert_eq!(e.to_string(), "health record: unknown address family 7");
    }
}
