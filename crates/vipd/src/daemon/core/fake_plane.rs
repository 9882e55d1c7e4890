//! A data plane for the core's tests: it holds weights in a map, can be told to fail,
//! and logs what it was asked in order.

use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

use crate::{
    config::Config,
    model::{BackendId, Counters, Report, ServiceKey},
    plane::{
        Applied, DataPlane, PlaneError, PlaneStatus, StickyCounts, Ticks, WeightWrites, Weights,
        Written,
    },
    reconcile::ReconcileError,
};

/// Calls in order, shared with the test (`apply`, `write`, `restore`, ...).
pub type CallLog = Rc<RefCell<Vec<&'static str>>>;

#[derive(Default)]
pub struct FakePlane {
    /// What it holds: `Some(weight)`, or `None` (out of the plane).
    pub held: BTreeMap<(ServiceKey, BackendId), Option<u32>>,
    pub log: CallLog,
    pub fail_apply: bool,
    pub fail_writes: bool,
    /// What the next applies say: draining, and writes the kernel refused.
    pub draining: bool,
    pub refused: u64,
    /// Undecodable messages the next applies say they skipped.
    pub skipped: u64,
    /// Weight writes the next fast-path writes say failed.
    pub failed_writes: u64,
    /// The kernel refuses every weight the fast path would change (as IPVS does with
    /// ENOMEM): nothing is held, each counts as a failed write.
    pub refuse_writes: bool,
    pub notes: Vec<String>,
    pub lost: Option<u64>,
    pub counters: Counters,
    pub watched: Vec<ServiceKey>,
    /// The VIPs and SYN timeouts last given.
    pub syn_rto: Vec<(std::net::SocketAddr, crate::config::SynRto)>,
    /// When the writes of weight 0 say the backend left rotation (as the XDP plane's
    /// mark does, before its write returns).
    pub out_at_ns: Option<u64>,
    /// What [`DataPlane::sticky_clients`] answers.
    pub sticky: Option<StickyCounts>,
}

fn refused() -> PlaneError {
    PlaneError::Reconcile(ReconcileError::BadDump("the test refuses".to_owned()))
}

impl FakePlane {
    pub fn calls(&self, what: &str) -> usize {
        self.log.borrow().iter().filter(|c| **c == what).count()
    }

    pub fn weight(&self, service: ServiceKey, backend: BackendId) -> Option<Option<u32>> {
        self.held.get(&(service, backend)).copied()
    }

    /// Holds `weights`; returns what changed.
    fn hold(&mut self, weights: &Weights) -> Vec<Written> {
        let mut out = Vec::new();
        for (service, dest, held) in weights.iter() {
            let from = self.held.insert((service, dest), held.weight);
            if from == Some(held.weight) {
                continue;
            }
            let to = held.weight.unwrap_or(0);
            out.push(Written {
                service,
                dest,
                from: from.map_or(to, |f| f.unwrap_or(0)),
                to,
                out_at_ns: self.out_at_ns.filter(|_| to == 0),
            });
        }
        out
    }
}

impl DataPlane for FakePlane {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn write_unit(&self) -> &'static str {
        "fake writes"
    }

    fn mode(&self) -> &str {
        "full"
    }

    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            mode: "full".to_owned(),
            ..PlaneStatus::default()
        }
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn on_stop(&self) -> &'static str {
        "nothing stays"
    }

    fn apply(&mut self, _config: &Config, weights: &Weights) -> Result<Applied, PlaneError> {
        self.log.borrow_mut().push("apply");
        if self.fail_apply {
            return Err(refused());
        }
        self.held.retain(|(k, d), _| weights.has(k, d));
        let writes = self.hold(weights).len() as u64;
        Ok(Applied {
            writes,
            ops: vec![("fake", writes)],
            refused: self.refused,
            skipped: self.skipped,
            draining: self.draining,
            notes: self.notes.clone(),
        })
    }

    fn write_weights(&mut self, weights: &Weights) -> Result<WeightWrites, PlaneError> {
        self.log.borrow_mut().push("write");
        if self.fail_writes {
            return Err(refused());
        }
        if self.refuse_writes {
            let wanted = weights
                .iter()
                .filter(|(k, d, h)| self.held.get(&(*k, *d)) != Some(&h.weight))
                .count();
            return Ok(WeightWrites {
                failed: wanted as u64,
                ..WeightWrites::default()
            });
        }
        let written = self.hold(weights);
        Ok(WeightWrites {
            ops: written.len() as u64,
            written,
            failed: self.failed_writes,
        })
    }

    fn restore(&mut self, _config: &Config, weights: &Weights) {
        self.log.borrow_mut().push("restore");
        self.held.clear();
        self.hold(weights);
    }

    fn watch(&mut self, services: &[ServiceKey]) {
        self.watched = services.to_vec();
    }

    fn set_syn_rto(&mut self, vips: &[(std::net::SocketAddr, crate::config::SynRto)]) {
        self.syn_rto = vips.to_vec();
    }

    fn event_fd(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        None
    }

    fn take_reports(&mut self, _max: usize, _out: &mut Vec<Report>) -> usize {
        0
    }

    fn events_failed(&mut self, _error: &std::io::Error) {}

    fn ticks(&self) -> Ticks {
        Ticks::default()
    }

    fn lost_events(&mut self) -> Option<Result<u64, PlaneError>> {
        self.lost.map(Ok)
    }

    fn sticky_clients(&mut self) -> Option<StickyCounts> {
        self.sticky.clone()
    }
}
