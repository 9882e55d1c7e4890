//! Releasing the connection-tracking entries of handshakes caught on a quarantined
//! backend, over ctnetlink (`NETLINK_NETFILTER`).
//!
//! With `net.ipv4.vs.conntrack = 1` (needed behind a stateful firewall), a retransmitted
//! SYN whose IPVS connection points at a backend now at weight 0 belongs to an already
//! confirmed tracking entry, and IPVS drops it so that the entry can go (the client then
//! waits for its next retransmission, 2 s later) instead of rescheduling it at once. When
//! vipd quarantines a backend it deletes the tracking entries of the connections still
//! in their handshake with it, so their next SYN starts a fresh entry and IPVS sends it
//! to a live backend straight away, as it does without connection tracking.

use std::{io, net::SocketAddr, time::Duration};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr as NlAddr};

/// `NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE`.
const CT_DELETE: u16 = (1 << 8) | 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 1 << 15;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
/// How long the kernel may take to answer one delete.
const TIMEOUT: Duration = Duration::from_millis(200);

/// A ctnetlink socket.
pub struct Conntrack {
    sock: Socket,
    seq: u32,
}

/// What [`Conntrack::release`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub deleted: usize,
    /// Entries already gone (or never tracked).
    pub absent: usize,
}

impl Conntrack {
    pub fn open() -> io::Result<Conntrack> {
        let mut sock = Socket::new(NETLINK_NETFILTER)?;
        sock.bind_auto()?;
        sock.connect(&NlAddr::new(0, 0))?;
        set_timeout(&sock, TIMEOUT)?;
        Ok(Conntrack { sock, seq: 0 })
    }

    /// Deletes the tracking entry of each connection `client -> vip` of IP protocol
    /// `protocol`. Stops at the first error other than "no such entry".
    pub fn release(
        &mut self,
        protocol: u8,
        vip: SocketAddr,
        clients: &[SocketAddr],
    ) -> io::Result<Released> {
        let mut done = Released::default();
        let mut buf = vec![0u8; 8192];
        for client in clients.iter().filter(|c| c.is_ipv4() == vip.is_ipv4()) {
            // EAGAIN: the kernel has just loaded ctnetlink for the first request; again.
            let mut code = -libc::EAGAIN;
            for _ in 0..2 {
                if code != -libc::EAGAIN {
                    break;
                }
                self.seq = self.seq.wrapping_add(1);
                let msg = delete_message(self.seq, protocol, *client, vip);
                self.sock.send(&msg, 0)?;
                code = ack(&self.sock, &mut buf, self.seq)?;
            }
            match code {
                0 => done.deleted += 1,
                e if e == -libc::ENOENT => done.absent += 1,
                e => return Err(io::Error::from_raw_os_error(-e)),
            }
        }
        Ok(done)
    }
}

/// Sets `SO_RCVTIMEO` of a netlink socket.
pub(crate) fn set_timeout(sock: &Socket, d: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid socket descriptor and a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads until the `NLMSG_ERROR` answering `seq`; returns its (negative errno) code.
fn ack(sock: &Socket, buf: &mut Vec<u8>, seq: u32) -> io::Result<i32> {
    loop {
        buf.clear();
        let n = sock.recv(buf, 0)?;
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
            if len < 16 || off + len > n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed ctnetlink reply",
                ));
            }
            let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            let got = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap_or_default());
            if kind == NLMSG_ERROR && got == seq && len >= 20 {
                return Ok(i32::from_ne_bytes(
                    buf[off + 16..off + 20].try_into().unwrap_or_default(),
                ));
            }
            off += (len + 3) & !3;
        }
    }
}

fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + ((4 - len % 4) % 4), 0);
}

fn nested(out: &mut Vec<u8>, kind: u16, inner: &[u8]) {
    attr(out, kind | NLA_F_NESTED, inner);
}

/// The `IPCTNL_MSG_CT_DELETE` request for the entry whose original direction is
/// `client -> vip` (the tuple conntrack recorded before IPVS rewrote the destination).
fn delete_message(seq: u32, protocol: u8, client: SocketAddr, vip: SocketAddr) -> Vec<u8> {
    let mut ip = Vec::new();
    let family = match (client, vip) {
        (SocketAddr::V4(c), SocketAddr::V4(v)) => {
            attr(&mut ip, CTA_IP_V4_SRC, &c.ip().octets());
            attr(&mut ip, CTA_IP_V4_DST, &v.ip().octets());
            libc::AF_INET as u8
        }
        _ => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V6(a) => a.ip().octets(),
                SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
            };
            attr(&mut ip, CTA_IP_V6_SRC, &v6(client));
            attr(&mut ip, CTA_IP_V6_DST, &v6(vip));
            libc::AF_INET6 as u8
        }
    };
    let mut proto = Vec::new();
    attr(&mut proto, CTA_PROTO_NUM, &[protocol]);
    attr(&mut proto, CTA_PROTO_SRC_PORT, &client.port().to_be_bytes());
    attr(&mut proto, CTA_PROTO_DST_PORT, &vip.port().to_be_bytes());
    let mut tuple = Vec::new();
    nested(&mut tuple, CTA_TUPLE_IP, &ip);
    nested(&mut tuple, CTA_TUPLE_PROTO, &proto);
    let mut body = vec![family, 0, 0, 0]; // nfgenmsg: family, version 0, res_id 0
    nested(&mut body, CTA_TUPLE_ORIG, &tuple);

    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&CT_DELETE.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&body);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_delete_request_is_laid_out_as_ctnetlink_reads_it() {
        let m = delete_message(
            7,
            6,
            "198.18.250.2:40000".parse().unwrap(),
            "198.18.0.10:80".parse().unwrap(),
        );
        assert_eq!(m.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0102);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        assert_eq!(&m[16..20], &[libc::AF_INET as u8, 0, 0, 0]);
        // CTA_TUPLE_ORIG (nested) holding CTA_TUPLE_IP then CTA_TUPLE_PROTO.
        assert_eq!(
            u16::from_ne_bytes([m[22], m[23]]),
            CTA_TUPLE_ORIG | NLA_F_NESTED
        );
        assert_eq!(
            u16::from_ne_bytes([m[26], m[27]]),
            CTA_TUPLE_IP | NLA_F_NESTED
        );
        let ip = &m[28..];
        assert_eq!(u16::from_ne_bytes([ip[2], ip[3]]), CTA_IP_V4_SRC);
        assert_eq!(&ip[4..8], &[198, 18, 250, 2]);
        assert_eq!(u16::from_ne_bytes([ip[10], ip[11]]), CTA_IP_V4_DST);
        assert_eq!(&ip[12..16], &[198, 18, 0, 10]);
        let proto = &ip[16..];
        assert_eq!(
            u16::from_ne_bytes([proto[2], proto[3]]),
            CTA_TUPLE_PROTO | NLA_F_NESTED
        );
        assert_eq!(proto[8], 6);
        assert_eq!(&proto[16..18], &40000u16.to_be_bytes());
        assert_eq!(&proto[24..26], &80u16.to_be_bytes());
    }

    #[test]
    fn an_ipv6_delete_request_carries_both_addresses() {
        let m = delete_message(
            1,
            6,
            "[fd00:18:fa::2]:40000".parse().unwrap(),
            "[fd00:18::10]:80".parse().unwrap(),
        );
        assert_eq!(m[16], libc::AF_INET6 as u8);
        let ip = &m[28..];
        assert_eq!(u16::from_ne_bytes([ip[0], ip[1]]), 20);
        assert_eq!(u16::from_ne_bytes([ip[2], ip[3]]), CTA_IP_V6_SRC);
        assert_eq!(u16::from_ne_bytes([ip[22], ip[23]]), CTA_IP_V6_DST);
        assert_eq!(m.len() % 4, 0);
    }
}
