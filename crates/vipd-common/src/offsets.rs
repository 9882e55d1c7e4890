//! Field offsets that userspace discovers at start-up and hands to the kernel programs
//! as read-only globals. Rust eBPF objects get no CO-RE relocations, so nothing here is
//! hard-coded from one kernel: tracepoint offsets come from the tracepoint's `format`
//! file, struct offsets from BTF. A program whose offsets are not `valid` does nothing.

/// Marks a field that this tracepoint does not have.
pub const NO_FIELD: u16 = u16::MAX;

/// Byte offsets in the record of a socket tracepoint: `sock/inet_sock_set_state`,
/// `tcp/tcp_retransmit_skb` and `tcp/tcp_receive_reset` all carry the socket's address
/// and the connection's addresses; some carry states or the protocol ([`NO_FIELD`] if
/// not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SockTracepointOffsets {
    /// 1 once userspace has filled the offsets in.
    pub valid: u16,
    pub skaddr: u16,
    /// `oldstate` (set_state) or `state` (retransmit), `int`.
    pub oldstate: u16,
    /// `newstate` (set_state), `int`.
    pub newstate: u16,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    /// `protocol` (set_state only; the tcp/* tracepoints are TCP by definition).
    pub protocol: u16,
    pub saddr: u16,
    pub daddr: u16,
    pub saddr_v6: u16,
    pub daddr_v6: u16,
}

impl SockTracepointOffsets {
    /// Not configured: the program does nothing.
    pub const UNSET: Self = Self {
        valid: 0,
        skaddr: 0,
        oldstate: NO_FIELD,
        newstate: NO_FIELD,
        sport: 0,
        dport: 0,
        family: 0,
        protocol: NO_FIELD,
        saddr: 0,
        daddr: 0,
        saddr_v6: 0,
        daddr_v6: 0,
    };
}

/// Byte offsets of the members of `struct ip_vs_conn_param` (net/ip_vs.h), from BTF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct IpvsConnParamOffsets {
    /// 1 once userspace has filled the offsets in.
    pub valid: u16,
    /// `const union nf_inet_addr *caddr`
    pub caddr: u16,
    /// `const union nf_inet_addr *vaddr`
    pub vaddr: u16,
    /// `__be16 cport`
    pub cport: u16,
    /// `__be16 vport`
    pub vport: u16,
    /// `__u16 protocol`
    pub protocol: u16,
    /// `u16 af`
    pub af: u16,
    /// `__u32 vfwmark` of `struct ip_vs_dest` (the service's firewall mark);
    /// [`NO_FIELD`] when this kernel lacks it: fwmark services then go unwatched.
    pub dest_vfwmark: u16,
}

/// Byte offsets into a TCP socket (`struct sock`), from BTF: the `struct sock_common`
/// members it starts with, `inet_sock.inet_sport` and `sock.sk_protocol`. Read by every
/// hook that is handed a socket: the `tcp_connect` kprobe and fentry, and the tp_btf
/// variants of the socket tracepoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct SockOffsets {
    pub valid: u16,
    /// `__be32 skc_daddr`
    pub daddr: u16,
    /// `__be32 skc_rcv_saddr`
    pub rcv_saddr: u16,
    /// `__be16 skc_dport`
    pub dport: u16,
    /// `unsigned short skc_family`
    pub family: u16,
    /// `struct in6_addr skc_v6_daddr`
    pub v6_daddr: u16,
    /// `struct in6_addr skc_v6_rcv_saddr`
    pub v6_rcv_saddr: u16,
    /// `volatile unsigned char skc_state`
    pub state: u16,
    /// `__be16 inet_sport` of `struct inet_sock` (the bound source port; unlike
    /// `skc_num` it survives the port's release when the socket closes).
    pub sport: u16,
    /// `u16 sk_protocol` of `struct sock`; [`NO_FIELD`] on kernels where it is a
    /// bitfield, which rules out the tp_btf variant of `inet_sock_set_state`.
    pub protocol: u16,
}

impl SockOffsets {
    /// Not configured: the programs do nothing.
    pub const UNSET: Self = Self {
        valid: 0,
        daddr: 0,
        rcv_saddr: 0,
        dport: 0,
        family: 0,
        v6_daddr: 0,
        v6_rcv_saddr: 0,
        state: 0,
        sport: 0,
        protocol: NO_FIELD,
    };
}

/// Byte offsets of the members of `struct sk_buff` the UDP hooks read, from BTF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SkbOffsets {
    pub valid: u16,
    /// `unsigned char *head`
    pub head: u16,
    /// `unsigned char *data`
    pub data: u16,
    /// `__u16 network_header` (offset from `head`)
    pub network_header: u16,
}

/// Byte offsets of the members of `struct ip_vs_conn` (net/ip_vs.h), from the ip_vs
/// module's BTF. Used by the hook on IPVS's transmit functions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct IpvsConnOffsets {
    pub valid: u16,
    /// `union nf_inet_addr caddr` (client)
    pub caddr: u16,
    /// `union nf_inet_addr vaddr` (virtual service)
    pub vaddr: u16,
    /// `union nf_inet_addr daddr` (real server)
    pub daddr: u16,
    /// `__be16 cport`
    pub cport: u16,
    /// `__be16 vport`
    pub vport: u16,
    /// `__be16 dport`
    pub dport: u16,
    /// `u16 af` (of client and VIP)
    pub af: u16,
    /// `__u16 daf` (of the real server)
    pub daf: u16,
    /// `__u16 protocol`
    pub protocol: u16,
}
