//! A blocking `NETLINK_ROUTE` socket: dumps, requests, and writes answered by an ack. Every write is
//! counted (`vipd apply` reports the count).

use std::io;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::ReachError;

const RECV_BUF: usize = 64 * 1024;

pub(crate) struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
    /// Write requests sent so far.
    pub(crate) writes: usize,
}

impl Rtnl {
    pub(crate) fn open() -> Result<Rtnl, ReachError> {
        let open = || -> io::Result<Socket> {
            let mut sock = Socket::new(NETLINK_ROUTE)?;
            sock.bind_auto()?;
            sock.connect(&SocketAddr::new(0, 0))?;
            let _ = sock.set_ext_ack(true);
            Ok(sock)
        };
        Ok(Rtnl {
            sock: open().map_err(ReachError::Socket)?,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
            writes: 0,
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
                .map_err(ReachError::Socket)?;
            if n > self.buf.len() {
                return Err(bad(what, format!("reply of {n} bytes was truncated")));
            }
            let mut off = 0;
            while off < self.buf.len() {
                let rest = &self.buf[off..];
                let len = rest
                    .get(..4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(|b| u32::from_ne_bytes(b) as usize)
                    .filter(|l| *l >= 16 && *l <= rest.len())
                    .ok_or_else(|| bad(what, "malformed netlink header".into()))?;
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
                    .map_err(|e| bad(what, e.to_string()))?;
                off += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(out),
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

fn bad(what: &str, reason: String) -> ReachError {
    ReachError::BadReply {
        what: what.to_owned(),
        reason,
    }
}
