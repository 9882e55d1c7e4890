//! Connection timeouts: `IPVS_CMD_GET_CONFIG` / `IPVS_CMD_SET_CONFIG`.

use crate::attrs::*;
use crate::error::{Error, Result};
use crate::nla::{NlaIter, NlaWriter};

/// TCP, TCP FIN-wait and UDP timeouts in seconds (top-level `IPVS_CMD_ATTR_TIMEOUT_*`, `u32`).
///
/// In a reply a field is `None` when the kernel lacks that protocol
/// (`CONFIG_IP_VS_PROTO_TCP`/`_UDP`). When setting, `None` is not sent and the kernel keeps
/// the current value; note the kernel also treats 0 as "keep" (`ip_vs_set_timeout`), and
/// refuses values above `INT_MAX / HZ` with `EINVAL`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Established TCP connections (`IPVS_CMD_ATTR_TIMEOUT_TCP`).
    pub tcp: Option<u32>,
    /// TCP connections after FIN (`IPVS_CMD_ATTR_TIMEOUT_TCP_FIN`).
    pub tcp_fin: Option<u32>,
    /// UDP (`IPVS_CMD_ATTR_TIMEOUT_UDP`).
    pub udp: Option<u32>,
}

impl Timeouts {
    pub(crate) fn encode_into(&self, w: &mut NlaWriter) -> Result<()> {
        for (value, what) in [
            (self.tcp, "tcp"),
            (self.tcp_fin, "tcp_fin"),
            (self.udp, "udp"),
        ] {
            if value.is_some_and(|v| i32::try_from(v).is_err()) {
                return Err(Error::InvalidArgument {
                    what,
                    reason: "timeout exceeds i32::MAX (the kernel stores an int)".into(),
                });
            }
        }
        if let Some(v) = self.tcp {
            w.put_u32(IPVS_CMD_ATTR_TIMEOUT_TCP, v);
        }
        if let Some(v) = self.tcp_fin {
            w.put_u32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, v);
        }
        if let Some(v) = self.udp {
            w.put_u32(IPVS_CMD_ATTR_TIMEOUT_UDP, v);
        }
        Ok(())
    }

    /// Decodes the top-level attributes of an `IPVS_CMD_SET_CONFIG` reply.
    pub fn decode_attrs(buf: &[u8]) -> Result<Timeouts> {
        let mut t = Timeouts::default();
        for nla in NlaIter::new(buf, "IPVS_CMD_ATTR") {
            let nla = nla?;
            match nla.kind {
                IPVS_CMD_ATTR_TIMEOUT_TCP => t.tcp = Some(nla.u32("IPVS_CMD_ATTR_TIMEOUT_TCP")?),
                IPVS_CMD_ATTR_TIMEOUT_TCP_FIN => {
                    t.tcp_fin = Some(nla.u32("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN")?)
                }
                IPVS_CMD_ATTR_TIMEOUT_UDP => t.udp = Some(nla.u32("IPVS_CMD_ATTR_TIMEOUT_UDP")?),
                _ => {}
            }
        }
        Ok(t)
    }
}
