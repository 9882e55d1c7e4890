//! Client-side reachability: what local programs need to reach the VIPs, and to reach
//! them with an address the backends can answer.
//!
//! * **A route per VIP on a dummy interface** (`[daemon] vip_interface`, default `vipd0`):
//!   `VIP/32 dev vipd0 proto 118 src <host address>` (/128 for IPv6), in the main table.
//!   A local program's connect() or sendto() to the VIP is routed there, and IPVS's
//!   `LOCAL_OUT` hook schedules the packet to a backend before it reaches the interface
//!   (a dummy, so that nothing is ever sent out of it when no service matches). The VIP
//!   is *not* a local address: if it were, the kernel would pick the VIP itself as the
//!   connection's source, and a backend on another host, which knows nothing about
//!   VIPs, could not answer. The route's preferred source is the address the kernel
//!   uses to reach the VIP's backends ([`source`]), so IPVS rewrites only the
//!   destination and the backend sees the client host's own address. This needs one
//!   route per VIP and no NAT rule; kube-proxy's alternative (VIPs as local addresses
//!   plus an SNAT rule per service) needs both, and changes the source twice.
//! * **Sysctls** ([`sysctl`]): only those vipd's rules need, each documented with its
//!   reason.
//!
//! Idempotent: what is in place is left alone (no write). vipd removes only what it can
//! prove it made (see [`plan`]).

mod netstate;
mod plan;
pub mod route;
mod rtnl;
pub mod source;
pub mod sysctl;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
};

pub use netstate::{Addr, Link, NetState};
pub use plan::{plan, LinkAction, ReachPlan};
pub use source::Sources;
pub use sysctl::Sysctl;

use rtnl::Rtnl;

/// The interface and routes vipd created (part of its ownership record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReachRecord {
    pub created_interfaces: BTreeSet<String>,
    /// VIP routes: (interface, VIP).
    pub routes: BTreeSet<(String, IpAddr)>,
    /// VIP addresses from the earlier layout (VIPs as local addresses), until they are
    /// converted or removed: (interface, address).
    pub addresses: BTreeSet<(String, IpAddr)>,
}

/// A VIP that cannot be made reachable the way vipd does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConflict {
    pub vip: IpAddr,
    /// What is wrong, to follow "VIP <vip> ".
    pub problem: String,
}

impl fmt::Display for VipConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VIP {} {}", self.vip, self.problem)
    }
}

impl crate::config::Origin {
    /// The conflicts as diagnostics at each VIP's place in the config, in file order
    /// (the main file, then the drop-ins by name).
    pub fn located(&self, all: &[VipConflict]) -> Vec<crate::config::Diagnostic> {
        let mut out: Vec<_> = all
            .iter()
            .map(|c| self.diagnostic(c.vip, &c.problem))
            .collect();
        out.sort_by(|a, b| {
            let key =
                |d: &crate::config::Diagnostic| (d.file != self.file, d.file.clone(), d.location);
            key(a).cmp(&key(b))
        });
        out
    }
}

fn conflicts_text(all: &[VipConflict]) -> String {
    all.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
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
    #[error("interface {0:?} vanished while vipd was adding VIP routes to it")]
    Vanished(String),
    #[error("{}", conflicts_text(.0))]
    Conflicts(Vec<VipConflict>),
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

    /// Rtnetlink messages skipped so far because they could not be decoded.
    pub fn skipped(&self) -> usize {
        self.rtnl.skipped
    }

    /// Chooses each VIP's preferred source from the kernel's routes to its backends
    /// (see [`source`]); `vips` maps a VIP to its backends of the same family.
    pub fn sources(
        &mut self,
        net: &NetState,
        vips: &BTreeMap<IpAddr, Vec<IpAddr>>,
    ) -> Result<Sources, ReachError> {
        let addresses: BTreeSet<IpAddr> = net.addrs.iter().map(|a| a.addr).collect();
        source::choose(vips, &addresses, |dst| route::lookup(&mut self.rtnl, dst))
    }

    /// Before the IPVS writes: the interface (created or set up), the new VIP routes, and
    /// earlier-layout VIP addresses turned into routes.
    pub fn prepare(&mut self, plan: &ReachPlan) -> Result<(), ReachError> {
        match &plan.link {
            LinkAction::None => {}
            LinkAction::Create => netstate::create_dummy(&mut self.rtnl, &plan.interface)?,
            LinkAction::SetUp(l) => netstate::set_up(&mut self.rtnl, l)?,
        }
        if plan.add.is_empty() && plan.replace.is_empty() && plan.convert.is_empty() {
            return Ok(());
        }
        let link = self
            .read()?
            .link(&plan.interface)
            .cloned()
            .ok_or_else(|| ReachError::Vanished(plan.interface.clone()))?;
        for (vip, src) in &plan.add {
            route::add(&mut self.rtnl, &link, *vip, *src)?;
        }
        for (vip, src) in &plan.replace {
            route::replace(&mut self.rtnl, &link, *vip, *src)?;
        }
        for (l, a) in &plan.convert {
            netstate::del_vip_address(&mut self.rtnl, l, a)?;
        }
        Ok(())
    }

    /// After the IPVS writes: VIP routes and addresses no longer used, then the
    /// interface if it is left empty.
    pub fn cleanup(&mut self, plan: &ReachPlan) -> Result<(), ReachError> {
        for (link, r) in &plan.remove {
            route::delete(&mut self.rtnl, link, r.dst)?;
        }
        for (link, a) in &plan.remove_addresses {
            netstate::del_vip_address(&mut self.rtnl, link, a)?;
        }
        if let Some(link) = &plan.delete {
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
