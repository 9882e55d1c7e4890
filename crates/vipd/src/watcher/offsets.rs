//! Discovers, on the running kernel, the offsets each kernel program needs.

use vipd_common::{InetSockSetStateOffsets, IpvsConnParamOffsets};

use super::{
    btf::{Btf, BtfError},
    tracefs::{Format, TracefsError},
};

/// Offsets of the `sock/inet_sock_set_state` record fields.
pub fn inet_sock_set_state(f: &Format) -> Result<InetSockSetStateOffsets, TracefsError> {
    Ok(InetSockSetStateOffsets {
        valid: 1,
        skaddr: f.offset("skaddr", 8)?,
        oldstate: f.offset("oldstate", 4)?,
        newstate: f.offset("newstate", 4)?,
        sport: f.offset("sport", 2)?,
        dport: f.offset("dport", 2)?,
        family: f.offset("family", 2)?,
        protocol: f.offset("protocol", 2)?,
        saddr: f.offset("saddr", 4)?,
        daddr: f.offset("daddr", 4)?,
        saddr_v6: f.offset("saddr_v6", 16)?,
        daddr_v6: f.offset("daddr_v6", 16)?,
    })
}

/// Offsets of the `struct ip_vs_conn_param` members, checking each member's size.
pub fn ip_vs_conn_param(btf: &Btf) -> Result<IpvsConnParamOffsets, BtfError> {
    const S: &str = "ip_vs_conn_param";
    let at = |member: &str, size: u32| -> Result<u16, BtfError> {
        let m = btf.member(S, member)?;
        if m.size != size {
            return Err(BtfError::Malformed {
                what: format!("struct {S}"),
                problem: format!("member {member} is {} bytes, expected {size}", m.size),
            });
        }
        u16::try_from(m.offset).map_err(|_| BtfError::Malformed {
            what: format!("struct {S}"),
            problem: format!("member {member} offset {} too large", m.offset),
        })
    };
    Ok(IpvsConnParamOffsets {
        valid: 1,
        caddr: at("caddr", 8)?,
        vaddr: at("vaddr", 8)?,
        cport: at("cport", 2)?,
        vport: at("vport", 2)?,
        protocol: at("protocol", 2)?,
        af: at("af", 2)?,
    })
}
