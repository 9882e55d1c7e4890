//! Service and destination statistics (`IPVS_STATS_ATTR_*` nests).
//!
//! The kernel sends two nests per service or destination (`ip_vs_genl_fill_stats` and
//! `ip_vs_genl_fill_stats64` in `net/netfilter/ipvs/ip_vs_ctl.c`):
//! `*_ATTR_STATS`, where the counters are `u32` except the byte counters (`u64`), and
//! `*_ATTR_STATS64`, where everything is `u64`. Both may interleave `IPVS_STATS_ATTR_PAD`
//! attributes to align the `u64`s (`nla_put_u64_64bit`).

use crate::attrs::*;
use crate::error::Result;
use crate::nla::NlaIter;

/// Counters and rates of a service or destination, widened to 64 bits.
///
/// Counters count since the object was created or last zeroed (`IPVS_CMD_ZERO`); rates are
/// the kernel rate estimator's values as it reports them (ipvsadm shows them per second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Incoming packets.
    pub inpkts: u64,
    /// Outgoing packets.
    pub outpkts: u64,
    /// Incoming bytes.
    pub inbytes: u64,
    /// Outgoing bytes.
    pub outbytes: u64,
    /// Connection rate.
    pub cps: u64,
    /// Incoming packet rate.
    pub inpps: u64,
    /// Outgoing packet rate.
    pub outpps: u64,
    /// Incoming byte rate.
    pub inbps: u64,
    /// Outgoing byte rate.
    pub outbps: u64,
}

impl Stats {
    /// Decodes the payload of a stats nest (`IPVS_SVC_ATTR_STATS{,64}` or
    /// `IPVS_DEST_ATTR_STATS{,64}`). Each counter may be 4 or 8 bytes, so both nest kinds
    /// decode here. Unknown attributes and `IPVS_STATS_ATTR_PAD` are skipped; absent counters
    /// stay 0.
    pub fn decode_attrs(buf: &[u8]) -> Result<Stats> {
        let mut s = Stats::default();
        for nla in NlaIter::new(buf, "IPVS_STATS_ATTR") {
            let nla = nla?;
            let slot = match nla.kind {
                IPVS_STATS_ATTR_CONNS => &mut s.conns,
                IPVS_STATS_ATTR_INPKTS => &mut s.inpkts,
                IPVS_STATS_ATTR_OUTPKTS => &mut s.outpkts,
                IPVS_STATS_ATTR_INBYTES => &mut s.inbytes,
                IPVS_STATS_ATTR_OUTBYTES => &mut s.outbytes,
                IPVS_STATS_ATTR_CPS => &mut s.cps,
                IPVS_STATS_ATTR_INPPS => &mut s.inpps,
                IPVS_STATS_ATTR_OUTPPS => &mut s.outpps,
                IPVS_STATS_ATTR_INBPS => &mut s.inbps,
                IPVS_STATS_ATTR_OUTBPS => &mut s.outbps,
                _ => continue,
            };
            *slot = nla.uint("IPVS_STATS_ATTR counter")?;
        }
        Ok(s)
    }
}

/// Chooses between the 64-bit nest and the older mixed-width one: `STATS64` when the kernel
/// sent it (Linux 4.1 and later), else `STATS`.
pub(crate) fn pick_stats(stats64: Option<&[u8]>, stats32: Option<&[u8]>) -> Result<Option<Stats>> {
    match (stats64, stats32) {
        (Some(b), _) | (None, Some(b)) => Stats::decode_attrs(b).map(Some),
        (None, None) => Ok(None),
    }
}
