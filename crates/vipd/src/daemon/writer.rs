//! The writer: a thread of its own that owns the plane's kernel writes (for IPVS, the
//! fast path's netlink socket and the periodic full apply) so that a kernel slow to
//! answer never holds the daemon's loop, and with it the next failure event and
//! quarantine decision. The loop hands it one job at a time ([`Writer::submit`]) and
//! takes the result as one more event ([`Writer::done`]); the core coalesces what
//! changes meanwhile into the next batch.

use std::{io, sync::mpsc as std_mpsc, thread};

use tokio::sync::mpsc;

use crate::{
    config::Config,
    plane::{Applied, PlaneError, WeightSink, WeightWrites, Weights},
};

pub type WriteResult = Result<WeightWrites, PlaneError>;

/// What the writer is to do.
pub enum Job {
    /// Write these weights (the fast path).
    Write(Weights),
    /// A full apply of this config with these weights on top.
    Apply(Box<Config>, Weights),
}

/// What came of a [`Job`].
pub enum Done {
    Written(WriteResult),
    Applied(Result<Applied, PlaneError>),
}

pub struct Writer {
    jobs: std_mpsc::Sender<Job>,
    results: mpsc::UnboundedReceiver<Done>,
}

impl Writer {
    /// Starts the thread that runs `sink`.
    pub fn spawn(mut sink: Box<dyn WeightSink>) -> io::Result<Writer> {
        let (jobs, job_rx) = std_mpsc::channel::<Job>();
        let (result_tx, results) = mpsc::unbounded_channel();
        thread::Builder::new()
            .name("vipd-writer".to_owned())
            .spawn(move || {
                while let Ok(job) = job_rx.recv() {
                    let done = match job {
                        Job::Write(weights) => Done::Written(sink.write(&weights)),
                        Job::Apply(config, weights) => Done::Applied(sink.apply(&config, &weights)),
                    };
                    if result_tx.send(done).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Writer { jobs, results })
    }

    /// Runs `job` on the writer's thread; the result comes from [`Writer::done`].
    pub fn submit(&self, job: Job) -> Result<(), PlaneError> {
        self.jobs.send(job).map_err(|_| PlaneError::WriterGone)
    }

    /// The result of the job submitted (cancel-safe: usable in `select!`).
    pub async fn done(&mut self) -> Done {
        self.results
            .recv()
            .await
            .unwrap_or(Done::Written(Err(PlaneError::WriterGone)))
    }
}
