//! The health record the balancing planes' programs (XDP, socket) send to userspace
//! through their ring buffers: one layout, one decoder, whichever plane saw it.

/// What an [`HealthEvent`] reports. Carried as a `u8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HealthKind {
    /// The backend answered a SYN with an RST: a refusal (XDP).
    Refused = 1,
    /// The backend sent an ICMP destination unreachable about a flow (UDP port
    /// unreachable, host/net unreachable relayed by its stack, ...) (XDP).
    Unreachable = 2,
    /// The client sent the SYN again with no answer from the backend in between (XDP:
    /// seen again in the flow; socket: an RTO while the socket is in SYN_SENT).
    SynRetransmit = 3,
    /// The backend's first answer to a SYN (SYN-ACK; socket: the connection is
    /// established): the connection is being set up.
    Established = 4,
    /// A SYN left for the backend (XDP: a new flow, a fresh attempt on an answered
    /// tuple, or a retransmission moved to another backend), on a service userspace
    /// follows the handshakes of (`XDP_SYN_WATCH`): the start of a handshake deadline.
    SynSent = 5,
}

impl HealthKind {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Refused,
            2 => Self::Unreachable,
            3 => Self::SynRetransmit,
            4 => Self::Established,
            5 => Self::SynSent,
            _ => return None,
        })
    }
}

/// One failure (or success) a data plane's program saw, for the health state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct HealthEvent {
    pub ts_ns: u64,
    pub service_id: u32,
    pub backend_id: u32,
    /// A [`HealthKind`].
    pub kind: u8,
    pub family: u8,
    pub protocol: u8,
    /// For [`HealthKind::Unreachable`]: the ICMP type and code.
    pub icmp_type: u8,
    pub icmp_code: u8,
    pub _pad: [u8; 3],
    /// Host byte order.
    pub cport: u16,
    pub vport: u16,
    pub bport: u16,
    pub _pad1: u16,
    pub client: [u8; 16],
    pub vip: [u8; 16],
    pub backend: [u8; 16],
}

impl HealthEvent {
    /// Size of the record in the ring buffer; userspace rejects any other length.
    pub const SIZE: usize = core::mem::size_of::<Self>();
}

const _: () = assert!(HealthEvent::SIZE == 80);

/// errno values of the unreachable errors (Linux, every architecture vipd builds for).
mod errno {
    pub const EACCES: i32 = 13;
    pub const ENONET: i32 = 64;
    pub const ENOPROTOOPT: i32 = 92;
    pub const ENETUNREACH: i32 = 101;
    pub const ECONNREFUSED: i32 = 111;
    pub const EHOSTDOWN: i32 = 112;
    pub const EHOSTUNREACH: i32 = 113;
}

/// The ICMP (`v6` false) or ICMPv6 destination unreachable a socket error `err` came
/// from, as the kernel converts one into the other (`icmp_err_convert`,
/// `icmpv6_err_convert`): type and code. The conversion loses detail, so this is the
/// most common source of each errno: `EHOSTUNREACH` is also what an IPv4
/// "administratively prohibited" becomes. `None` for an errno no unreachable becomes
/// (`EMSGSIZE` is path MTU discovery; 0 is no error at all).
pub const fn unreachable_of_errno(v6: bool, err: i32) -> Option<(u8, u8)> {
    use errno::*;
    if v6 {
        Some(match err {
            ENETUNREACH => (1, 0),
            EACCES => (1, 1),
            EHOSTUNREACH => (1, 3),
            ECONNREFUSED => (1, 4),
            _ => return None,
        })
    } else {
        Some(match err {
            ENETUNREACH => (3, 0),
            EHOSTUNREACH => (3, 1),
            ENOPROTOOPT => (3, 2),
            ECONNREFUSED => (3, 3),
            EHOSTDOWN => (3, 7),
            ENONET => (3, 8),
            _ => return None,
        })
    }
}

/// ICMP destination unreachable; ICMPv6 destination unreachable.
pub const ICMP_DEST_UNREACH: u8 = 3;
pub const ICMPV6_DEST_UNREACH: u8 = 1;

/// Whether an ICMP error of `icmp_type` and `code` says the destination cannot take the
/// datagram: destination unreachable with network, host, protocol or port unreachable,
/// or one of the administratively prohibited codes (9, 10, 13). "Fragmentation needed"
/// (4) is path MTU discovery, not a failure.
pub const fn icmp_failure(icmp_type: u8, code: u8) -> bool {
    icmp_type == ICMP_DEST_UNREACH && matches!(code, 0..=3 | 9 | 10 | 13)
}

/// As [`icmp_failure`] for ICMPv6 destination unreachable: no route, administratively
/// prohibited, address unreachable, port unreachable, failed policy, reject route.
pub const fn icmpv6_failure(icmp_type: u8, code: u8) -> bool {
    icmp_type == ICMPV6_DEST_UNREACH && matches!(code, 0 | 1 | 3..=6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachables_fail_and_path_mtu_discovery_does_not() {
        assert!(icmp_failure(3, 3) && icmp_failure(3, 13) && icmpv6_failure(1, 4));
        assert!(!icmp_failure(3, 4), "fragmentation needed");
        assert!(!icmp_failure(11, 0), "time exceeded");
        assert!(!icmpv6_failure(2, 0), "packet too big");
        assert!(
            !icmpv6_failure(1, 2),
            "beyond the scope of the source address"
        );
    }

    #[test]
    fn socket_errors_name_the_unreachable_they_came_from() {
        assert_eq!(unreachable_of_errno(false, 111), Some((3, 3)));
        assert_eq!(unreachable_of_errno(true, 111), Some((1, 4)));
        assert_eq!(unreachable_of_errno(false, 113), Some((3, 1)));
        assert_eq!(unreachable_of_errno(true, 13), Some((1, 1)));
        assert_eq!(unreachable_of_errno(false, 13), None);
        // Path MTU discovery and no error are not failures.
        assert_eq!(unreachable_of_errno(false, 90), None);
        assert_eq!(unreachable_of_errno(true, 90), None);
        assert_eq!(unreachable_of_errno(false, 0), None);
    }
}
