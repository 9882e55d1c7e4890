//! Executing a plan: every op is encoded into one [`Batch`] before anything is sent (so a
//! value the ABI cannot carry stops the apply with nothing written), then the batch goes
//! out pipelined and each op's outcome is reported by the op it belongs to.

use serde::{Deserialize, Serialize};
use vipd_ipvs::{Batch, Client};

use super::{error::ReconcileError, op::Op};

/// A plan's ops, encoded and ready to send.
#[derive(Debug)]
pub struct Encoded<'a> {
    ops: &'a [Op],
    batch: Batch,
}

impl Encoded<'_> {
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// One op the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpFailure {
    /// The op, as [`Op`]'s `Display` shows it.
    pub op: String,
    /// The kernel's errno, when it sent one.
    pub errno: Option<i32>,
    /// The whole error message.
    pub error: String,
}

/// What sending a plan did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests sent (each is one netlink write, whether the kernel took it or not).
    pub writes: usize,
    pub failures: Vec<OpFailure>,
    /// Indexes (in the plan) of the ops that failed.
    pub failed: Vec<usize>,
}

/// Encodes every op; the first that cannot be encoded is the error.
pub fn encode(ops: &[Op]) -> Result<Encoded<'_>, ReconcileError> {
    let mut batch = Batch::new();
    for op in ops {
        op.encode(&mut batch)
            .map_err(|source| ReconcileError::Encode {
                op: op.to_string(),
                source,
            })?;
    }
    Ok(Encoded { ops, batch })
}

/// Sends the encoded ops through one pipelined batch.
pub fn send(client: &mut Client, encoded: &Encoded<'_>) -> Result<Outcome, ReconcileError> {
    if encoded.is_empty() {
        return Ok(Outcome::default());
    }
    let report = client.apply(&encoded.batch).map_err(ReconcileError::Send)?;
    let mut out = Outcome {
        writes: report.entries.len(),
        ..Outcome::default()
    };
    for entry in report.failures() {
        let Err(e) = &entry.result else { continue };
        let op = encoded
            .ops
            .get(entry.index)
            .map_or_else(|| format!("request {}", entry.index), ToString::to_string);
        let hint = e
            .errno()
            .and_then(|errno| encoded.ops.get(entry.index)?.refusal_hint(errno))
            .map(|h| format!(": {h}"))
            .unwrap_or_default();
        out.failed.push(entry.index);
        out.failures.push(OpFailure {
            error: format!("{op}: {e}{hint}"),
            op,
            errno: e.errno(),
        });
    }
    Ok(out)
}
