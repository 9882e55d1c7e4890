//! The one record every kernel program writes into the `EVENTS` ring buffer.

/// What a [`ConnEvent`] reports. Carried as a `u8` in the record; userspace converts
/// with [`EventKind::from_u8`] and treats unknown values as a decode error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventKind {
    /// `sock/inet_sock_set_state`: a TCP socket changed state.
    StateChange = 1,
    /// `ip_vs_conn_new`: IPVS created a connection entry and chose a real backend.
    IpvsConn = 2,
    /// `tcp/tcp_retransmit_skb`: a segment (for SYN_SENT sockets, the SYN) was resent.
    Retransmit = 3,
    /// `tcp/tcp_receive_reset`: the socket received an RST.
    ReceiveReset = 4,
    /// `tcp_connect`: the first SYN is about to leave, with its source port bound.
    Connect = 5,
    /// `udp_err`/`udpv6_err`: an ICMP destination-unreachable error arrived for a UDP
    /// datagram the client sent to a VIP. `old_state` holds the ICMP type, `new_state`
    /// the code; the addresses are the datagram's (client → VIP, as IPVS translated the
    /// quoted header back), the backend comes from the kernel's join.
    IcmpError = 6,
}

impl EventKind {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::StateChange,
            2 => Self::IpvsConn,
            3 => Self::Retransmit,
            4 => Self::ReceiveReset,
            5 => Self::Connect,
            6 => Self::IcmpError,
            _ => return None,
        })
    }
}

/// One connection event. Addresses are 16 bytes: IPv4 uses the first four (network
/// order), IPv6 all sixteen. Ports are in host byte order.
///
/// For socket events `saddr:sport` is the client side and `daddr:dport` the address the
/// client connected to (for IPVS, the VIP). For [`EventKind::IpvsConn`] the same fields
/// hold the client and the virtual service, and `backend_*` the real server IPVS chose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ConnEvent {
    /// `bpf_ktime_get_ns()` when the hook ran (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// The kernel socket's address, an opaque identity (0 for IPVS events).
    pub sock: u64,
    pub kind: u8,
    /// AF_INET or AF_INET6 (fits in a byte).
    pub family: u8,
    /// IPPROTO_TCP, IPPROTO_UDP, ...
    pub protocol: u8,
    /// TCP states (`TCP_ESTABLISHED` = 1 ... `TCP_NEW_SYN_RECV` = 12): the old state of a
    /// state change, or the socket's state for a retransmit.
    pub old_state: u8,
    /// The new state of a state change.
    pub new_state: u8,
    /// Address family of the real backend, 0 when the kernel could not attribute the
    /// event (IPVS may forward IPv4 to IPv6 and back).
    pub backend_family: u8,
    pub sport: u16,
    pub dport: u16,
    pub backend_port: u16,
    /// The firewall mark of the IPVS service, for a connection scheduled by a fwmark
    /// service (then `daddr` is the real destination, not a VIP); 0 otherwise.
    pub fwmark: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub backend_addr: [u8; 16],
}

impl ConnEvent {
    /// Size of the record in the ring buffer; userspace rejects any other length.
    pub const SIZE: usize = core::mem::size_of::<Self>();
}

const _: () = assert!(ConnEvent::SIZE == 80);
