//! Field offsets that userspace discovers at start-up and hands to the kernel programs
//! as read-only globals. Rust eBPF objects get no CO-RE relocations, so nothing here is
//! hard-coded from one kernel: tracepoint offsets come from the tracepoint's `format`
//! file, struct offsets from BTF. A program whose offsets are not `valid` does nothing.

/// Byte offsets of the fields of the `sock/inet_sock_set_state` tracepoint record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct InetSockSetStateOffsets {
    /// 1 once userspace has filled the offsets in.
    pub valid: u16,
    pub skaddr: u16,
    pub oldstate: u16,
    pub newstate: u16,
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    pub protocol: u16,
    pub saddr: u16,
    pub daddr: u16,
    pub saddr_v6: u16,
    pub daddr_v6: u16,
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
}
