//! A blocking `NETLINK_ROUTE` socket: dumps, requests, and writes answered by an ack. Every write is
//! counted (`vipd apply` reports the count).
//!
//! Bounded and lenient where it is safe: a receive waits at most [`RECV_TIMEOUT`], so a
//! kernel that never answers cannot hold the daemon's loop; a message of a dump that
//! this library cannot decode (a kernel newer than it, an attribute it misreads) is
//! skipped and counted instead of failing the whole dump.

use std::{io, os::fd::AsRawFd, time::Duration};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::ReachError;

const RECV_BUF: usize = 64 * 1024;
/// The longest wait for one reply datagram.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
    /// Write requests sent so far.
    pub(crate) writes: usize,
    /// Replies skipped because they could not be decoded.
    pub(crate) skipped: usize,
}

impl Rtnl {
    pub(crate) fn open() -> Result<Rtnl, ReachError> {
        let open = || -> io::Result<Socket> {
            let mut sock = Socket::new(NETLINK_ROUTE)?;
            sock.bind_auto()?;
            sock.connect(&SocketAddr::new(0, 0))?;
            let _ = sock.set_ext_ack(true);
            set_recv_timeout(&sock, RECV_TIMEOUT)?;
            Ok(sock)
        };
        Ok(Rtnl {
            sock: open().map_err(ReachError::Socket)?,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
            writes: 0,
            skipped: 0,
        })
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<u32, ReachError> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let mut bytes = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut bytes);
        let n = self.sock.send(&bytes, 0).map_err(ReachError::Socket)?;
        if n != bytes.len() {
            return Err(ReachError::Socket(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("rtnetlink send wrote {n} of {} bytes", bytes.len()),
            )));
        }
        Ok(self.seq)
    }

    /// Reads the replies to `seq` until its ack, error or `NLMSG_DONE`.
    fn receive(&mut self, seq: u32, what: &str) -> Result<Vec<RouteNetlinkMessage>, ReachError> {
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            self.buf.reserve(RECV_BUF);
            let n = self
                .sock
                .recv(&mut self.buf, libc::MSG_TRUNC)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => bad(
                        what,
                        format!("no answer within {}s", RECV_TIMEOUT.as_secs()),
                    ),
                    _ => ReachError::Socket(e),
                })?;
            if n > self.buf.len() {
                return Err(bad(what, format!("reply of {n} bytes was truncated")));
            }
            let parsed = parse_datagram(&self.buf, seq, what, &mut out)?;
            if parsed.skipped > 0 {
                self.skipped += parsed.skipped;
                tracing::warn!(
                    skipped = parsed.skipped,
                    "{what}: {} rtnetlink message(s) could not be decoded and were skipped",
                    parsed.skipped
                );
            }
            if parsed.done {
                return Ok(out);
            }
        }
    }

    /// A dump request.
    pub(crate) fn dump(
        &mut self,
        msg: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, ReachError> {
        let seq = self.send(msg, NLM_F_DUMP)?;
        self.receive(seq, what)
    }

    /// A request answered by messages and an ack (e.g. a route lookup); not a write.
    pub(crate) fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        what: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, ReachError> {
        let seq = self.send(msg, NLM_F_ACK)?;
        self.receive(seq, what)
    }

    /// A write, acknowledged. `flags` adds e.g. `NLM_F_CREATE | NLM_F_EXCL`.
    pub(crate) fn write(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> Result<(), ReachError> {
        let seq = self.send(msg, NLM_F_ACK | flags)?;
        self.writes += 1;
        self.receive(seq, what).map(drop)
    }
}

/// What one datagram held for a request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    /// The ack, error or `NLMSG_DONE` ending the request was in it.
    done: bool,
    /// Messages of the request that could not be decoded.
    skipped: usize,
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// Appends the decoded messages of `buf` answering `seq` to `out`. A message that
/// cannot be decoded is skipped and counted, unless it is the ack, error or end of the
/// request, without which the reply cannot be trusted.
fn parse_datagram(
    buf: &[u8],
    seq: u32,
    what: &str,
    out: &mut Vec<RouteNetlinkMessage>,
) -> Result<Parsed, ReachError> {
    let mut parsed = Parsed::default();
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        let len = rest
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_ne_bytes(b) as usize)
            .filter(|l| *l >= 16 && *l <= rest.len())
            .ok_or_else(|| bad(what, "malformed netlink header".into()))?;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let msg_seq = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        off += (len + 3) & !3;
        if msg_seq != seq {
            continue;
        }
        let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]) {
            Ok(m) => m,
            Err(e) if kind == NLMSG_ERROR || kind == NLMSG_DONE => {
                return Err(bad(what, e.to_string()))
            }
            Err(e) => {
                tracing::debug!("{what}: skipping an undecodable message of type {kind}: {e}");
                parsed.skipped += 1;
                continue;
            }
        };
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => out.push(m),
            NetlinkPayload::Done(_) => {
                parsed.done = true;
                return Ok(parsed);
            }
            NetlinkPayload::Error(e) => match e.code {
                None => {
                    parsed.done = true;
                    return Ok(parsed);
                }
                Some(code) => {
                    return Err(ReachError::Kernel {
                        what: what.to_owned(),
                        source: io::Error::from_raw_os_error(-code.get()),
                    })
                }
            },
            _ => {}
        }
    }
    Ok(parsed)
}

fn set_recv_timeout(sock: &Socket, t: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(t.subsec_micros() as i32),
    };
    // SAFETY: a valid socket descriptor and a timeval of the size given.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn bad(what: &str, reason: String) -> ReachError {
    ReachError::BadReply {
        what: what.to_owned(),
        reason,
    }
}

#[cfg(test)]
#[path = "rtnl_tests.rs"]
mod tests;
