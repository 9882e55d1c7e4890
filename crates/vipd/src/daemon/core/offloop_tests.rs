//! Weights written off the loop (the writer thread, [`crate::daemon::writer`]): a write
//! the kernel takes 2 s to answer delays no decision, and what changes meanwhile goes
//! in the next batch at its latest weight.

use std::{
    collections::BTreeMap,
    sync::mpsc::{channel, Receiver, Sender},
    time::Duration,
};

use tokio::time::Instant;

use super::tests::{b, refused, state, web, web_with, Rig};
use crate::{
    config::Config,
    daemon::writer::{Done, Job, Writer},
    model::{BackendId, ServiceKey},
    plane::{Applied, PlaneError, WeightSink, WeightWrites, Weights, Written},
};

const SEC: u64 = 1_000_000_000;

/// A fast path whose every write waits until the test opens the gate, as a kernel
/// slow to answer would; it tells the test what it was given first.
struct SlowSink {
    given: Sender<Weights>,
    gate: Receiver<()>,
    held: BTreeMap<(ServiceKey, BackendId), u32>,
}

impl WeightSink for SlowSink {
    fn apply(&mut self, _config: &Config, weights: &Weights) -> Result<Applied, PlaneError> {
        self.given.send(weights.clone()).unwrap();
        self.gate.recv().unwrap();
        Ok(Applied::default())
    }

    fn write(&mut self, weights: &Weights) -> Result<WeightWrites, PlaneError> {
        self.given.send(weights.clone()).unwrap();
        self.gate.recv().unwrap();
        let mut written = Vec::new();
        for (service, dest, held) in weights.iter() {
            let to = held.weight.unwrap_or(0);
            let from = self
                .held
                .insert((service, dest), to)
                .unwrap_or(held.configured);
            if from != to {
                written.push(Written {
                    service,
                    dest,
                    from,
                    to,
                    out_at_ns: None,
                });
            }
        }
        Ok(WeightWrites {
            ops: written.len() as u64,
            written,
            failed: 0,
        })
    }
}

/// The result of the write batch on `writer`.
async fn written(writer: &mut Writer) -> Result<WeightWrites, PlaneError> {
    match writer.done().await {
        Done::Written(r) => r,
        Done::Applied(_) => panic!("an apply's result, not a write's"),
    }
}

/// A writer running a [`SlowSink`]: what it is given, and the gate that lets one job
/// finish.
fn slow_writer() -> (Writer, Receiver<Weights>, Sender<()>) {
    let (given_tx, given) = channel();
    let (gate, gate_rx) = channel();
    let writer = Writer::spawn(Box::new(SlowSink {
        given: given_tx,
        gate: gate_rx,
        held: BTreeMap::new(),
    }))
    .unwrap();
    (writer, given, gate)
}

fn weight(w: &Weights, n: u8) -> Option<u32> {
    w.iter()
        .find(|(_, d, _)| *d == b(n))
        .and_then(|(_, _, h)| h.weight)
}

#[tokio::test(start_paused = true)]
async fn a_write_that_takes_2_s_does_not_delay_the_next_quarantine() {
    let mut r = Rig::new(&web_with(4));
    let (mut writer, given, gate) = slow_writer();

    let t0 = Instant::now();
    r.core.on_report(&refused(b(1), SEC), t0);
    r.core.tick(t0);
    writer
        .submit(Job::Write(r.core.take_write(t0).unwrap()))
        .unwrap();
    // The writer thread has the batch and waits on the kernel.
    let first = given.recv().unwrap();
    assert_eq!(weight(&first, 1), Some(0));
    assert!(r.core.writing());

    // Backend 2 fails while that write is outstanding: decided at once, at t0.
    r.core.on_report(&refused(b(2), SEC + 1), t0);
    r.core.tick(t0);
    assert_eq!(Instant::now(), t0);
    assert_eq!(r.state(2), state("quarantined", 0));
    // One batch in flight at a time: backend 2's weight waits for the next one.
    assert!(r.core.take_write(t0).is_none());

    // The kernel answers 2 s later.
    tokio::time::advance(Duration::from_secs(2)).await;
    gate.send(()).unwrap();
    let measured = r
        .core
        .written(written(&mut writer).await, "fake", Instant::now(), &|| {
            3 * SEC
        });
    assert_eq!(measured.len(), 1);
    assert_eq!(measured[0].backend, b(1));
    assert!(!r.core.writing());

    // The next batch carries backend 2 at its latest weight.
    let second = r.core.take_write(Instant::now()).unwrap();
    assert_eq!(weight(&second, 2), Some(0));
    writer.submit(Job::Write(second)).unwrap();
    given.recv().unwrap();
    gate.send(()).unwrap();
    let measured = r
        .core
        .written(written(&mut writer).await, "fake", Instant::now(), &|| {
            3 * SEC
        });
    assert_eq!(measured.len(), 1);
    assert_eq!(measured[0].backend, b(2));
    assert!((measured[0].seconds - 2.0).abs() < 1e-6, "{measured:?}");
    assert!(r.core.take_write(Instant::now()).is_none());
    assert_eq!(web(), measured[0].service);
}

/// Four backends, the first refused: its batch handed out and in flight.
fn backend_1_refused() -> (Rig, Weights) {
    let mut r = Rig::new(&web_with(4));
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    r.core.tick(Instant::now());
    let batch = r.core.take_write(Instant::now()).unwrap();
    (r, batch)
}

#[tokio::test(start_paused = true)]
async fn a_periodic_apply_waits_for_the_write_in_flight() {
    let (mut r, batch) = backend_1_refused();
    tokio::time::advance(super::RESYNC).await;
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 1, "only the start's apply");
    let result = Ok(WeightWrites {
        ops: 0,
        written: Vec::new(),
        failed: 0,
    });
    drop(batch);
    r.core.written(result, "fake", Instant::now(), &|| 0);
    r.core.maintain(&mut r.plane, Instant::now());
    assert_eq!(r.plane.calls("apply"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_due_while_a_batch_is_in_flight_waits_for_its_result() {
    let (mut r, batch) = backend_1_refused();
    let failed = Ok(WeightWrites {
        failed: 1,
        ..WeightWrites::default()
    });
    r.core.written(failed, "fake", Instant::now(), &|| 0);
    let retry_at = r.core.next_deadline().unwrap();
    assert!(retry_at <= Instant::now() + super::WRITE_RETRY_FIRST);
    // Another change goes out before the retry is due, and is still in flight then.
    r.core.on_report(&refused(b(2), SEC), Instant::now());
    r.core.tick(Instant::now());
    drop(batch);
    let second = r.core.take_write(Instant::now()).unwrap();
    tokio::time::advance(super::WRITE_RETRY_FIRST).await;
    // No deadline in the past to spin on: the loop waits for the result.
    assert!(r.core.next_deadline().is_none_or(|d| d > Instant::now()));
    assert!(r.core.take_write(Instant::now()).is_none());
    drop(second);
    r.core
        .written(Ok(WeightWrites::default()), "fake", Instant::now(), &|| 0);
    // Now the retry is due, and taken.
    assert!(r.core.next_deadline().is_some_and(|d| d <= Instant::now()));
    assert!(r.core.take_write(Instant::now()).is_some());
}

/// The periodic resync runs on the writer too: handed out when due, nothing else handed
/// out while the kernel takes 2 s over it, a failure decided meanwhile at once, and its
/// weight written by the next batch.
#[tokio::test(start_paused = true)]
async fn a_resync_that_takes_2_s_on_the_writer_delays_no_decision() {
    let mut r = Rig::new(&web_with(4));
    let (mut writer, given, gate) = slow_writer();
    assert!(r.core.take_resync(Instant::now()).is_none(), "not due yet");
    tokio::time::advance(super::RESYNC).await;
    let t0 = Instant::now();
    let (config, weights) = r.core.take_resync(t0).unwrap();
    writer
        .submit(Job::Apply(Box::new(config), weights))
        .unwrap();
    given.recv().unwrap();
    // The loop's own housekeeping does not apply beside it.
    r.core.maintain(&mut r.plane, t0);
    assert_eq!(r.plane.calls("apply"), 1, "only the start's apply");

    r.core.on_report(&refused(b(1), SEC), t0);
    r.core.tick(t0);
    assert_eq!(r.state(1), state("quarantined", 0));
    assert!(r.core.take_write(t0).is_none(), "one job at a time");

    tokio::time::advance(Duration::from_secs(2)).await;
    gate.send(()).unwrap();
    match writer.done().await {
        Done::Applied(result) => r.core.resynced(result, Instant::now()),
        Done::Written(_) => panic!("a write's result, not the apply's"),
    }
    assert!(!r.core.writing());
    let batch = r.core.take_write(Instant::now()).unwrap();
    assert_eq!(weight(&batch, 1), Some(0));
    // The next resync is a full interval away.
    drop(batch);
    r.core
        .written(Ok(WeightWrites::default()), "fake", Instant::now(), &|| 0);
    assert!(r.core.take_resync(Instant::now()).is_none());
}
