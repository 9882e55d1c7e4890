//! Decoding of whole reply datagrams into typed messages, without a socket.

use crate::addr::AddressFamily;
use crate::attrs::*;
use crate::dest::Destination;
use crate::error::{Error, Result};
pub use crate::frame::MessageHeader;
use crate::frame::{Frame, Frames};
use crate::info::Info;
use crate::nla::NlaIter;
use crate::service::Service;
use crate::timeouts::Timeouts;

/// What one received netlink message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `IPVS_CMD_NEW_SERVICE` (answer to `GET_SERVICE`, one per service in a dump).
    Service(Service),
    /// `IPVS_CMD_NEW_DEST` (one per destination in a `GET_DEST` dump).
    Destination(Destination),
    /// `IPVS_CMD_SET_INFO` (answer to `GET_INFO`).
    Info(Info),
    /// `IPVS_CMD_SET_CONFIG` (answer to `GET_CONFIG`).
    Timeouts(Timeouts),
    /// `NLMSG_ERROR` with error 0: the request succeeded.
    Ack,
    /// `NLMSG_ERROR` with an error. `errno` is positive.
    Error { errno: i32, message: Option<String> },
    /// `NLMSG_DONE`: the end of a dump; `code` is 0 or a negative errno.
    Done { code: i32 },
    /// `NLMSG_NOOP`.
    Noop,
}

/// A decoded message with its netlink header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyMessage {
    /// The netlink header (sequence number, flags, type).
    pub header: MessageHeader,
    /// The decoded body.
    pub reply: Reply,
}

/// Decodes every netlink message of one datagram received on an IPVS generic-netlink socket.
///
/// Any message type from `NLMSG_MIN_TYPE` up is taken for the IPVS family (the caller knows
/// which id it resolved and can check [`MessageHeader::message_type`]). Destinations without
/// `IPVS_DEST_ATTR_ADDR_FAMILY` cannot be decoded here (no service to take the family from):
/// use [`decode_ipvs_message`] with a fallback family for those.
///
/// Never panics; malformed input gives a decode error ([`Error::is_decode_error`]).
pub fn decode_reply(datagram: &[u8]) -> Result<Vec<ReplyMessage>> {
    let mut out = Vec::new();
    for frame in Frames::new(datagram) {
        let (header, reply) = match frame? {
            Frame::Genl { header, cmd, attrs } => (header, decode_ipvs_message(cmd, attrs, None)?),
            Frame::Ack { header } => (header, Reply::Ack),
            Frame::Error {
                header,
                errno,
                message,
            } => (header, Reply::Error { errno, message }),
            Frame::Done { header, code } => (header, Reply::Done { code }),
            Frame::Noop { header } => (header, Reply::Noop),
        };
        out.push(ReplyMessage { header, reply });
    }
    Ok(out)
}

/// Decodes the attributes of one IPVS generic-netlink message by its command: the reply
/// commands `NEW_SERVICE`, `NEW_DEST`, `SET_INFO` and `SET_CONFIG`.
/// `dest_family` is the family assumed for a destination lacking
/// `IPVS_DEST_ATTR_ADDR_FAMILY`.
pub fn decode_ipvs_message(
    cmd: u8,
    attrs: &[u8],
    dest_family: Option<AddressFamily>,
) -> Result<Reply> {
    match cmd {
        IPVS_CMD_NEW_SERVICE => {
            let nest = find_nested(attrs, IPVS_CMD_ATTR_SERVICE, "IPVS_CMD_ATTR_SERVICE")?;
            Service::decode_attrs(nest).map(Reply::Service)
        }
        IPVS_CMD_NEW_DEST => {
            let nest = find_nested(attrs, IPVS_CMD_ATTR_DEST, "IPVS_CMD_ATTR_DEST")?;
            Destination::decode_attrs(nest, dest_family).map(Reply::Destination)
        }
        IPVS_CMD_SET_INFO => Info::decode_attrs(attrs).map(Reply::Info),
        IPVS_CMD_SET_CONFIG => Timeouts::decode_attrs(attrs).map(Reply::Timeouts),
        cmd => Err(Error::UnexpectedCommand { cmd }),
    }
}

/// The payload of the last top-level attribute of type `kind`.
fn find_nested<'a>(attrs: &'a [u8], kind: u16, name: &'static str) -> Result<&'a [u8]> {
    let mut found = None;
    for nla in NlaIter::new(attrs, "IPVS_CMD_ATTR") {
        let nla = nla?;
        if nla.kind == kind {
            found = Some(nla.value);
        }
    }
    found.ok_or(Error::MissingAttribute { attr: name })
}
