//! Discovers, on the running kernel, the offsets each kernel program needs.

use vipd_common::{
    sock::SockErrorOffsets, IpvsConnOffsets, IpvsConnParamOffsets, SkbOffsets, SockOffsets,
    SockTracepointOffsets, NO_FIELD,
};

use super::{
    btf::{Btf, BtfError},
    tracefs::{Format, TracefsError},
};

/// The socket tracepoints vipd reads, which differ in the state fields they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockTracepoint {
    /// `sock/inet_sock_set_state`: oldstate, newstate, protocol.
    SetState,
    /// `tcp/tcp_retransmit_skb`: state.
    Retransmit,
    /// `tcp/tcp_receive_reset`: no state.
    ReceiveReset,
}

impl SockTracepoint {
    pub fn category_and_name(self) -> (&'static str, &'static str) {
        match self {
            Self::SetState => ("sock", "inet_sock_set_state"),
            Self::Retransmit => ("tcp", "tcp_retransmit_skb"),
            Self::ReceiveReset => ("tcp", "tcp_receive_reset"),
        }
    }
}

/// Offsets of a socket tracepoint's record fields, each checked for its size.
pub fn sock_tracepoint(
    f: &Format,
    which: SockTracepoint,
) -> Result<SockTracepointOffsets, TracefsError> {
    let mut off = SockTracepointOffsets {
        valid: 1,
        skaddr: f.offset("skaddr", 8)?,
        oldstate: NO_FIELD,
        newstate: NO_FIELD,
        sport: f.offset("sport", 2)?,
        dport: f.offset("dport", 2)?,
        family: f.offset("family", 2)?,
        protocol: NO_FIELD,
        saddr: f.offset("saddr", 4)?,
        daddr: f.offset("daddr", 4)?,
        saddr_v6: f.offset("saddr_v6", 16)?,
        daddr_v6: f.offset("daddr_v6", 16)?,
    };
    match which {
        SockTracepoint::SetState => {
            off.oldstate = f.offset("oldstate", 4)?;
            off.newstate = f.offset("newstate", 4)?;
            off.protocol = f.offset("protocol", 2)?;
        }
        SockTracepoint::Retransmit => off.oldstate = f.offset("state", 4)?,
        SockTracepoint::ReceiveReset => {}
    }
    Ok(off)
}

/// A checked member offset: the member exists with the expected size.
fn member(btf: &Btf, strukt: &str, member: &str, size: u32) -> Result<u16, BtfError> {
    let m = btf.member(strukt, member)?;
    if m.size != size {
        return Err(BtfError::Malformed {
            what: format!("struct {strukt}"),
            problem: format!("member {member} is {} bytes, expected {size}", m.size),
        });
    }
    u16::try_from(m.offset).map_err(|_| BtfError::Malformed {
        what: format!("struct {strukt}"),
        problem: format!("member {member} offset {} too large", m.offset),
    })
}

/// Offsets of the `struct ip_vs_conn_param` members.
pub fn ip_vs_conn_param(btf: &Btf) -> Result<IpvsConnParamOffsets, BtfError> {
    const S: &str = "ip_vs_conn_param";
    Ok(IpvsConnParamOffsets {
        valid: 1,
        caddr: member(btf, S, "caddr", 8)?,
        vaddr: member(btf, S, "vaddr", 8)?,
        cport: member(btf, S, "cport", 2)?,
        vport: member(btf, S, "vport", 2)?,
        protocol: member(btf, S, "protocol", 2)?,
        af: member(btf, S, "af", 2)?,
        dest_vfwmark: match member(btf, "ip_vs_dest", "vfwmark", 4) {
            Ok(off) => off,
            Err(BtfError::NoStruct(_) | BtfError::NoMember { .. }) => NO_FIELD,
            Err(e) => return Err(e),
        },
    })
}

/// Offsets into `struct sock` for the hooks handed a socket. `sk_protocol` is optional:
/// where it is missing or a bitfield (kernels before 5.6) it is [`NO_FIELD`], and only
/// the tp_btf variant of `inet_sock_set_state` is unavailable.
pub fn sock(btf: &Btf) -> Result<SockOffsets, BtfError> {
    const S: &str = "sock_common";
    Ok(SockOffsets {
        valid: 1,
        daddr: member(btf, S, "skc_daddr", 4)?,
        rcv_saddr: member(btf, S, "skc_rcv_saddr", 4)?,
        dport: member(btf, S, "skc_dport", 2)?,
        family: member(btf, S, "skc_family", 2)?,
        v6_daddr: member(btf, S, "skc_v6_daddr", 16)?,
        v6_rcv_saddr: member(btf, S, "skc_v6_rcv_saddr", 16)?,
        state: member(btf, S, "skc_state", 1)?,
        sport: member(btf, "inet_sock", "inet_sport", 2)?,
        protocol: match member(btf, "sock", "sk_protocol", 2) {
            Ok(off) => off,
            Err(BtfError::Bitfield { .. } | BtfError::NoMember { .. }) => NO_FIELD,
            Err(e) => return Err(e),
        },
    })
}

/// Offsets for the socket plane's error hook: the socket's ends and protocol as for
/// [`sock`] (`sk_protocol` required), and `sk_err`, the error being reported.
pub fn sock_error(btf: &Btf) -> Result<SockErrorOffsets, BtfError> {
    let sock = sock(btf)?;
    if sock.protocol == NO_FIELD {
        return Err(BtfError::Bitfield {
            strukt: "sock".into(),
            member: "sk_protocol".into(),
        });
    }
    Ok(SockErrorOffsets {
        sock,
        err: member(btf, "sock", "sk_err", 4)?,
    })
}

/// Offsets of the `struct sk_buff` members the UDP hooks read.
pub fn skb(btf: &Btf) -> Result<SkbOffsets, BtfError> {
    const S: &str = "sk_buff";
    Ok(SkbOffsets {
        valid: 1,
        head: member(btf, S, "head", 8)?,
        data: member(btf, S, "data", 8)?,
        network_header: member(btf, S, "network_header", 2)?,
    })
}

/// Offsets of the `struct ip_vs_conn` members the transmit hook reads.
pub fn ip_vs_conn(btf: &Btf) -> Result<IpvsConnOffsets, BtfError> {
    const S: &str = "ip_vs_conn";
    Ok(IpvsConnOffsets {
        valid: 1,
        caddr: member(btf, S, "caddr", 16)?,
        vaddr: member(btf, S, "vaddr", 16)?,
        daddr: member(btf, S, "daddr", 16)?,
        cport: member(btf, S, "cport", 2)?,
        vport: member(btf, S, "vport", 2)?,
        dport: member(btf, S, "dport", 2)?,
        af: member(btf, S, "af", 2)?,
        daf: member(btf, S, "daf", 2)?,
        protocol: member(btf, S, "protocol", 2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_kernel_offsets_for_every_socket_tracepoint() {
        for which in [
            SockTracepoint::SetState,
            SockTracepoint::Retransmit,
            SockTracepoint::ReceiveReset,
        ] {
            let (cat, name) = which.category_and_name();
            let f = Format::read(cat, name).unwrap();
            let off = sock_tracepoint(&f, which).unwrap_or_else(|e| panic!("{cat}/{name}: {e}"));
            assert_eq!(off.valid, 1);
            assert_eq!(
                off.oldstate == NO_FIELD,
                which == SockTracepoint::ReceiveReset
            );
        }
    }

    #[test]
    fn host_kernel_sock_offsets() {
        let off = sock(&Btf::from_sys_fs(None).unwrap()).unwrap();
        // The address pair leads struct sock_common on every kernel vipd supports.
        assert_eq!((off.daddr, off.rcv_saddr, off.dport), (0, 4, 12));
        // struct inet_sock starts with struct sock, which starts with sock_common.
        assert!(off.sport > off.v6_rcv_saddr && off.protocol > off.v6_rcv_saddr);
        assert_ne!(
            off.protocol, NO_FIELD,
            "sk_protocol is a plain u16 since 5.6"
        );
    }

    #[test]
    fn host_kernel_sock_error_offsets() {
        let off = sock_error(&Btf::from_sys_fs(None).unwrap()).unwrap();
        assert_eq!(off.sock, sock(&Btf::from_sys_fs(None).unwrap()).unwrap());
        // sk_err is a member of struct sock itself, past sock_common.
        assert!(off.err > off.sock.v6_rcv_saddr && off.err < off.sock.sport);
    }

    #[test]
    fn host_kernel_skb_offsets() {
        let off = skb(&Btf::from_sys_fs(None).unwrap()).unwrap();
        assert_eq!(off.valid, 1);
        // head and data are adjacent pointers near the end of struct sk_buff.
        assert_ne!(off.head, off.data);
        assert!(off.network_header > 0);
    }
}
