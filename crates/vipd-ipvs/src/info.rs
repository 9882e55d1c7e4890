//! General IPVS information: the `IPVS_CMD_GET_INFO` reply (`IPVS_CMD_SET_INFO`).

use crate::attrs::*;
use crate::error::{Error, Result};
use crate::nla::NlaIter;

/// What `IPVS_CMD_GET_INFO` reports (`ip_vs_genl_get_cmd`: top-level `IPVS_INFO_ATTR_VERSION`
/// and `IPVS_INFO_ATTR_CONN_TAB_SIZE`, both `u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Info {
    /// `IP_VS_VERSION_CODE`, e.g. `0x010201` for 1.2.1.
    pub version: u32,
    /// Size of the connection hash table (`ip_vs_conn_tab_size`).
    pub conn_table_size: u32,
}

impl Info {
    /// The version as `(major, minor, patch)`, like the header's `NVERSION` macro.
    pub const fn version_triplet(&self) -> (u8, u8, u8) {
        let [_, major, minor, patch] = self.version.to_be_bytes();
        (major, minor, patch)
    }

    /// Decodes the top-level attributes of an `IPVS_CMD_SET_INFO` reply.
    pub fn decode_attrs(buf: &[u8]) -> Result<Info> {
        let mut version = None;
        let mut size = None;
        for nla in NlaIter::new(buf, "IPVS_INFO_ATTR") {
            let nla = nla?;
            match nla.kind {
                IPVS_INFO_ATTR_VERSION => version = Some(nla.u32("IPVS_INFO_ATTR_VERSION")?),
                IPVS_INFO_ATTR_CONN_TAB_SIZE => {
                    size = Some(nla.u32("IPVS_INFO_ATTR_CONN_TAB_SIZE")?)
                }
                _ => {}
            }
        }
        Ok(Info {
            version: version.ok_or(Error::MissingAttribute {
                attr: "IPVS_INFO_ATTR_VERSION",
            })?,
            conn_table_size: size.ok_or(Error::MissingAttribute {
                attr: "IPVS_INFO_ATTR_CONN_TAB_SIZE",
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triplet() {
        let i = Info {
            version: 0x010201,
            conn_table_size: 4096,
        };
        assert_eq!(i.version_triplet(), (1, 2, 1));
    }
}
