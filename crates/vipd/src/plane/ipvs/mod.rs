//! The IPVS data plane: the kernel's IPVS table over generic netlink (full reconciles
//! through [`crate::reconcile`], single weights on the fast path) and the eBPF
//! connection watcher as its event source.

pub(crate) mod conntrack;
pub mod features;
mod full_apply;
mod retry;
mod syn_rto;
#[cfg(test)]
mod tests;
mod udp_watch;
mod watcher;
mod weights;

use std::{net::SocketAddr, os::fd::OwnedFd, path::PathBuf, time::Duration};

use tokio::time::Instant;
use tracing::{debug, warn};
use vipd_ipvs::Client;

pub use full_apply::SharedApply;
pub use udp_watch::{Finding, UdpWatch, POLL as UDP_POLL};
pub use watcher::Watcher;
pub use weights::{SharedTable, WeightWriter};

use super::{
    Applied, ConnCount, DataPlane, PlaneError, PlaneStatus, Ticks, UdpFinding, WeightSink,
    WeightWrites, Weights, Written,
};
use crate::{
    config::Config,
    model::{BackendId, Counters, Report, ServiceKey, Vip},
    reconcile::{self, DesiredState, WeightOverrides},
    watcher::Flavour,
};

/// The IPVS key of a service.
pub fn ipvs_key(key: ServiceKey) -> vipd_ipvs::ServiceKey {
    reconcile::desired::ipvs_key(&key.into())
}

/// What the reconciler must write instead of the config's weights: every held weight
/// that differs from the configured one, and the backends held out of IPVS.
pub fn overrides(weights: &Weights) -> WeightOverrides {
    let mut o = WeightOverrides::default();
    for (key, id, held) in weights.iter() {
        match held.weight {
            None => o.set_absent(ipvs_key(key), id),
            Some(w) if w != held.configured => o.set(ipvs_key(key), id, w),
            Some(_) => {}
        }
    }
    o
}

pub struct IpvsPlane {
    /// The fast path, until [`DataPlane::weight_sink`] hands it to the writer thread.
    writer: Option<WeightWriter>,
    /// What the fast path knows of the kernel, shared with it.
    table: SharedTable,
    /// For dumps (connection counts), apart from the fast path's socket.
    client: Client,
    /// Releases the tracking entries of handshakes caught on a quarantined backend
    /// (`None` if the kernel has no ctnetlink: nothing to release then).
    conntrack: Option<conntrack::Conntrack>,
    /// The full apply, shared with the writer.
    full: SharedApply,
    watcher: Watcher,
}

/// The longest wait for the kernel's answer to a weight write.
pub const WEIGHT_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl IpvsPlane {
    /// Connects to IPVS, then loads the connection watcher: resolving IPVS's
    /// generic-netlink family makes the kernel load ip_vs if nothing has yet (a daemon
    /// started at boot), and the watcher's IPVS hooks need the module.
    pub fn start(state_file: PathBuf, probes: Flavour, now: Instant) -> Result<Self, PlaneError> {
        let connect = || -> Result<Client, PlaneError> {
            let mut client = Client::connect().map_err(PlaneError::Connect)?;
            // A kernel that does not answer must not hold the writer (and every
            // quarantine behind it) or a dump for the library's default.
            client
                .set_timeout(Some(WEIGHT_WRITE_TIMEOUT))
                .map_err(PlaneError::Connect)?;
            Ok(client)
        };
        let table = SharedTable::default();
        let full = SharedApply::new(state_file);
        let conntrack = conntrack::Conntrack::open()
            .map_err(|e| debug!("no ctnetlink ({e}): handshakes caught on a quarantined backend keep their tracking entries"))
            .ok();
        Ok(IpvsPlane {
            writer: Some(WeightWriter::new(connect()?, table.clone(), full.clone())),
            table,
            client: connect()?,
            conntrack,
            full,
            watcher: Watcher::start(probes, now),
        })
    }
}

impl IpvsPlane {
    /// A TCP backend just went to weight 0: the connections still in their handshake
    /// with it lose their tracking entries, so that IPVS sends their next SYN to a live
    /// backend at once instead of dropping it (see [`conntrack`]).
    fn release_handshakes(&mut self, vip: SocketAddr, backend: SocketAddr) {
        let Some(ct) = self.conntrack.as_mut() else {
            return;
        };
        let clients = self.watcher.handshaking(vip, backend);
        if clients.is_empty() {
            return;
        }
        match ct.release(libc::IPPROTO_TCP as u8, vip, &clients) {
            Ok(r) => debug!(
                %vip,
                %backend,
                deleted = r.deleted,
                absent = r.absent,
                "released the tracking entries of handshakes caught on the quarantined backend"
            ),
            Err(e) => {
                warn!(%vip, %backend, "releasing the tracking entries of {} handshakes: {e}", clients.len())
            }
        }
    }
}

impl DataPlane for IpvsPlane {
    fn name(&self) -> &'static str {
        "ipvs"
    }

    fn write_unit(&self) -> &'static str {
        "netlink writes"
    }

    fn mode(&self) -> &str {
        self.watcher.mode()
    }

    fn status(&self) -> PlaneStatus {
        PlaneStatus {
            mode: self.watcher.mode().to_owned(),
            hooks: self.watcher.hooks().to_owned(),
            sysctls: crate::reach::sysctl::current(),
            counters: self.watcher.counters(),
            tracked: self.watcher.tracked(),
        }
    }

    fn counters(&self) -> Counters {
        self.watcher.counters()
    }

    fn on_stop(&self) -> &'static str {
        "the kernel's IPVS state stays in place"
    }

    fn apply(&mut self, config: &Config, weights: &Weights) -> Result<Applied, PlaneError> {
        self.full.run(config, weights, &self.table)
    }

    fn write_weights(&mut self, weights: &Weights) -> Result<WeightWrites, PlaneError> {
        let w = match self.writer.as_mut() {
            Some(writer) => writer.write(weights)?,
            None => return Err(PlaneError::WriterMoved),
        };
        self.weights_written(&w.written);
        Ok(w)
    }

    fn weight_sink(&mut self) -> Option<Box<dyn WeightSink>> {
        self.writer
            .take()
            .map(|w| Box::new(w) as Box<dyn WeightSink>)
    }

    fn weights_written(&mut self, written: &[Written]) {
        for w in written {
            match w.service.vip() {
                Some(vip) if vip.is_udp() && w.from == 0 && w.to > 0 => {
                    self.watcher.rejoined(vip.addr, SocketAddr::from(w.dest));
                }
                Some(vip) if !vip.is_udp() && w.from > 0 && w.to == 0 => {
                    self.release_handshakes(vip.addr, SocketAddr::from(w.dest));
                }
                _ => {}
            }
        }
    }

    fn restore(&mut self, config: &Config, weights: &Weights) {
        self.table.reset(weights, DesiredState::from_config(config));
    }

    fn watch(&mut self, services: &[ServiceKey]) {
        self.watcher.watch(services);
    }

    fn set_syn_rto(&mut self, vips: &[(SocketAddr, crate::config::SynRto)]) {
        self.watcher.set_syn_rto(vips);
    }

    fn event_fd(&self) -> Option<std::io::Result<OwnedFd>> {
        self.watcher.event_fd()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.watcher.next_deadline()
    }

    fn take_reports(&mut self, max: usize, out: &mut Vec<Report>) -> usize {
        self.watcher.take_reports(max, out)
    }

    fn events_failed(&mut self, error: &std::io::Error) {
        self.watcher.failed(error);
    }

    fn ticks(&self) -> Ticks {
        self.watcher.ticks()
    }

    fn poll_udp(&mut self, window: &dyn Fn(Vip) -> Option<Duration>) -> Vec<UdpFinding> {
        self.watcher.poll_udp(window)
    }

    fn maintain(&mut self, now: Instant) -> bool {
        self.watcher.update_syn_rto();
        self.watcher.retry(now)
    }

    fn lost_events(&mut self) -> Option<Result<u64, PlaneError>> {
        self.watcher.lost_events()
    }

    fn connection_counts(
        &mut self,
        service: &ServiceKey,
    ) -> Option<Result<Vec<ConnCount>, PlaneError>> {
        let dests = self.client.destinations(&ipvs_key(*service));
        Some(dests.map_err(PlaneError::Counts).map(|dests| {
            dests
                .into_iter()
                .map(|d| ConnCount {
                    backend: BackendId::new(d.addr, d.port),
                    active: d.active_conns,
                    inactive: d.inactive_conns,
                })
                .collect()
        }))
    }
}
