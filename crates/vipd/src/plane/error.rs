//! What can go wrong in a data plane.

use crate::{
    reconcile::ReconcileError, sockplane::SockError, watcher::WatcherError, xdp::XdpError,
};

#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error("connecting to IPVS over generic netlink")]
    Connect(#[source] vipd_ipvs::Error),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("loading the XDP program")]
    XdpLoad(#[source] XdpError),
    #[error("writing the XDP maps")]
    XdpWrite(#[source] XdpError),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error(transparent)]
    Watcher(#[from] WatcherError),
    #[error("{0}")]
    Socket(String),
    #[error("writing the socket maps")]
    SocketWrite(#[source] SockError),
    #[error("starting the socket data plane")]
    SocketStart(#[from] SockError),
    #[error("the weight writer runs on its own thread; the plane has none left")]
    WriterMoved,
    #[error("the weight writer thread is gone")]
    WriterGone,
    #[error("reading connection counts")]
    Counts(#[source] vipd_ipvs::Error),
}

impl PlaneError {
    /// The message and every cause after it, `a: b: c`.
    pub fn chain(&self) -> String {
        crate::error_line::of(self)
    }
}
