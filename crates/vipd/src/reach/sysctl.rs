//! The IPVS sysctls vipd sets, each with the reason. vipd writes one only when its value
//! differs, and never resets it: these are per network namespace and other IPVS users may
//! rely on them too. (They cover IPv6 as well: IPVS keeps all its sysctls under
//! `net.ipv4.vs`.)

use std::{fs, path::PathBuf};

use super::ReachError;

/// A sysctl and the value vipd needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctl {
    pub name: &'static str,
    pub value: &'static str,
    pub reason: &'static str,
}

/// Needed by the UDP rule (`udp_stale_flows = "expire"`) and by drains that time out:
/// without it, packets of a connection or flow whose destination was deleted are dropped
/// until the entry times out (5 min for UDP, 15 min for established TCP), so a DNS client
/// that keeps its source port never reaches a live backend (kube-proxy's long-standing
/// UDP problem). With it, IPVS expires such an entry at its next packet and schedules
/// that packet again.
pub const EXPIRE_NODEST_CONN: Sysctl = Sysctl {
    name: "net.ipv4.vs.expire_nodest_conn",
    value: "1",
    reason: "expire the flows of deleted backends at their next packet, so they are \
             scheduled to a live backend (UDP rule, drain timeouts)",
};

/// Needed behind a stateful firewall, which every ordinary host has (an input chain
/// with `policy drop` and `ct state established,related accept`): a local client's
/// connection is tracked as client -> VIP before IPVS rewrites it, and with this at 0
/// IPVS keeps netfilter out of the rewritten flow, so the backend's reply is not
/// "established" and is dropped. With it, IPVS updates the connection's tracking entry
/// with the backend's address and replies pass. Cost: every IPVS connection also holds a
/// conntrack entry (counted against `nf_conntrack_max`, a few hundred bytes each) and
/// each new connection one tracking update. kube-proxy's IPVS mode sets it as well.
pub const CONNTRACK: Sysctl = Sysctl {
    name: "net.ipv4.vs.conntrack",
    value: "1",
    reason: "tell netfilter's connection tracking about IPVS connections, so a stateful \
             firewall passes the backends' replies",
};

/// Needed by persistent services: a persistence template keeps sending a client to its
/// backend even at weight 0, so draining (and the health machine's quarantine) would not
/// move persistent clients. With it, a template whose destination is quiescent (weight 0)
/// expires at its next use.
pub const EXPIRE_QUIESCENT_TEMPLATE: Sysctl = Sysctl {
    name: "net.ipv4.vs.expire_quiescent_template",
    value: "1",
    reason: "expire persistence templates of weight-0 backends, so draining moves \
             persistent clients",
};

/// Every sysctl vipd may set, for `vipd status`.
pub const ALL: &[Sysctl] = &[CONNTRACK, EXPIRE_NODEST_CONN, EXPIRE_QUIESCENT_TEMPLATE];

/// `name=value` of each of [`ALL`] as the kernel has it now (`name=?` while the ip_vs
/// module, which makes them, is not loaded).
pub fn current() -> Vec<String> {
    ALL.iter()
        .map(|s| match s.read() {
            Ok(v) => format!("{}={v}", s.name),
            Err(_) => format!("{}=?", s.name),
        })
        .collect()
}

impl Sysctl {
    fn path(&self) -> PathBuf {
        PathBuf::from("/proc/sys").join(self.name.replace('.', "/"))
    }

    /// The current value, trimmed.
    pub fn read(&self) -> Result<String, ReachError> {
        fs::read_to_string(self.path())
            .map(|s| s.trim().to_owned())
            .map_err(|source| ReachError::Sysctl {
                name: self.name,
                source,
            })
    }

    /// Writes the value if it differs; true when it wrote.
    pub fn ensure(&self) -> Result<bool, ReachError> {
        if self.read()? == self.value {
            return Ok(false);
        }
        fs::write(self.path(), format!("{}\n", self.value)).map_err(|source| {
            ReachError::Sysctl {
                name: self.name,
                source,
            }
        })?;
        Ok(true)
    }
}
