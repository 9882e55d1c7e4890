//! The control socket's client side: what `vipd status`, `vipd reload` and the
//! operator's commands use to reach the running daemon.

use std::{
    io::{self, BufRead, Read, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    control_proto::{Reply, Request, CODE_DENIED},
    view::DaemonView,
};

/// The largest answer read.
const MAX_REPLY: u64 = 64 << 20;

/// Why `vipd status` could not get the daemon's view.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No socket, or nothing listening on it.
    #[error("no vipd daemon at {} (not running)", path.display())]
    NotRunning { path: PathBuf },
    #[error(
        "permission denied on the vipd control socket {}: it needs root (run with sudo)",
        path.display()
    )]
    PermissionDenied { path: PathBuf },
    #[error("vipd control socket: bad answer: {0}")]
    Protocol(String),
    /// The daemon answered with an error (`code` is one of the `CODE_*` constants).
    #[error("{error}")]
    Refused { code: String, error: String },
    #[error("vipd control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Asks the daemon listening at `path` for its view; blocking, each step bounded by
/// `timeout`.
pub fn query_status(path: &Path, timeout: Duration) -> Result<DaemonView, ControlError> {
    let reply: Reply<DaemonView> = exchange(path, &Request::Status, timeout)?;
    reply
        .view
        .ok_or_else(|| ControlError::Protocol("an answer without a view".into()))
}

/// Sends a reload or an operator's command to the daemon at `path` and returns what it
/// did; blocking, each step bounded by `timeout`.
pub fn command(path: &Path, request: &Request, timeout: Duration) -> Result<String, ControlError> {
    let reply: Reply<serde::de::IgnoredAny> = exchange(path, request, timeout)?;
    Ok(reply.message.unwrap_or_default())
}

/// One request, one answer; an `ok: false` answer is an error.
fn exchange<V: serde::de::DeserializeOwned>(
    path: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Reply<V>, ControlError> {
    let io_err = |source: io::Error| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => {
            return Err(match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ControlError::NotRunning {
                        path: path.to_owned(),
                    }
                }
                io::ErrorKind::PermissionDenied => ControlError::PermissionDenied {
                    path: path.to_owned(),
                },
                _ if e.raw_os_error() == Some(libc::ENOTDIR) => ControlError::NotRunning {
                    path: path.to_owned(),
                },
                _ => io_err(e),
            });
        }
    };
    let timeout = (!timeout.is_zero()).then_some(timeout);
    stream.set_read_timeout(timeout).map_err(io_err)?;
    stream.set_write_timeout(timeout).map_err(io_err)?;
    let timed_out = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io_err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the daemon did not answer in time",
        )),
        _ => io_err(e),
    };
    stream.write_all(&request.to_line()).map_err(timed_out)?;
    let mut line = Vec::new();
    io::BufReader::new((&stream).take(MAX_REPLY))
        .read_until(b'\n', &mut line)
        .map_err(timed_out)?;
    if line.is_empty() {
        return Err(ControlError::Protocol(
            "the daemon closed the connection without answering".into(),
        ));
    }
    let reply: Reply<V> = serde_json::from_slice(&line)
        .map_err(|e| ControlError::Protocol(format!("not a JSON reply: {e}")))?;
    if reply.ok {
        return Ok(reply);
    }
    let error = reply
        .error
        .unwrap_or_else(|| "error without a message".into());
    match reply.code.as_deref() {
        Some(CODE_DENIED) => {
            tracing::debug!("control socket: {error}");
            Err(ControlError::PermissionDenied {
                path: path.to_owned(),
            })
        }
        Some(code) => Err(ControlError::Refused {
            code: code.to_owned(),
            error,
        }),
        None => Err(ControlError::Protocol(error)),
    }
}
