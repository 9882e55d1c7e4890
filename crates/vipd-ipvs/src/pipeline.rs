//! Pipelined execution of a [`Batch`]: many requests per datagram, acks matched back by
//! sequence number.

use crate::batch::{Batch, BatchEntry, BatchReport};
use crate::client::Client;
use crate::command::Operation;
use crate::error::{Error, Result};
use crate::frame::{Frame, Frames};

impl Client {
    /// Sends a batch pipelined: up to the batch window of requests (each with `NLM_F_ACK` and
    /// its own sequence number) go out in one datagram, then their acks are read, and so on.
    /// Per-request kernel errors are reported in the [`BatchReport`] by sequence number and
    /// batch index. Socket errors (including `ENOBUFS` if acks overflowed the receive
    /// buffer, see [`Client::set_batch_window`]) and undecodable datagrams abort with `Err`;
    /// requests already sent may then have been applied.
    pub fn apply(&mut self, batch: &Batch) -> Result<BatchReport> {
        let mut report = BatchReport {
            entries: Vec::with_capacity(batch.len()),
        };
        let window = self.batch_window.max(1);
        for (chunk_no, chunk) in batch.requests().chunks(window).enumerate() {
            let base = chunk_no * window;
            let first_seq = self.seq.wrapping_add(1);
            let mut datagram = Vec::new();
            let mut pending: Vec<Option<Result<()>>> = Vec::with_capacity(chunk.len());
            let mut seqs = Vec::with_capacity(chunk.len());
            for req in chunk {
                let seq = self.next_seq();
                datagram.extend_from_slice(&req.to_netlink_message(self.family_id, seq));
                seqs.push(seq);
                pending.push(None);
            }
            self.sock.send(&datagram)?;
            let mut outstanding = chunk.len();
            while outstanding > 0 {
                let datagram = self.sock.recv()?;
                for frame in Frames::new(datagram) {
                    let frame = frame?;
                    let (header, result) = match frame {
                        Frame::Ack { header } => (header, Ok(())),
                        Frame::Error {
                            header,
                            errno,
                            message,
                        } => (header, Err((errno, message))),
                        _ => continue,
                    };
                    let Some(i) = slot(first_seq, &seqs, header.seq) else {
                        continue;
                    };
                    let (Some(entry), Some(req)) = (pending.get_mut(i), chunk.get(i)) else {
                        continue;
                    };
                    if entry.is_none() {
                        *entry = Some(result.map_err(|(errno, message)| Error::Kernel {
                            errno,
                            op: Operation::Ipvs(req.command()),
                            message,
                        }));
                        outstanding -= 1;
                    }
                }
            }
            for (i, (req, result)) in chunk.iter().zip(pending).enumerate() {
                let seq = seqs.get(i).copied().unwrap_or_default();
                report.entries.push(BatchEntry {
                    index: base + i,
                    seq,
                    command: req.command(),
                    result: result.unwrap_or(Err(Error::MissingAck { seq })),
                });
            }
        }
        Ok(report)
    }
}

/// Position of `seq` among the consecutive sequence numbers of a window.
fn slot(first_seq: u32, seqs: &[u32], seq: u32) -> Option<usize> {
    let i = usize::try_from(seq.wrapping_sub(first_seq)).ok()?;
    (seqs.get(i) == Some(&seq)).then_some(i)
}
