//! Resolution of the `"IPVS"` generic-netlink family id through `nlctrl`.
//!
//! The request is built with `netlink-packet-generic`'s control-family types
//! (`CTRL_CMD_GETFAMILY` with `CTRL_ATTR_FAMILY_NAME`); the reply is searched here for
//! `CTRL_ATTR_FAMILY_ID` alone, so the rest of the (large, version-dependent) family
//! description cannot make resolution fail.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::constants::{CTRL_ATTR_FAMILY_ID, CTRL_CMD_NEWFAMILY, GENL_ID_CTRL};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;

use crate::attrs::IPVS_GENL_NAME;
use crate::error::{Error, Result};
use crate::nla::NlaIter;

/// The `nlctrl` family's fixed id (`GENL_ID_CTRL`).
pub const NLCTRL_FAMILY_ID: u16 = GENL_ID_CTRL;

/// Encodes `CTRL_CMD_GETFAMILY` for `"IPVS"` with `NLM_F_REQUEST | NLM_F_ACK`.
pub fn resolve_family_request(seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = seq;
    let ctrl = GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(IPVS_GENL_NAME.to_owned())],
    };
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(GenlMessage::from_payload(ctrl)),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Finds `CTRL_ATTR_FAMILY_ID` (`u16`) in the attributes of a `CTRL_CMD_NEWFAMILY` reply.
pub fn decode_family_id(cmd: u8, attrs: &[u8]) -> Result<u16> {
    if cmd != CTRL_CMD_NEWFAMILY {
        return Err(Error::UnexpectedCommand { cmd });
    }
    let mut id = None;
    for nla in NlaIter::new(attrs, "CTRL_ATTR") {
        let nla = nla?;
        if nla.kind == CTRL_ATTR_FAMILY_ID {
            id = Some(nla.u16("CTRL_ATTR_FAMILY_ID")?);
        }
    }
    match id {
        None => Err(Error::MissingAttribute {
            attr: "CTRL_ATTR_FAMILY_ID",
        }),
        Some(0) => Err(Error::InvalidValue {
            what: "CTRL_ATTR_FAMILY_ID",
            value: 0,
        }),
        Some(id) => Ok(id),
    }
}
