//! Batches of write requests, sent pipelined by [`crate::Client::apply`].

use std::net::IpAddr;

use crate::command::Command;
use crate::dest::Destination;
use crate::error::Result;
use crate::request::Request;
use crate::service::{Service, ServiceKey};
use crate::timeouts::Timeouts;

/// An ordered list of write requests (no dumps, no flush). Each method encodes its request
/// at once, so argument errors surface here, and returns the request's index in the batch.
///
/// The kernel executes the requests in order; a failed request does not stop the ones after
/// it (a destination added to a service whose creation failed then fails with `ESRCH`).
#[derive(Debug, Clone, Default)]
pub struct Batch {
    requests: Vec<Request>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, r: Request) -> usize {
        self.requests.push(r);
        self.requests.len() - 1
    }

    /// Adds `IPVS_CMD_NEW_SERVICE`.
    pub fn new_service(&mut self, service: &Service) -> Result<usize> {
        Ok(self.push(Request::new_service(service)?))
    }

    /// Adds `IPVS_CMD_SET_SERVICE`.
    pub fn set_service(&mut self, service: &Service) -> Result<usize> {
        Ok(self.push(Request::set_service(service)?))
    }

    /// Adds `IPVS_CMD_DEL_SERVICE`.
    pub fn del_service(&mut self, key: &ServiceKey) -> Result<usize> {
        Ok(self.push(Request::del_service(key)?))
    }

    /// Adds `IPVS_CMD_NEW_DEST`.
    pub fn new_destination(&mut self, service: &ServiceKey, dest: &Destination) -> Result<usize> {
        Ok(self.push(Request::new_destination(service, dest)?))
    }

    /// Adds `IPVS_CMD_SET_DEST`.
    pub fn set_destination(&mut self, service: &ServiceKey, dest: &Destination) -> Result<usize> {
        Ok(self.push(Request::set_destination(service, dest)?))
    }

    /// Adds `IPVS_CMD_DEL_DEST`.
    pub fn del_destination(
        &mut self,
        service: &ServiceKey,
        addr: IpAddr,
        port: u16,
    ) -> Result<usize> {
        Ok(self.push(Request::del_destination(service, addr, port)?))
    }

    /// Adds `IPVS_CMD_SET_CONFIG`.
    pub fn set_timeouts(&mut self, timeouts: &Timeouts) -> Result<usize> {
        Ok(self.push(Request::set_timeouts(timeouts)?))
    }

    /// Adds `IPVS_CMD_ZERO` for one service.
    pub fn zero_service(&mut self, key: &ServiceKey) -> Result<usize> {
        Ok(self.push(Request::zero_service(key)?))
    }

    /// The requests, in order.
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// True when the batch holds no request.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

/// The outcome of one batched request.
#[derive(Debug)]
pub struct BatchEntry {
    /// Index in the [`Batch`].
    pub index: usize,
    /// Netlink sequence number it was sent with.
    pub seq: u32,
    /// Its command.
    pub command: Command,
    /// `Ok` for an ack, [`crate::Error::Kernel`] for an `NLMSG_ERROR`.
    pub result: Result<()>,
}

/// Per-request outcomes of [`crate::Client::apply`], in batch order.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// One entry per request.
    pub entries: Vec<BatchEntry>,
}

impl BatchReport {
    /// True when every request was acknowledged without error.
    pub fn is_success(&self) -> bool {
        self.entries.iter().all(|e| e.result.is_ok())
    }

    /// The entries that failed.
    pub fn failures(&self) -> impl Iterator<Item = &BatchEntry> {
        self.entries.iter().filter(|e| e.result.is_err())
    }

    /// The entry sent with sequence number `seq`.
    pub fn by_seq(&self, seq: u32) -> Option<&BatchEntry> {
        self.entries.iter().find(|e| e.seq == seq)
    }

    /// Turns the report into `Err` with the first failure, if any.
    pub fn into_result(self) -> Result<()> {
        match self.entries.into_iter().find(|e| e.result.is_err()) {
            Some(BatchEntry { result: Err(e), .. }) => Err(e),
            _ => Ok(()),
        }
    }
}
