//! Client-side reachability: what local programs need to reach the VIPs, even on a host
//! with no default route.
//!
//! * **A dummy interface holding the VIPs** (`[daemon] vip_interface`, default `vipd0`), as
//!   kube-proxy's IPVS mode does with `kube-ipvs0`: each VIP becomes a local address (/32
//!   with host scope, /128 without duplicate address detection), so a connect() to it
//!   is routed locally whatever the routing table says, and IPVS's `LOCAL_OUT` hook
//!   schedules it to a backend. The interface is a dummy so that nothing is ever sent
//!   out of it.
//! * **Sysctls** ([`sysctl`]): only those vipd's rules need, each documented with its
//!   reason. `net.ipv4.vs.conntrack` is *not* set: it only matters when netfilter NAT or
//!   conntrack rules must see IPVS connections, and local clients reach masq, tunnel and
//!   route backends without it (the VM tests run with it off).
//!
//! Idempotent: what is in place is left alone (no write). vipd removes only what its
//! record says it created (see [`plan`]).

mod netstate;
mod plan;
mod rtnl;
pub mod sysctl;

use std::{collections::BTreeSet, net::IpAddr};

pub use netstate::{Addr, Link, NetState};
pub use plan::{plan, LinkAction, ReachPlan};
pub use sysctl::Sysctl;

use rtnl::Rtnl;

/// The interfaces and addresses vipd created (part of its ownership record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReachRecord {
    pub created_interfaces: BTreeSet<String>,
    /// (interface, address).
    pub addresses: BTreeSet<(String, IpAddr)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    #[error("rtnetlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("kernel refused to {what}: {source}")]
    Kernel {
        what: String,
        source: std::io::Error,
    },
    #[error("bad rtnetlink reply while trying to {what}: {reason}")]
    BadReply { what: String, reason: String },
    #[error(
        "interface {name:?} exists but is a {kind} interface, not a dummy: vipd puts VIPs \
         only on a dummy interface (set [daemon] vip_interface to another name)"
    )]
    NotDummy { name: String, kind: String },
    #[error("sysctl {name}: {source}")]
    Sysctl {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("interface {0:?} vanished while vipd was adding VIPs to it")]
    Vanished(String),
}

/// The rtnetlink side, counting its writes.
pub struct Reach {
    rtnl: Rtnl,
}

impl Reach {
    pub fn open() -> Result<Reach, ReachError> {
        Ok(Reach {
            rtnl: Rtnl::open()?,
        })
    }

    /// The namespace's interfaces and addresses.
    pub fn read(&mut self) -> Result<NetState, ReachError> {
        NetState::read(&mut self.rtnl)
    }

    /// Rtnetlink writes sent so far.
    pub fn writes(&self) -> usize {
        self.rtnl.writes
    }

    /// Before the IPVS writes: the interface (created or set up) and the new VIPs.
    pub fn prepare(&mut self, plan: &ReachPlan) -> Result<(), ReachError> {
        if plan.add.is_empty() && plan.link == LinkAction::None {
            return Ok(());
        }
        match &plan.link {
            LinkAction::None => {}
            LinkAction::Create => netstate::create_dummy(&mut self.rtnl, &plan.interface)?,
            LinkAction::SetUp(l) => netstate::set_up(&mut self.rtnl, l)?,
        }
        if plan.add.is_empty() {
            return Ok(());
        }
        let link = self
            .read()?
            .link(&plan.interface)
            .cloned()
            .ok_or_else(|| ReachError::Vanished(plan.interface.clone()))?;
        for vip in &plan.add {
            netstate::add_vip(&mut self.rtnl, &link, *vip)?;
        }
        Ok(())
    }

    /// After the IPVS writes: VIPs no longer used, then interfaces left empty.
    pub fn cleanup(&mut self, plan: &ReachPlan) -> Result<(), ReachError> {
        for (link, addr) in &plan.remove {
            netstate::del_vip(&mut self.rtnl, link, addr)?;
        }
        for link in &plan.delete {
            netstate::delete_link(&mut self.rtnl, link)?;
        }
        Ok(())
    }
}

/// Sets the sysctls that differ; returns how many it wrote.
pub fn ensure_sysctls(list: &[Sysctl]) -> Result<usize, ReachError> {
    let mut writes = 0;
    for s in list {
        writes += usize::from(s.ensure()?);
    }
    Ok(writes)
}
