//! What a health transition sets off: a log line, a metric, a probe to start, and the
//! fault time of a quarantine whose weight write is still to come.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tracing::{info, warn};

use super::super::{metrics::Metrics, services::ServiceRt};
use crate::{
    config::UdpProbe,
    health::{Signal, State, Transition},
    model::{BackendId, Report, ServiceKey},
};

/// A probe the health machine asks for before re-admitting a backend; the shell starts
/// it and feeds the result back as a check result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRequest {
    pub service: ServiceKey,
    pub dest: BackendId,
    pub timeout: Duration,
    /// The UDP service's probe; `None`: a TCP connect.
    pub udp: Option<UdpProbe>,
}

/// The effects of transitions, gathered for the core and the shell.
pub(super) struct Effects {
    pub metrics: Arc<Metrics>,
    /// Quarantines waiting for their weight write: the kernel time the fault began, and
    /// its cause.
    pub faults: HashMap<(ServiceKey, BackendId), (u64, &'static str)>,
    /// Probes not yet started.
    pub probes: Vec<ProbeRequest>,
}

impl Effects {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Effects {
            metrics,
            faults: HashMap::new(),
            probes: Vec::new(),
        }
    }

    /// Logs a transition of service `s` and asks for what it needs (a probe, a
    /// latency measurement from `report`, the outcome that caused it).
    pub fn transition(
        &mut self,
        s: &ServiceRt,
        key: ServiceKey,
        t: &Transition,
        report: Option<&Report>,
    ) {
        let name = s.name.as_str();
        match t {
            Transition::Quarantined {
                dest,
                ejections,
                duration,
                cause,
            } => {
                let backend = dest.to_string();
                let cause_name = cause.as_str();
                self.metrics.quarantine(name, &backend, cause_name);
                if let Some(r) = report {
                    let fault_ns = match cause {
                        Signal::SynRetransmit | Signal::Silent => r.syn_ns,
                        _ => r.ts_ns,
                    };
                    self.faults.insert((key, *dest), (fault_ns, cause_name));
                }
                let client = report
                    .and_then(|r| r.client)
                    .map_or_else(|| "-".to_owned(), |c| c.to_string());
                warn!(
                    service = name,
                    backend,
                    state = State::Quarantined.as_str(),
                    cause = cause_name,
                    client,
                    ejections,
                    duration = %crate::config::format_duration(*duration),
                    "quarantined"
                );
            }
            Transition::HeldInRotation { dest, cause } => warn!(
                service = name,
                backend = %dest,
                state = State::Failing.as_str(),
                cause = cause.as_str(),
                "failing, but kept in rotation by the ejection limit"
            ),
            Transition::ProbeWanted { dest } => {
                info!(
                    service = name,
                    backend = %dest,
                    state = State::Probing.as_str(),
                    "probing before re-admission"
                );
                self.probes.push(ProbeRequest {
                    service: key,
                    dest: *dest,
                    timeout: s.probe_timeout,
                    udp: s.udp_probe.clone(),
                });
            }
            Transition::Readmitted { dest } => info!(
                service = name,
                backend = %dest,
                state = s.health.state(dest).map_or("", State::as_str),
                "re-admitted"
            ),
            Transition::Recovered { dest } => info!(
                service = name,
                backend = %dest,
                state = State::Healthy.as_str(),
                "back at full weight"
            ),
            Transition::PanicEntered => warn!(
                service = name,
                panic = true,
                "PANIC: too few healthy backends; every backend is in rotation at its configured weight"
            ),
            Transition::PanicExited => info!(service = name, panic = false, "panic over"),
        }
    }
}
