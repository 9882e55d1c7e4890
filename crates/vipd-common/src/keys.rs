//! Keys and values of the maps shared between the kernel programs and userspace.
//! Addresses are 16 bytes; IPv4 uses the first four and the rest must be zero, so
//! that equal connections give equal keys.

/// A virtual service vipd manages: connections to it produce events. The `VIPS` map
/// holds these, with a service id (chosen by userspace) as the value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct VipKey {
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub family: u8,
    pub protocol: u8,
}

impl VipKey {
    /// The key of fwmark service `mark` of `family`: the mark in the first four
    /// address bytes, port and protocol 0 (no VIP:port service has protocol 0).
    pub const fn fwmark(family: u8, mark: u32) -> Self {
        let m = mark.to_ne_bytes();
        Self {
            addr: [m[0], m[1], m[2], m[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port: 0,
            family,
            protocol: 0,
        }
    }
}

/// One connection, as the client sees it: the `CONNS` map's key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct FlowKey {
    pub client: [u8; 16],
    pub vip: [u8; 16],
    /// Host byte order.
    pub cport: u16,
    pub vport: u16,
    pub family: u8,
    pub protocol: u8,
    pub _pad: [u8; 2],
}

/// The real server IPVS chose for a connection: the `CONNS` map's value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Backend {
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
    /// The firewall mark of the service, when IPVS scheduled the connection for a
    /// fwmark service (0: a VIP:port service). Such a connection's destination is not
    /// a VIP, so the hooks follow it through this entry.
    pub fwmark: u32,
    /// When IPVS chose it (`bpf_ktime_get_ns`).
    pub ts_ns: u64,
}

/// One backend of one UDP service: the `UDP_TRAFFIC` map's key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct DestKey {
    pub vip: [u8; 16],
    pub backend: [u8; 16],
    /// Host byte order.
    pub vport: u16,
    /// Host byte order.
    pub bport: u16,
    pub family: u8,
    pub backend_family: u8,
    pub protocol: u8,
    pub _pad: u8,
}

/// Datagrams IPVS sent to one UDP backend and replies that came back from it: the
/// `UDP_TRAFFIC` map's value. Written by the kernel without locks (a counter may
/// miss an increment when two CPUs race; nothing depends on exact counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct UdpTraffic {
    /// Datagrams IPVS forwarded to the backend.
    pub sent: u64,
    /// Datagrams from the backend delivered to a client socket.
    pub replied: u64,
    /// When the oldest datagram still without any reply after it was sent
    /// (`bpf_ktime_get_ns`); 0 when every datagram so far was followed by a reply.
    pub pending_since_ns: u64,
    /// When the last reply arrived; 0 if none yet.
    pub last_reply_ns: u64,
}

const _: () = assert!(core::mem::size_of::<VipKey>() == 20);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<Backend>() == 32);
const _: () = assert!(core::mem::size_of::<DestKey>() == 40);
const _: () = assert!(core::mem::size_of::<UdpTraffic>() == 32);
