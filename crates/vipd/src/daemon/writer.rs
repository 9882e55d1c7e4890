//! The weight writer: a thread of its own that owns the plane's fast path (for IPVS,
//! its netlink socket) so that a kernel slow to answer a write never holds the daemon's
//! loop, and with it the next failure event and quarantine decision. The loop hands it
//! one batch at a time ([`Writer::submit`]) and takes the result as one more event
//! ([`Writer::done`]); the core coalesces what changes meanwhile into the next batch.

use std::{io, sync::mpsc as std_mpsc, thread};

use tokio::sync::mpsc;

use crate::plane::{PlaneError, WeightSink, WeightWrites, Weights};

pub type WriteResult = Result<WeightWrites, PlaneError>;

pub struct Writer {
    jobs: std_mpsc::Sender<Weights>,
    results: mpsc::UnboundedReceiver<WriteResult>,
}

impl Writer {
    /// Starts the thread that runs `sink`.
    pub fn spawn(mut sink: Box<dyn WeightSink>) -> io::Result<Writer> {
        let (jobs, job_rx) = std_mpsc::channel::<Weights>();
        let (result_tx, results) = mpsc::unbounded_channel();
        thread::Builder::new()
            .name("vipd-writer".to_owned())
            .spawn(move || {
                while let Ok(weights) = job_rx.recv() {
                    if result_tx.send(sink.write(&weights)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Writer { jobs, results })
    }

    /// Writes `weights` on the writer's thread; the result comes from [`Writer::done`].
    pub fn submit(&self, weights: Weights) -> Result<(), PlaneError> {
        self.jobs.send(weights).map_err(|_| PlaneError::WriterGone)
    }

    /// The result of the next batch submitted (cancel-safe: usable in `select!`).
    pub async fn done(&mut self) -> WriteResult {
        self.results
            .recv()
            .await
            .unwrap_or(Err(PlaneError::WriterGone))
    }
}
