//! The kernel's socket diagnostics (`NETLINK_SOCK_DIAG`) for UDP: a dump of the
//! connected UDP sockets to one destination port (`SOCK_DIAG_BY_FAMILY`), and
//! `SOCK_DESTROY` of one of them, named by its addresses, ports and cookie. Requests are
//! built and replies parsed here; a malformed reply is an error naming the field.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NlAddr};
use tracing::debug;

pub const AF_INET: u8 = libc::AF_INET as u8;
pub const AF_INET6: u8 = libc::AF_INET6 as u8;
pub const IPPROTO_UDP: u8 = libc::IPPROTO_UDP as u8;
/// `SOCK_DIAG_BY_FAMILY`: a dump request, and the type of each socket in its answer.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `SOCK_DESTROY`.
const SOCK_DESTROY: u16 = 21;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
/// `NLM_F_ROOT | NLM_F_MATCH`.
const NLM_F_DUMP: u16 = 0x300;
/// `NLM_F_DUMP_INTR`: the socket table changed during the dump.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `TCP_ESTABLISHED`: the state of a connected UDP socket.
const TCP_ESTABLISHED: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct inet_diag_sockid)`.
const SOCKID_LEN: usize = 48;
/// `sizeof(struct inet_diag_req_v2)`.
const REQ_LEN: usize = 8 + SOCKID_LEN;
/// `sizeof(struct inet_diag_msg)`.
const MSG_LEN: usize = 4 + SOCKID_LEN + 20;
/// How long the kernel may take to answer.
const TIMEOUT: Duration = Duration::from_millis(500);
/// Receive buffer: the kernel's dump datagrams stay well below this.
const RECV_BUF: usize = 64 * 1024;

/// What can go wrong talking `sock_diag`.
#[derive(Debug, thiserror::Error)]
pub enum DiagError {
    #[error("opening a NETLINK_SOCK_DIAG socket: {0}")]
    Open(io::Error),
    #[error("sending a sock_diag {request}: {source}")]
    Send {
        request: &'static str,
        source: io::Error,
    },
    #[error("receiving the answer to a sock_diag {request}: {source}")]
    Recv {
        request: &'static str,
        source: io::Error,
    },
    #[error("the kernel refused the sock_diag {request}: {}", io::Error::from_raw_os_error(*errno))]
    Kernel { request: &'static str, errno: i32 },
    #[error("malformed sock_diag reply: {what} needs {need} bytes, {have} there")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    #[error("malformed sock_diag reply: {what} {value}")]
    Invalid { what: &'static str, value: u64 },
}

impl DiagError {
    /// What the kernel lacks when this error says so, for a warning.
    pub fn missing_feature(&self) -> Option<&'static str> {
        match self {
            DiagError::Kernel { errno, .. } if *errno == libc::EOPNOTSUPP => {
                Some("socket destruction (CONFIG_INET_DIAG_DESTROY)")
            }
            DiagError::Kernel { errno, .. } if *errno == libc::EPERM => {
                Some("the permission to destroy sockets (CAP_NET_ADMIN)")
            }
            DiagError::Kernel { request, errno } if *errno == libc::ENOENT && *request == DUMP => {
                Some("UDP socket diagnostics (CONFIG_INET_UDP_DIAG, module udp_diag)")
            }
            DiagError::Open(e) if e.raw_os_error() == Some(libc::EPROTONOSUPPORT) => {
                Some("socket diagnostics (CONFIG_INET_DIAG)")
            }
            _ => None,
        }
    }
}

const DUMP: &str = "dump of UDP sockets";
const DESTROY: &str = "SOCK_DESTROY";

/// `struct inet_diag_sockid` as the kernel sent it (echoed back to destroy the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockId {
    /// Host byte order.
    pub sport: u16,
    pub dport: u16,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub ifindex: u32,
    /// The socket cookie (`bpf_get_socket_cookie`'s value).
    pub cookie: u64,
}

/// One UDP socket of a dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSock {
    pub family: u8,
    pub id: SockId,
}

impl UdpSock {
    /// The destination as the socket holds it (an IPv4 peer of an IPv6 socket as
    /// `::ffff:a.b.c.d`).
    pub fn dst(&self) -> SocketAddr {
        let ip = if self.family == AF_INET {
            let d = &self.id.dst;
            IpAddr::V4(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.id.dst))
        };
        SocketAddr::new(ip, self.id.dport)
    }
}

fn put_header(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, payload: usize) {
    out.extend_from_slice(&((NLMSG_HDRLEN + payload) as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
}

fn put_request(out: &mut Vec<u8>, family: u8, states: u32, id: &SockId) {
    out.extend_from_slice(&[family, IPPROTO_UDP, 0, 0]);
    out.extend_from_slice(&states.to_ne_bytes());
    out.extend_from_slice(&id.sport.to_be_bytes());
    out.extend_from_slice(&id.dport.to_be_bytes());
    out.extend_from_slice(&id.src);
    out.extend_from_slice(&id.dst);
    out.extend_from_slice(&id.ifindex.to_ne_bytes());
    // `idiag_cookie[2]`: the low half first.
    out.extend_from_slice(&(id.cookie as u32).to_ne_bytes());
    out.extend_from_slice(&((id.cookie >> 32) as u32).to_ne_bytes());
}

/// A dump of the connected UDP sockets of `family` whose destination port is `dport`.
pub fn dump_request(seq: u32, family: u8, dport: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(NLMSG_HDRLEN + REQ_LEN);
    put_header(
        &mut out,
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        REQ_LEN,
    );
    let id = SockId {
        sport: 0,
        dport,
        src: [0; 16],
        dst: [0; 16],
        ifindex: 0,
        // `INET_DIAG_NOCOOKIE`: any socket.
        cookie: u64::MAX,
    };
    put_request(&mut out, family, 1 << TCP_ESTABLISHED, &id);
    out
}

/// Destroys socket `s` (matched by its addresses, ports, interface and cookie).
pub fn destroy_request(seq: u32, s: &UdpSock) -> Vec<u8> {
    let mut out = Vec::with_capacity(NLMSG_HDRLEN + REQ_LEN);
    put_header(
        &mut out,
        SOCK_DESTROY,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        REQ_LEN,
    );
    put_request(&mut out, s.family, u32::MAX, &s.id);
    out
}

/// One message of a reply that answers our request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Sock(UdpSock),
    /// `NLMSG_ERROR` 0.
    Ack,
    /// The end of a dump.
    Done,
}

fn bytes<const N: usize>(b: &[u8], at: usize, what: &'static str) -> Result<[u8; N], DiagError> {
    b.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(DiagError::Truncated {
            what,
            need: at + N,
            have: b.len(),
        })
}

fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, DiagError> {
    bytes::<4>(b, at, what).map(u32::from_ne_bytes)
}

/// `struct inet_diag_msg`.
fn parse_sock(p: &[u8]) -> Result<UdpSock, DiagError> {
    if p.len() < MSG_LEN {
        return Err(DiagError::Truncated {
            what: "inet_diag_msg",
            need: MSG_LEN,
            have: p.len(),
        });
    }
    let family = p[0];
    if family != AF_INET && family != AF_INET6 {
        return Err(DiagError::Invalid {
            what: "idiag_family",
            value: family.into(),
        });
    }
    let lo = u32_at(p, 44, "idiag_cookie")?;
    let hi = u32_at(p, 48, "idiag_cookie")?;
    Ok(UdpSock {
        family,
        id: SockId {
            sport: u16::from_be_bytes(bytes(p, 4, "idiag_sport")?),
            dport: u16::from_be_bytes(bytes(p, 6, "idiag_dport")?),
            src: bytes(p, 8, "idiag_src")?,
            dst: bytes(p, 24, "idiag_dst")?,
            ifindex: u32_at(p, 40, "idiag_if")?,
            cookie: u64::from(lo) | (u64::from(hi) << 32),
        },
    })
}

/// The messages of one datagram that answer `seq` (others are skipped). An error
/// message or a failed dump is an error naming `request`.
pub fn parse_reply(b: &[u8], seq: u32, request: &'static str) -> Result<Vec<Reply>, DiagError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < b.len() {
        let rest = &b[off..];
        let len = u32_at(rest, 0, "nlmsghdr")? as usize;
        if rest.len() < NLMSG_HDRLEN {
            return Err(DiagError::Truncated {
                what: "nlmsghdr",
                need: NLMSG_HDRLEN,
                have: rest.len(),
            });
        }
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(DiagError::Invalid {
                what: "nlmsg_len",
                value: len as u64,
            });
        }
        let kind = u16::from_ne_bytes(bytes(rest, 4, "nlmsg_type")?);
        let flags = u16::from_ne_bytes(bytes(rest, 6, "nlmsg_flags")?);
        let got = u32_at(rest, 8, "nlmsg_seq")?;
        let payload = &rest[NLMSG_HDRLEN..len];
        off += (len + 3) & !3;
        if got != seq || kind == NLMSG_NOOP {
            continue;
        }
        if flags & NLM_F_DUMP_INTR != 0 {
            // The table changed meanwhile: what was sent is still each socket's state.
            debug!("sock_diag dump interrupted by a change of the socket table");
        }
        match kind {
            NLMSG_ERROR => {
                let code = i32::from_ne_bytes(bytes(payload, 0, "nlmsgerr")?);
                if code == 0 {
                    out.push(Reply::Ack);
                } else {
                    return Err(DiagError::Kernel {
                        request,
                        errno: code.checked_neg().unwrap_or(i32::MAX),
                    });
                }
            }
            NLMSG_DONE => {
                let code = match payload.get(0..4) {
                    Some(c) => i32::from_ne_bytes(c.try_into().unwrap_or_default()),
                    None => 0,
                };
                if code < 0 {
                    return Err(DiagError::Kernel {
                        request,
                        errno: code.checked_neg().unwrap_or(i32::MAX),
                    });
                }
                out.push(Reply::Done);
            }
            SOCK_DIAG_BY_FAMILY => out.push(Reply::Sock(parse_sock(payload)?)),
            other => {
                return Err(DiagError::Invalid {
                    what: "nlmsg_type",
                    value: other.into(),
                })
            }
        }
    }
    Ok(out)
}

/// A `NETLINK_SOCK_DIAG` socket.
pub struct SockDiag {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl SockDiag {
    pub fn open() -> Result<Self, DiagError> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG).map_err(DiagError::Open)?;
        sock.bind_auto().map_err(DiagError::Open)?;
        sock.connect(&NlAddr::new(0, 0)).map_err(DiagError::Open)?;
        crate::plane::ipvs::conntrack::set_timeout(&sock, TIMEOUT).map_err(DiagError::Open)?;
        Ok(SockDiag {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    fn send(
        &mut self,
        request: &'static str,
        msg: impl Fn(u32) -> Vec<u8>,
    ) -> Result<u32, DiagError> {
        self.seq = self.seq.wrapping_add(1);
        let m = msg(self.seq);
        self.sock
            .send(&m, 0)
            .map_err(|source| DiagError::Send { request, source })?;
        Ok(self.seq)
    }

    /// Receives until a message that ends the answer to `seq` (`Done` or an ack).
    fn answer(&mut self, seq: u32, request: &'static str) -> Result<Vec<UdpSock>, DiagError> {
        let mut socks = Vec::new();
        loop {
            self.buf.clear();
            self.buf.reserve(RECV_BUF);
            self.sock
                .recv(&mut self.buf, 0)
                .map_err(|source| DiagError::Recv { request, source })?;
            for r in parse_reply(&self.buf, seq, request)? {
                match r {
                    Reply::Sock(s) => socks.push(s),
                    Reply::Ack | Reply::Done => return Ok(socks),
                }
            }
        }
    }

    /// The connected UDP sockets of `family` with destination port `dport`.
    pub fn connected_udp(&mut self, family: u8, dport: u16) -> Result<Vec<UdpSock>, DiagError> {
        let seq = self.send(DUMP, |seq| dump_request(seq, family, dport))?;
        self.answer(seq, DUMP)
    }

    /// Destroys `s`; false: it was gone already (closed, or its addresses now belong
    /// to another socket).
    pub fn destroy(&mut self, s: &UdpSock) -> Result<bool, DiagError> {
        let seq = self.send(DESTROY, |seq| destroy_request(seq, s))?;
        match self.answer(seq, DESTROY) {
            Ok(_) => Ok(true),
            Err(DiagError::Kernel { errno, .. }) if errno == libc::ENOENT => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// An address as the 16 bytes of a socket id (IPv4 in the first four).
pub fn octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&a.octets());
            o
        }
        IpAddr::V6(a) => a.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(family: u8, dst: SocketAddr, cookie: u64) -> UdpSock {
        UdpSock {
            family,
            id: SockId {
                sport: 40000,
                dport: dst.port(),
                src: octets("10.0.0.1".parse().unwrap()),
                dst: octets(dst.ip()),
                ifindex: 0,
                cookie,
            },
        }
    }

    /// A reply datagram: a header of `kind`/`flags`/`seq` around `payload`.
    fn message(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_header(&mut out, kind, flags, seq, payload.len());
        out.extend_from_slice(payload);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    /// `struct inet_diag_msg` of `s` as the kernel writes it.
    fn diag_msg(s: &UdpSock) -> Vec<u8> {
        let mut req = Vec::new();
        put_request(&mut req, s.family, 0, &s.id);
        let mut out = vec![s.family, 1, 0, 0];
        out.extend_from_slice(&req[8..]);
        out.extend_from_slice(&[0u8; 20]);
        out
    }

    #[test]
    fn dump_request_layout() {
        let m = dump_request(7, AF_INET6, 53);
        assert_eq!(m.len(), NLMSG_HDRLEN + REQ_LEN);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 72);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), SOCK_DIAG_BY_FAMILY);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST | NLM_F_DUMP);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        let r = &m[NLMSG_HDRLEN..];
        assert_eq!(&r[..4], &[AF_INET6, IPPROTO_UDP, 0, 0]);
        assert_eq!(u32::from_ne_bytes(r[4..8].try_into().unwrap()), 2);
        // Source port any, destination port 53 in network order.
        assert_eq!(&r[8..12], &[0, 0, 0, 53]);
        // No cookie to match.
        assert_eq!(&r[48..56], &[0xff; 8]);
    }

    #[test]
    fn destroy_request_echoes_the_socket() {
        let s = sock(
            AF_INET,
            "10.1.0.2:5353".parse().unwrap(),
            0x1122_3344_5566_7788,
        );
        let m = destroy_request(9, &s);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), SOCK_DESTROY);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), NLM_F_REQUEST | NLM_F_ACK);
        let r = &m[NLMSG_HDRLEN..];
        assert_eq!(&r[8..10], &40000u16.to_be_bytes());
        assert_eq!(&r[10..12], &5353u16.to_be_bytes());
        assert_eq!(&r[12..16], &[10, 0, 0, 1]);
        assert_eq!(&r[28..32], &[10, 1, 0, 2]);
        assert_eq!(&r[48..52], &0x5566_7788u32.to_ne_bytes());
        assert_eq!(&r[52..56], &0x1122_3344u32.to_ne_bytes());
    }

    #[test]
    fn parses_a_dump_and_its_end() {
        let a = sock(AF_INET, "10.1.0.2:53".parse().unwrap(), 1 << 40 | 5);
        let b = sock(AF_INET6, "[::ffff:10.1.0.2]:53".parse().unwrap(), 6);
        let mut d = message(SOCK_DIAG_BY_FAMILY, 2, 3, &diag_msg(&a));
        d.extend(message(SOCK_DIAG_BY_FAMILY, 2, 99, &diag_msg(&a)));
        d.extend(message(SOCK_DIAG_BY_FAMILY, 2, 3, &diag_msg(&b)));
        d.extend(message(NLMSG_DONE, 2, 3, &0i32.to_ne_bytes()));
        let r = parse_reply(&d, 3, DUMP).unwrap();
        assert_eq!(r, vec![Reply::Sock(a), Reply::Sock(b), Reply::Done]);
        assert_eq!(a.dst(), "10.1.0.2:53".parse().unwrap());
        assert_eq!(b.dst(), "[::ffff:10.1.0.2]:53".parse().unwrap());
    }

    #[test]
    fn kernel_errors_name_what_is_missing() {
        let d = message(NLMSG_ERROR, 0, 4, &(-libc::EOPNOTSUPP).to_ne_bytes());
        let e = parse_reply(&d, 4, DESTROY).unwrap_err();
        assert!(e
            .missing_feature()
            .unwrap()
            .contains("CONFIG_INET_DIAG_DESTROY"));
        let d = message(NLMSG_ERROR, 0, 4, &(-libc::EPERM).to_ne_bytes());
        let e = parse_reply(&d, 4, DESTROY).unwrap_err();
        assert!(e.missing_feature().unwrap().contains("CAP_NET_ADMIN"));
        let d = message(NLMSG_DONE, 2, 4, &(-libc::ENOENT).to_ne_bytes());
        let e = parse_reply(&d, 4, DUMP).unwrap_err();
        assert!(e.missing_feature().unwrap().contains("udp_diag"));
        let d = message(NLMSG_ERROR, 0, 4, &0i32.to_ne_bytes());
        assert_eq!(parse_reply(&d, 4, DESTROY).unwrap(), vec![Reply::Ack]);
    }

    #[test]
    fn malformed_replies_are_errors_naming_the_field() {
        let s = sock(AF_INET, "10.1.0.2:53".parse().unwrap(), 1);
        let good = message(SOCK_DIAG_BY_FAMILY, 2, 1, &diag_msg(&s));
        let field = |b: &[u8]| match parse_reply(b, 1, DUMP).unwrap_err() {
            DiagError::Truncated { what, .. } | DiagError::Invalid { what, .. } => what,
            e => panic!("{e}"),
        };
        // Every cut of a good message.
        for cut in 1..good.len() {
            assert!(parse_reply(&good[..cut], 1, DUMP).is_err(), "cut at {cut}");
        }
        assert_eq!(field(&good[..3]), "nlmsghdr");
        assert_eq!(field(&good[..10]), "nlmsghdr");
        assert_eq!(field(&good[..40]), "nlmsg_len");
        // A length below the header's, or one past the datagram.
        let mut short = good.clone();
        short[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(field(&short), "nlmsg_len");
        let mut long = good.clone();
        long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(field(&long), "nlmsg_len");
        // A socket record cut short, or of an unknown family.
        let cut = message(SOCK_DIAG_BY_FAMILY, 2, 1, &diag_msg(&s)[..60]);
        assert_eq!(field(&cut), "inet_diag_msg");
        let mut fam = diag_msg(&s);
        fam[0] = 1;
        assert_eq!(
            field(&message(SOCK_DIAG_BY_FAMILY, 2, 1, &fam)),
            "idiag_family"
        );
        // An error message without its code; a type that is not ours.
        assert_eq!(field(&message(NLMSG_ERROR, 0, 1, &[0, 0])), "nlmsgerr");
        assert_eq!(field(&message(77, 0, 1, &[])), "nlmsg_type");
    }
}
