//! The control socket: `vipd status` asks the running daemon for its [`DaemonView`].
//!
//! A Unix stream socket, `vipd.sock` in the runtime directory (`/run/vipd`, mode 0700;
//! the socket 0600). Only root and the daemon's own user are answered: the peer's
//! credentials (`SO_PEERCRED`) are checked on every connection.
//!
//! Protocol: the client sends one line, `status`; the server answers one JSON line and
//! closes: `{"ok":true,"view":{...}}`, or `{"ok":false,"error":"...","code":"..."}`.
//! Each connection runs in its own task under a deadline, so a slow or silent client
//! never holds up another.

use std::{
    io::{self, BufRead, Read, Write},
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::AsyncReadExt,
    net::{UnixListener, UnixStream},
    sync::{watch, Semaphore},
};

use super::view::DaemonView;

/// Where the daemon keeps its socket unless told otherwise.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/vipd";
/// The socket's file name in the runtime directory.
pub const SOCKET_NAME: &str = "vipd.sock";
/// The longest request line accepted, newline included.
pub const MAX_REQUEST: usize = 256;
/// How long a client has to send its request, and to take the answer.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// Connections handled at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long to drain what a client still sends after the answer.
/// The largest answer the client reads.
const MAX_REPLY: u64 = 64 << 20;

/// The control socket's path in `runtime_dir`.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(SOCKET_NAME)
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
struct Reply<V> {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    view: Option<V>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    error: Option<String>,
    /// Machine-readable error: `permission-denied`, `bad-request`, `too-long`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    code: Option<String>,
}

const CODE_DENIED: &str = "permission-denied";
const CODE_BAD_REQUEST: &str = "bad-request";
const CODE_TOO_LONG: &str = "too-long";

fn error_line(code: &str, error: &str) -> Vec<u8> {
    let reply: Reply<()> = Reply {
        ok: false,
        view: None,
        error: Some(error.to_owned()),
        code: Some(code.to_owned()),
    };
    let mut line = serde_json::to_vec(&reply).expect("a reply serializes");
    line.push(b'\n');
    line
}

fn view_line(view: &DaemonView) -> Vec<u8> {
    let reply = Reply {
        ok: true,
        view: Some(view),
        error: None,
        code: None,
    };
    let mut line = serde_json::to_vec(&reply).expect("a view serializes");
    line.push(b'\n');
    line
}

/// The bound control socket, before the accept loop runs. Dropping it removes the socket
/// file, unless another daemon has since replaced it.
#[derive(Debug)]
pub struct ControlListener {
    listener: Option<std::os::unix::net::UnixListener>,
    path: PathBuf,
    /// Device and inode of the socket file this listener created.
    file_id: (u64, u64),
}

/// Binds the control socket at `path`, creating its directory (mode 0700) when missing.
///
/// A socket file nobody answers on (a daemon that died) is replaced; if a daemon answers,
/// this fails with [`io::ErrorKind::AddrInUse`] and "another vipd is running". Every error
/// names the path. Needs no async runtime; the accept loop is [`ControlListener::run`].
pub fn bind(path: &Path) -> io::Result<ControlListener> {
    let named = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| named("creating the directory of", e))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "control socket {}: the path exists and is not a socket",
                    path.display()
                ),
            ));
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "another vipd is running: a daemon answers on {}",
                        path.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .or_else(|e| match e.kind() {
                        io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(|e| named("removing the stale control socket", e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(named("checking the existing control socket", e)),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(named("checking the control socket", e)),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| named("binding the control socket", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| named("setting the mode of the control socket", e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| named("setting up the control socket", e))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| named("checking", e))?;
    Ok(ControlListener {
        listener: Some(listener),
        path: path.to_owned(),
        file_id: (meta.dev(), meta.ino()),
    })
}

impl ControlListener {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers clients with the latest view until the view's sender is dropped (the daemon
    /// is shutting down), then removes the socket and returns. Must run inside a tokio
    /// runtime. Accept errors (e.g. out of file descriptors) are logged and retried.
    pub async fn run(mut self, mut view: watch::Receiver<Arc<DaemonView>>) -> io::Result<()> {
        let std_listener = self.listener.take().expect("run takes the listener once");
        let listener = UnixListener::from_std(std_listener)?;
        let euid = effective_uid();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            tokio::select! {
                changed = view.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            tracing::warn!("control socket: too many clients, closing one");
                            continue;
                        };
                        let snapshot = view.borrow().clone();
                        tokio::spawn(async move {
                            let _slot = slot;
                            if let Err(e) = handle(stream, snapshot, euid).await {
                                tracing::debug!("control socket client: {e}");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!("control socket {}: accept: {e}", self.path.display());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        let ours =
            std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file_id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// [`bind`] then [`ControlListener::run`].
pub async fn serve(path: PathBuf, view: watch::Receiver<Arc<DaemonView>>) -> io::Result<()> {
    bind(&path)?.run(view).await
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Who may ask: root, and the user the daemon runs as.
fn allowed(peer_uid: u32, euid: u32) -> bool {
    peer_uid == 0 || peer_uid == euid
}

async fn handle(mut stream: UnixStream, view: Arc<DaemonView>, euid: u32) -> io::Result<()> {
    let peer = stream.peer_cred()?;
    let answer = if !allowed(peer.uid(), euid) {
        error_line(
            CODE_DENIED,
            "permission denied: the vipd control socket answers root only",
        )
    } else {
        match tokio::time::timeout(CLIENT_DEADLINE, read_request(&mut stream)).await {
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "no request")),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Request::TooLong)) => error_line(
                CODE_TOO_LONG,
                &format!("request longer than {MAX_REQUEST} bytes"),
            ),
            Ok(Ok(Request::Line(line))) => match line.as_str() {
                "status" => view_line(&view),
                other => error_line(
                    CODE_BAD_REQUEST,
                    &format!("unknown request {other:?} (expected \"status\")"),
                ),
            },
        }
    };
    super::reply::answer_and_close(&mut stream, &answer, CLIENT_DEADLINE).await
}

enum Request {
    Line(String),
    TooLong,
}

/// One line, at most [`MAX_REQUEST`] bytes with its newline; end of stream ends it too.
async fn read_request(stream: &mut UnixStream) -> io::Result<Request> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; MAX_REQUEST];
    loop {
        let n = stream.read(&mut chunk).await?;
        let data = &chunk[..n];
        let end = data.iter().position(|&b| b == b'\n');
        buf.extend_from_slice(&data[..end.unwrap_or(n)]);
        if buf.len() >= MAX_REQUEST {
            return Ok(Request::TooLong);
        }
        if n == 0 || end.is_some() {
            let line = String::from_utf8_lossy(&buf);
            return Ok(Request::Line(line.trim().to_owned()));
        }
    }
}

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
    stream.write_all(b"status\n").map_err(timed_out)?;
    let mut line = Vec::new();
    io::BufReader::new((&stream).take(MAX_REPLY))
        .read_until(b'\n', &mut line)
        .map_err(timed_out)?;
    if line.is_empty() {
        return Err(ControlError::Protocol(
            "the daemon closed the connection without answering".into(),
        ));
    }
    let reply: Reply<DaemonView> = serde_json::from_slice(&line)
        .map_err(|e| ControlError::Protocol(format!("not a JSON reply: {e}")))?;
    match reply {
        Reply {
            ok: true,
            view: Some(view),
            ..
        } => Ok(view),
        Reply { ok: true, .. } => Err(ControlError::Protocol("an answer without a view".into())),
        Reply { code, error, .. } if code.as_deref() == Some(CODE_DENIED) => {
            tracing::debug!("control socket: {}", error.unwrap_or_default());
            Err(ControlError::PermissionDenied {
                path: path.to_owned(),
            })
        }
        Reply { error, .. } => Err(ControlError::Protocol(
            error.unwrap_or_else(|| "error without a message".into()),
        )),
    }
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
