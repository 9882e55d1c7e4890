//! Requests: one IPVS command with its attributes, encoded without a socket.
//!
//! A request's attributes are encoded when it is built, so every argument error surfaces
//! there. [`Request::to_netlink_message`] adds the generic-netlink header (`struct
//! genlmsghdr { __u8 cmd; __u8 version; __u16 reserved; }`) and the netlink header
//! (`struct nlmsghdr`) through `netlink-packet-generic` and `netlink-packet-core`.

use std::net::IpAddr;

use netlink_packet_core::{
    Emitable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

use crate::attrs::*;
use crate::command::Command;
use crate::dest::{encode_dest_key, Destination, ForwardMethod, TunnelKind};
use crate::error::{Error, Result};
use crate::nla::NlaWriter;
use crate::service::{Service, ServiceKey};
use crate::timeouts::Timeouts;

/// One encoded IPVS request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    command: Command,
    dump: bool,
    attrs: Vec<u8>,
}

impl Request {
    fn build(
        command: Command,
        dump: bool,
        f: impl FnOnce(&mut NlaWriter) -> Result<()>,
    ) -> Result<Request> {
        let mut w = NlaWriter::new();
        f(&mut w)?;
        Ok(Request {
            command,
            dump,
            attrs: w.finish()?,
        })
    }

    fn bare(command: Command, dump: bool) -> Request {
        Request {
            command,
            dump,
            attrs: Vec::new(),
        }
    }

    fn service_key_nest(w: &mut NlaWriter, key: &ServiceKey) -> Result<()> {
        let nest = w.begin_nested(IPVS_CMD_ATTR_SERVICE);
        key.encode_into(w)?;
        w.end_nested(nest);
        Ok(())
    }

    /// `IPVS_CMD_GET_INFO`: version and connection table size.
    pub fn get_info() -> Request {
        Request::bare(Command::GetInfo, false)
    }

    /// `IPVS_CMD_GET_CONFIG`: the timeouts.
    pub fn get_timeouts() -> Request {
        Request::bare(Command::GetConfig, false)
    }

    /// `IPVS_CMD_SET_CONFIG` with the timeouts that are `Some`.
    pub fn set_timeouts(timeouts: &Timeouts) -> Result<Request> {
        Request::build(Command::SetConfig, false, |w| timeouts.encode_into(w))
    }

    /// `IPVS_CMD_GET_SERVICE` as a dump (`NLM_F_DUMP`): every service.
    pub fn dump_services() -> Request {
        Request::bare(Command::GetService, true)
    }

    /// `IPVS_CMD_GET_SERVICE` for one service (the kernel answers `ESRCH` if it is absent).
    pub fn get_service(key: &ServiceKey) -> Result<Request> {
        Request::build(Command::GetService, false, |w| {
            Request::service_key_nest(w, key)
        })
    }

    /// `IPVS_CMD_NEW_SERVICE` (the kernel answers `EEXIST` if it exists).
    pub fn new_service(service: &Service) -> Result<Request> {
        Request::build(Command::NewService, false, |w| service.encode_into(w))
    }

    /// `IPVS_CMD_SET_SERVICE`: replaces scheduler, flags, timeout, netmask and persistence
    /// engine of an existing service (`ESRCH` if absent).
    pub fn set_service(service: &Service) -> Result<Request> {
        Request::build(Command::SetService, false, |w| service.encode_into(w))
    }

    /// `IPVS_CMD_DEL_SERVICE`, with its destinations (`ESRCH` if absent).
    pub fn del_service(key: &ServiceKey) -> Result<Request> {
        Request::build(Command::DelService, false, |w| {
            Request::service_key_nest(w, key)
        })
    }

    /// `IPVS_CMD_GET_DEST` as a dump: the destinations of one service. (The kernel has no
    /// non-dump form; for an absent service it ends the dump empty, without an error.)
    pub fn dump_destinations(key: &ServiceKey) -> Result<Request> {
        Request::build(Command::GetDest, true, |w| {
            Request::service_key_nest(w, key)
        })
    }

    /// `IPVS_CMD_NEW_DEST` (`EEXIST` if the destination exists, `ESRCH` if the service does
    /// not).
    ///
    /// Refused here, as the kernel would refuse it with a bare `EINVAL`: a destination whose
    /// family differs from the service's unless it is tunnelled, and a GUE tunnel with port 0.
    pub fn new_destination(service: &ServiceKey, dest: &Destination) -> Result<Request> {
        check_destination(service, dest)?;
        Request::build(Command::NewDest, false, |w| {
            Request::service_key_nest(w, service)?;
            dest.encode_into(w)
        })
    }

    /// `IPVS_CMD_SET_DEST`: replaces forwarding, weight and thresholds (`ENOENT` if absent).
    /// Same argument checks as [`Request::new_destination`].
    pub fn set_destination(service: &ServiceKey, dest: &Destination) -> Result<Request> {
        check_destination(service, dest)?;
        Request::build(Command::SetDest, false, |w| {
            Request::service_key_nest(w, service)?;
            dest.encode_into(w)
        })
    }

    /// `IPVS_CMD_DEL_DEST` (`ENOENT` if absent).
    pub fn del_destination(service: &ServiceKey, addr: IpAddr, port: u16) -> Result<Request> {
        Request::build(Command::DelDest, false, |w| {
            Request::service_key_nest(w, service)?;
            let nest = w.begin_nested(IPVS_CMD_ATTR_DEST);
            encode_dest_key(w, &addr, port);
            w.end_nested(nest);
            Ok(())
        })
    }

    /// `IPVS_CMD_ZERO` for one service and its destinations.
    pub fn zero_service(key: &ServiceKey) -> Result<Request> {
        Request::build(Command::Zero, false, |w| Request::service_key_nest(w, key))
    }

    /// `IPVS_CMD_ZERO` without a service: zeroes the counters of **every** service in the
    /// network namespace, including ones this program does not own.
    pub fn zero_all_services() -> Request {
        Request::bare(Command::Zero, false)
    }

    /// `IPVS_CMD_FLUSH`: **deletes every virtual service and destination in the network
    /// namespace**, including ones this program does not own.
    ///
    /// Only the encoding is offered; [`crate::Client`] has no way to send it. It exists so
    /// the whole family is described here (and for tools that own all of IPVS, which can
    /// send these bytes on their own socket).
    pub fn flush_all_services_dangerous() -> Request {
        Request::bare(Command::Flush, false)
    }

    /// The command.
    pub fn command(&self) -> Command {
        self.command
    }

    /// True for requests sent with `NLM_F_DUMP`.
    pub fn is_dump(&self) -> bool {
        self.dump
    }

    /// The encoded top-level attributes.
    pub fn attributes(&self) -> &[u8] {
        &self.attrs
    }

    /// The netlink flags the request is sent with: `NLM_F_REQUEST | NLM_F_DUMP` for dumps,
    /// else `NLM_F_REQUEST | NLM_F_ACK`.
    pub fn netlink_flags(&self) -> u16 {
        if self.dump {
            NLM_F_REQUEST | NLM_F_DUMP
        } else {
            NLM_F_REQUEST | NLM_F_ACK
        }
    }

    /// The generic-netlink payload: `genlmsghdr` (`cmd`, version `IPVS_GENL_VERSION`,
    /// reserved 0) followed by the attributes.
    pub fn genl_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.attrs.len());
        out.extend_from_slice(&[self.command.number(), IPVS_GENL_VERSION, 0, 0]);
        out.extend_from_slice(&self.attrs);
        out
    }

    /// The whole netlink message for the resolved IPVS family id and a sequence number.
    pub fn to_netlink_message(&self, family_id: u16, seq: u32) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.flags = self.netlink_flags();
        header.sequence_number = seq;
        let genl = GenlMessage::new(
            GenlHeader {
                cmd: self.command.number(),
                version: IPVS_GENL_VERSION,
            },
            RawIpvs {
                cmd: self.command.number(),
                attrs: &self.attrs,
            },
            family_id,
        );
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(genl));
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }
}

/// The kernel's own refusals that come back as an unexplained `EINVAL`
/// (`ip_vs_genl_set_cmd`: mixed families only for `IP_VS_CONN_F_TUNNEL`;
/// `ip_vs_add_dest`/`ip_vs_edit_dest`: GUE needs a tunnel port).
fn check_destination(service: &ServiceKey, dest: &Destination) -> Result<()> {
    let tunnel = matches!(dest.forward, ForwardMethod::Tunnel { .. });
    if dest.family() != service.family() && !tunnel {
        return Err(Error::InvalidArgument {
            what: "destination",
            reason: format!(
                "an {} destination on an {} service must be tunnelled",
                dest.family(),
                service.family()
            ),
        });
    }
    if let ForwardMethod::Tunnel {
        kind: TunnelKind::Gue,
        port: 0,
        ..
    } = dest.forward
    {
        return Err(Error::InvalidArgument {
            what: "destination",
            reason: "a GUE tunnel needs a non-zero port".into(),
        });
    }
    Ok(())
}

/// Already-encoded IPVS attributes, as a `netlink-packet-generic` family payload.
#[derive(Debug)]
struct RawIpvs<'a> {
    cmd: u8,
    attrs: &'a [u8],
}

impl GenlFamily for RawIpvs<'_> {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.cmd
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for RawIpvs<'_> {
    fn buffer_len(&self) -> usize {
        self.attrs.len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        if let Some(dst) = buffer.get_mut(..self.attrs.len()) {
            dst.copy_from_slice(self.attrs);
        }
    }
}
