//! The fast path, in two halves so that the write itself can run off the loop: the
//! core hands out the weights to write ([`Core::take_write`]) and hears what came of
//! them ([`Core::written`]). One batch is in flight at a time; what changes meanwhile
//! goes in the next one, with the weights as they are when it is taken, so a backend
//! that changed twice is written once, at its latest weight. [`Core::flush`] does both
//! halves on the spot, for a plane whose writes are quick.

use std::{collections::BTreeSet, net::SocketAddr};

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{write_retry_delay, Core, Measured, Retry};
use crate::{
    model::ServiceKey,
    plane::{DataPlane, PlaneError, WeightWrites, Weights},
};

/// What was handed out to be written off the loop and has no result yet: one at a time.
#[derive(Debug)]
pub(super) enum InFlight {
    /// A batch of weights.
    Write {
        /// The services it carries.
        dirty: BTreeSet<ServiceKey>,
        /// Whether it carries a retry of failed writes.
        retrying: bool,
    },
    /// A full apply (the periodic resync, see [`Core::take_resync`]).
    Apply,
}

impl Core {
    /// The weights to write now: every backend of the services whose health changed,
    /// and of the failed writes due for their retry. `None`: nothing to write, or a
    /// batch is still in flight (call [`Core::written`] with its result first).
    pub fn take_write(&mut self, now: Instant) -> Option<Weights> {
        if self.in_flight.is_some() {
            return None;
        }
        let retrying = self.retry.as_ref().is_some_and(|r| now >= r.at);
        if retrying {
            let services = self.retry.as_ref().map(|r| r.services.clone());
            self.dirty.extend(services.unwrap_or_default());
        }
        if self.dirty.is_empty() {
            return None;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let weights = self.services.weights(now, Some(&dirty));
        self.in_flight = Some(InFlight::Write { dirty, retrying });
        Some(weights)
    }

    /// Whether a batch from [`Core::take_write`] or an apply from [`Core::take_resync`]
    /// waits for its result.
    pub fn writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The result of the batch in flight, written by the plane `plane` (its name counts
    /// the writes). Measures fault-to-quarantine for every weight 0 written, against
    /// `kernel_now` (the kernel's clock, read once the write is done). A failure is
    /// retried with backoff and brings the next full apply forward to now.
    pub fn written(
        &mut self,
        result: Result<WeightWrites, PlaneError>,
        plane: &'static str,
        now: Instant,
        kernel_now: &dyn Fn() -> u64,
    ) -> Vec<Measured> {
        let (dirty, retrying) = match self.in_flight.take() {
            Some(InFlight::Write { dirty, retrying }) => (dirty, retrying),
            other => {
                self.in_flight = other;
                return Vec::new();
            }
        };
        let (written, failed) = match result {
            Ok(w) => {
                self.metrics().reconcile_ops(plane, w.ops);
                self.metrics().weight_write_failures(w.failed);
                if w.failed > 0 {
                    // A refused write (ENOENT: someone deleted the destination; ENOMEM)
                    // is retried below, and the next full apply repairs what it can.
                    self.next_resync = now;
                }
                (w.written, w.failed > 0)
            }
            Err(e) => {
                // Tried again soon (below), and the next full apply repairs the rest.
                warn!(error = %e.chain(), "writing weights failed");
                self.metrics().weight_write_failures(1);
                self.next_resync = now;
                (Vec::new(), true)
            }
        };
        if failed {
            self.schedule_retry(&dirty, now);
        } else if retrying {
            self.retry = None;
        }
        let mut measured = Vec::new();
        for w in &written {
            let service = self.services.name(&w.service);
            let backend = SocketAddr::from(w.dest);
            let fault = (w.to == 0)
                .then(|| self.effects.faults.remove(&(w.service, w.dest)))
                .flatten();
            let Some((fault_ns, cause)) = fault else {
                debug!(service, %backend, from = w.from, weight = w.to, "weight written");
                continue;
            };
            let out_ns = w.out_at_ns.unwrap_or_else(kernel_now);
            let seconds = out_ns.saturating_sub(fault_ns) as f64 / 1e9;
            self.effects.metrics.fault_to_quarantine(cause, seconds);
            info!(
                service,
                %backend,
                cause,
                from = w.from,
                weight = 0,
                fault_to_weight_ms = (seconds * 1e6).round() / 1e3,
                "quarantine written"
            );
            measured.push(Measured {
                service: w.service,
                backend: w.dest,
                cause,
                seconds,
            });
        }
        // A quarantine that wrote nothing (panic, or already at 0) measures nothing; one
        // whose write failed is measured when the retry writes it, and one decided while
        // this batch was in flight when the next batch writes it.
        if !failed {
            let next = &self.dirty;
            self.effects
                .faults
                .retain(|(k, _), _| !dirty.contains(k) || next.contains(k));
        }
        measured
    }

    /// The services of a failed batch are written again after the next backoff step.
    fn schedule_retry(&mut self, dirty: &BTreeSet<ServiceKey>, now: Instant) {
        let (mut services, attempt) = match self.retry.take() {
            Some(r) => (r.services, r.attempt + 1),
            None => (BTreeSet::new(), 1),
        };
        services.extend(dirty.iter().copied());
        let delay = write_retry_delay(attempt);
        debug!(
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            "weight write failed"
        );
        self.retry = Some(Retry {
            services,
            attempt,
            at: now + delay,
        });
    }

    /// Both halves on the spot: writes the weights that changed through `plane` and
    /// takes the result (see [`Core::written`]).
    pub fn flush(
        &mut self,
        plane: &mut dyn DataPlane,
        now: Instant,
        kernel_now: &dyn Fn() -> u64,
    ) -> Vec<Measured> {
        let Some(weights) = self.take_write(now) else {
            return Vec::new();
        };
        let result = plane.write_weights(&weights);
        self.written(result, plane.name(), now, kernel_now)
    }
}
