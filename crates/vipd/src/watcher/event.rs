//! Decoding the raw records of the `EVENTS` ring buffer into typed events.

use std::net::SocketAddr;

use vipd_common::{ConnEvent, EventKind, AF_INET6};

use crate::model::kernel::{socket_addr, UnknownFamily};
pub use crate::model::IcmpCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("event record is {0} bytes, expected {expected}", expected = ConnEvent::SIZE)]
    Length(usize),
    #[error("unknown event kind {0}")]
    Kind(u8),
    #[error("unknown address family {0}")]
    Family(u8),
    #[error("unknown TCP state {0}")]
    TcpState(u8),
}

/// TCP states as numbered in `include/net/tcp_states.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    BoundInactive,
}

impl TcpState {
    pub fn from_u8(v: u8) -> Result<Self, DecodeError> {
        use TcpState::*;
        Ok(match v {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            13 => BoundInactive,
            _ => return Err(DecodeError::TcpState(v)),
        })
    }

    /// The name the kernel uses (`TCP_SYN_SENT` without the prefix).
    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTABLISHED",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            FinWait1 => "FIN_WAIT1",
            FinWait2 => "FIN_WAIT2",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
            NewSynRecv => "NEW_SYN_RECV",
            BoundInactive => "BOUND_INACTIVE",
        }
    }
}

/// A decoded kernel event. For socket events `src` is the client's end and `dst` the
/// VIP; `backend` is the real server IPVS chose, when the kernel could join the event
/// to it (not yet for the first SYN_SENT, whose source port is still 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A TCP socket changed state.
    StateChange {
        ts_ns: u64,
        sock: u64,
        src: SocketAddr,
        dst: SocketAddr,
        old: TcpState,
        new: TcpState,
        backend: Option<SocketAddr>,
        /// The fwmark service that scheduled the connection, if one did.
        fwmark: Option<u32>,
    },
    /// `tcp_connect`: the first SYN is about to leave, with its source port.
    Connect {
        ts_ns: u64,
        sock: u64,
        src: SocketAddr,
        dst: SocketAddr,
    },
    /// A retransmission while the socket was in `state` (SYN_SENT: the SYN).
    Retransmit {
        ts_ns: u64,
        sock: u64,
        src: SocketAddr,
        dst: SocketAddr,
        state: TcpState,
        backend: Option<SocketAddr>,
        /// The fwmark service that scheduled the connection, if one did.
        fwmark: Option<u32>,
    },
    /// The socket received an RST.
    ReceiveReset {
        ts_ns: u64,
        sock: u64,
        src: SocketAddr,
        dst: SocketAddr,
        backend: Option<SocketAddr>,
        /// The fwmark service that scheduled the connection, if one did.
        fwmark: Option<u32>,
    },
    /// IPVS created a connection from `client` to the virtual service `vip` and chose
    /// `backend`. For a fwmark service `vip` is the connection's real destination and
    /// `fwmark` the service's mark.
    IpvsConn {
        ts_ns: u64,
        protocol: u8,
        client: SocketAddr,
        vip: SocketAddr,
        backend: SocketAddr,
        fwmark: Option<u32>,
    },
    /// An ICMP destination-unreachable error for a UDP datagram `client` sent to `vip`.
    IcmpError {
        ts_ns: u64,
        client: SocketAddr,
        vip: SocketAddr,
        /// ICMP (IPv4) or ICMPv6 type and code.
        icmp: IcmpCode,
        backend: Option<SocketAddr>,
    },
}

/// The address in a kernel record's 16-byte field, with `port`; an unknown family is an
/// error naming it.
fn addr(family: u8, bytes: &[u8; 16], port: u16) -> Result<SocketAddr, DecodeError> {
    socket_addr(family, bytes, port).map_err(|UnknownFamily(f)| DecodeError::Family(f))
}

impl Event {
    /// The fwmark service that scheduled the event's connection, if one did.
    pub fn fwmark(&self) -> Option<u32> {
        match *self {
            Event::StateChange { fwmark, .. }
            | Event::Retransmit { fwmark, .. }
            | Event::ReceiveReset { fwmark, .. }
            | Event::IpvsConn { fwmark, .. } => fwmark,
            Event::Connect { .. } | Event::IcmpError { .. } => None,
        }
    }

    /// Decodes one ring-buffer record.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != ConnEvent::SIZE {
            return Err(DecodeError::Length(bytes.len()));
        }
        // SAFETY: the length is checked; ConnEvent is plain integers, valid for any bytes.
        let e: ConnEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let backend = match e.backend_family {
            0 => None,
            f => Some(addr(f, &e.backend_addr, e.backend_port)?),
        };
        let (ts_ns, sock) = (e.ts_ns, e.sock);
        let fwmark = (e.fwmark != 0).then_some(e.fwmark);
        let src = || addr(e.family, &e.saddr, e.sport);
        let dst = || addr(e.family, &e.daddr, e.dport);
        match EventKind::from_u8(e.kind) {
            Some(EventKind::StateChange) => Ok(Event::StateChange {
                ts_ns,
                sock,
                src: src()?,
                dst: dst()?,
                old: TcpState::from_u8(e.old_state)?,
                new: TcpState::from_u8(e.new_state)?,
                backend,
                fwmark,
            }),
            Some(EventKind::Connect) => Ok(Event::Connect {
                ts_ns,
                sock,
                src: src()?,
                dst: dst()?,
            }),
            Some(EventKind::Retransmit) => Ok(Event::Retransmit {
                ts_ns,
                sock,
                src: src()?,
                dst: dst()?,
                state: TcpState::from_u8(e.old_state)?,
                backend,
                fwmark,
            }),
            Some(EventKind::ReceiveReset) => Ok(Event::ReceiveReset {
                ts_ns,
                sock,
                src: src()?,
                dst: dst()?,
                backend,
                fwmark,
            }),
            Some(EventKind::IpvsConn) => Ok(Event::IpvsConn {
                ts_ns: e.ts_ns,
                protocol: e.protocol,
                client: addr(e.family, &e.saddr, e.sport)?,
                vip: addr(e.family, &e.daddr, e.dport)?,
                backend: backend.ok_or(DecodeError::Family(0))?,
                fwmark,
            }),
            Some(EventKind::IcmpError) => Ok(Event::IcmpError {
                ts_ns,
                client: src()?,
                vip: dst()?,
                icmp: IcmpCode {
                    v6: u16::from(e.family) == AF_INET6,
                    icmp_type: e.old_state,
                    code: e.new_state,
                },
                backend,
            }),
            None => Err(DecodeError::Kind(e.kind)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use vipd_common::AF_INET;

    use super::*;

    fn raw(e: &ConnEvent) -> Vec<u8> {
        // SAFETY: ConnEvent is plain data with explicit padding.
        unsafe { std::slice::from_raw_parts((e as *const ConnEvent).cast::<u8>(), ConnEvent::SIZE) }
            .to_vec()
    }

    #[test]
    fn decodes_ipvs_event_across_families() {
        let mut e = ConnEvent {
            kind: EventKind::IpvsConn as u8,
            family: AF_INET as u8,
            protocol: 6,
            backend_family: AF_INET6 as u8,
            sport: 40000,
            dport: 80,
            backend_port: 8080,
            ..Default::default()
        };
        e.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        e.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        e.backend_addr = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let Event::IpvsConn {
            client,
            vip,
            backend,
            fwmark,
            ..
        } = Event::decode(&raw(&e)).unwrap()
        else {
            panic!("wrong kind")
        };
        assert_eq!(client, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(vip, "10.0.0.2:80".parse().unwrap());
        assert_eq!(backend, "[fd00::2]:8080".parse().unwrap());
        assert_eq!(fwmark, None);
        e.fwmark = 7;
        let Event::IpvsConn { fwmark, .. } = Event::decode(&raw(&e)).unwrap() else {
            panic!("wrong kind")
        };
        assert_eq!(fwmark, Some(7));
    }

    #[test]
    fn rejects_bad_records_with_named_errors() {
        assert_eq!(Event::decode(&[0; 3]), Err(DecodeError::Length(3)));
        let mut e = ConnEvent {
            kind: 99,
            ..Default::default()
        };
        assert_eq!(Event::decode(&raw(&e)), Err(DecodeError::Kind(99)));
        e.kind = EventKind::StateChange as u8;
        e.family = 7;
        assert_eq!(Event::decode(&raw(&e)), Err(DecodeError::Family(7)));
        e.family = AF_INET as u8;
        e.old_state = 2;
        e.new_state = 0;
        assert_eq!(Event::decode(&raw(&e)), Err(DecodeError::TcpState(0)));
    }
}
