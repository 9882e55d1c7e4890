//! Splits a received datagram into netlink messages and classifies them.
//!
//! Headers are read with `netlink-packet-core` (`struct nlmsghdr`, `struct nlmsgerr`,
//! `NLMSG_DONE`'s `int`) and `netlink-packet-generic` (`struct genlmsghdr`), after the lengths
//! they index with have been checked here, so malformed input yields typed errors.

use netlink_packet_core::{
    DoneBuffer, ErrorBuffer, ErrorMessage, NetlinkBuffer, NetlinkHeader, Parseable, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, NLM_F_ACK_TLVS, NLM_F_CAPPED,
};
use netlink_packet_generic::GenlHeader;

use crate::error::{Error, Result};
use crate::nla::{nla_align, NlaIter};

/// `sizeof(struct nlmsghdr)`.
pub const NLMSG_HDRLEN: usize = 16;
/// `GENL_HDRLEN`.
pub const GENL_HDRLEN: usize = 4;
/// `NLMSGERR_ATTR_MSG` (extended ack error string).
const NLMSGERR_ATTR_MSG: u16 = 1;
/// First message type that belongs to a protocol (`NLMSG_MIN_TYPE`).
pub const NLMSG_MIN_TYPE: u16 = 0x10;

/// The netlink header of a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// `nlmsg_type`: the IPVS family id for data, or `NLMSG_ERROR`/`NLMSG_DONE`/...
    pub message_type: u16,
    /// `nlmsg_flags` (`NLM_F_MULTI`, `NLM_F_DUMP_INTR`, ...).
    pub flags: u16,
    /// `nlmsg_seq`: the sequence number of the request this answers.
    pub seq: u32,
    /// `nlmsg_pid`.
    pub port: u32,
}

impl From<&NetlinkHeader> for MessageHeader {
    fn from(h: &NetlinkHeader) -> Self {
        MessageHeader {
            message_type: h.message_type,
            flags: h.flags,
            seq: h.sequence_number,
            port: h.port_number,
        }
    }
}

/// One netlink message, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A generic-netlink message (type >= `NLMSG_MIN_TYPE`).
    Genl {
        header: MessageHeader,
        cmd: u8,
        attrs: &'a [u8],
    },
    /// `NLMSG_ERROR` with error 0.
    Ack { header: MessageHeader },
    /// `NLMSG_ERROR` with an error; `errno` is positive.
    Error {
        header: MessageHeader,
        errno: i32,
        message: Option<String>,
    },
    /// `NLMSG_DONE`; `code` is 0 or a negative errno.
    Done { header: MessageHeader, code: i32 },
    /// `NLMSG_NOOP`.
    Noop { header: MessageHeader },
}

/// Iterator over the messages of one datagram. Stops after the first error.
#[derive(Debug, Clone)]
pub(crate) struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Frames<'a> {
    pub(crate) fn new(datagram: &'a [u8]) -> Self {
        Frames { rest: datagram }
    }

    fn next_frame(&mut self) -> Result<Frame<'a>> {
        let rest = self.rest;
        let have = rest.len();
        let len_bytes: [u8; 4] =
            rest.get(0..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(Error::Truncated {
                    what: "nlmsghdr",
                    need: NLMSG_HDRLEN,
                    have,
                })?;
        if have < NLMSG_HDRLEN {
            return Err(Error::Truncated {
                what: "nlmsghdr",
                need: NLMSG_HDRLEN,
                have,
            });
        }
        let len = u32::from_ne_bytes(len_bytes) as usize;
        if len < NLMSG_HDRLEN {
            return Err(Error::InvalidLength {
                what: "nlmsg_len",
                len,
            });
        }
        if len > have {
            return Err(Error::Truncated {
                what: "netlink message",
                need: len,
                have,
            });
        }
        let buf = NetlinkBuffer::new_checked(rest).map_err(|_| Error::InvalidLength {
            what: "netlink message",
            len,
        })?;
        let header = NetlinkHeader::parse(&buf).map_err(|_| Error::InvalidLength {
            what: "nlmsghdr",
            len,
        })?;
        let payload = rest.get(NLMSG_HDRLEN..len).unwrap_or(&[]);
        // NLMSG_ALIGN(nlmsg_len); the last message may lack its padding.
        self.rest = rest.get(nla_align(len).min(have)..).unwrap_or(&[]);
        let h = MessageHeader::from(&header);
        match header.message_type {
            NLMSG_ERROR => decode_error(h, payload),
            NLMSG_DONE => {
                let code = if payload.is_empty() {
                    0
                } else {
                    let done = DoneBuffer::new_checked(payload).map_err(|_| Error::Truncated {
                        what: "NLMSG_DONE",
                        need: 4,
                        have: payload.len(),
                    })?;
                    done.code()
                };
                Ok(Frame::Done { header: h, code })
            }
            NLMSG_NOOP => Ok(Frame::Noop { header: h }),
            t if t >= NLMSG_MIN_TYPE => {
                let genl = GenlHeader::parse(payload).map_err(|_| Error::Truncated {
                    what: "genlmsghdr",
                    need: GENL_HDRLEN,
                    have: payload.len(),
                })?;
                Ok(Frame::Genl {
                    header: h,
                    cmd: genl.cmd,
                    attrs: payload.get(GENL_HDRLEN..).unwrap_or(&[]),
                })
            }
            t => Err(Error::UnexpectedMessageType { message_type: t }),
        }
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.next_frame();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

/// `struct nlmsgerr { int error; struct nlmsghdr msg; }`, then (unless `NLM_F_CAPPED`) the
/// rest of the offending request, then (with `NLM_F_ACK_TLVS`) extended-ack attributes.
fn decode_error(header: MessageHeader, payload: &[u8]) -> Result<Frame<'_>> {
    let buf = ErrorBuffer::new_checked(&payload).map_err(|_| Error::Truncated {
        what: "nlmsgerr",
        need: 4,
        have: payload.len(),
    })?;
    let msg = ErrorMessage::parse(&buf).map_err(|_| Error::Truncated {
        what: "nlmsgerr",
        need: 4,
        have: payload.len(),
    })?;
    let code = msg.raw_code();
    if code == 0 {
        return Ok(Frame::Ack { header });
    }
    Ok(Frame::Error {
        header,
        errno: code.checked_abs().unwrap_or(i32::MAX),
        message: extack_message(header.flags, payload),
    })
}

/// Best-effort extraction of `NLMSGERR_ATTR_MSG`; malformed extended acks give `None`.
fn extack_message(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let tlv_offset = if flags & NLM_F_CAPPED != 0 {
        4 + NLMSG_HDRLEN
    } else {
        let orig: [u8; 4] = payload.get(4..8)?.try_into().ok()?;
        4usize.checked_add(nla_align(u32::from_ne_bytes(orig) as usize))?
    };
    NlaIter::new(payload.get(tlv_offset..)?, "nlmsgerr attribute")
        .map_while(|a| a.ok())
        .find(|a| a.kind == NLMSGERR_ATTR_MSG)
        .and_then(|a| a.string("NLMSGERR_ATTR_MSG").ok())
        .filter(|s| !s.is_empty())
}
