//! The whole bench for one test: the namespaces, vipd applying configs inside the
//! director, the injector and the capture. [`Rig::send`] sends one flow's first packet
//! and returns what IPVS made of it; packets go one at a time, each only after the
//! previous one has come out, so the order in which IPVS scheduled them is the order
//! they were sent in.

use std::{process::Output, time::Duration};

use vipd::reconcile::ApplySummary;

use super::{
    capture::Capture,
    inject::Injector,
    packet::{Flow, Forwarded},
    topology::{Topology, DIRECTOR},
};
use crate::{require_vm, vipd_cli::VipdRun};

/// How long one packet may take from the injector to the sink: generous, since a busy
/// host can stall the emulated VM for a while; only a failing test waits this long.
const TRANSIT: Duration = Duration::from_secs(5);

pub struct Rig {
    // Fields drop in order: the sockets close before their namespaces go.
    capture: Capture,
    injector: Injector,
    pub vipd: VipdRun,
    _topology: Topology,
}

impl Rig {
    /// A fresh topology (no IPVS service) and an empty vipd state for test `name`.
    pub fn new(name: &str) -> Self {
        require_vm();
        let topology = Topology::new();
        Rig {
            capture: Capture::start(),
            injector: Injector::new(),
            vipd: VipdRun::new(&format!("sched-{name}")).in_netns(DIRECTOR),
            _topology: topology,
        }
    }

    /// `vipd apply` of `config` in the director; panics unless it succeeded.
    pub fn apply(&self, config: &str) -> ApplySummary {
        self.vipd.apply(config)
    }

    /// `vipd apply` of `config` in the director, whatever the outcome.
    pub fn apply_output(&self, config: &str) -> Output {
        self.vipd.apply_with(config, &[])
    }

    /// Sends `flow`'s first packet and returns the packet IPVS forwarded for it. Panics
    /// if nothing came out, or anything else did.
    pub fn send(&self, flow: &Flow) -> Forwarded {
        let from = self.capture.len();
        self.injector.send(flow);
        let (got, since) = self.capture.wait_after(from, TRANSIT, |p| {
            p.flow.proto == flow.proto && p.flow.src == flow.src
        });
        let got = got.unwrap_or_else(|| {
            panic!(
                "IPVS forwarded nothing for {flow:?} within {TRANSIT:?}; \
                 packets at the sink since: {since:?}\n{}",
                self.vipd.status()
            )
        });
        assert_eq!(
            since.len(),
            1,
            "for {flow:?} the sink got more than its packet: {since:?}"
        );
        got
    }

    /// [`Rig::send`] for each flow in turn.
    pub fn send_all(&self, flows: &[Flow]) -> Vec<Forwarded> {
        flows.iter().map(|f| self.send(f)).collect()
    }
}
