//! The control socket: `vipd status` asks the running daemon for its [`DaemonView`].
//!
//! A Unix stream socket, `vipd.sock` in the runtime directory (`/run/vipd`, mode 0700;
//! the socket 0600). Only root and the daemon's own user are answered: the peer's
//! credentials (`SO_PEERCRED`) are checked on every connection.
//!
//! Protocol ([`super::control_proto`]): one request line, one JSON answer line. Status is
//! answered from the latest published view; reloads and the operator's commands go to
//! the daemon's loop ([`Command`]) and are answered once carried out.
//! Each connection runs in its own task under a deadline, so a slow or silent client
//! never holds up another.

use std::{
    io,
    os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::AsyncReadExt,
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot, watch, Semaphore},
};

pub use super::control_line::MAX_REQUEST;
use super::{
    control_line::{Line, LineReader},
    control_proto::{
        error_line, message_line, view_line, Request, CODE_BAD_REQUEST, CODE_DENIED, CODE_TOO_LONG,
        CODE_UNAVAILABLE,
    },
    view::DaemonView,
};

pub use super::control_client::{command, query_status, ControlError};

/// Where the daemon keeps its socket unless told otherwise.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/vipd";
/// The socket's file name in the runtime directory.
pub const SOCKET_NAME: &str = "vipd.sock";
/// How long a client has to send its request, and to take the answer.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// Connections handled at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a reload or command may take in the daemon's loop before its client is told
/// so (the work still completes).
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

/// A request for the daemon's loop, with where its answer goes.
#[derive(Debug)]
pub struct Command {
    pub request: Request,
    pub reply: oneshot::Sender<CommandResult>,
}

/// What a command did, or its error code (`CODE_*`) and message.
pub type CommandResult = Result<String, (&'static str, String)>;

/// The control socket's path in `runtime_dir`.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(SOCKET_NAME)
}

/// The bound control socket, before the accept loop runs. Dropping it removes the socket
/// file, unless another daemon has since replaced it.
#[derive(Debug)]
pub struct ControlListener {
    listener: Option<std::os::unix::net::UnixListener>,
    path: PathBuf,
    /// Device and inode of the socket file this listener created.
    file_id: (u64, u64),
    /// `vipd.sock.lock`, held for the listener's life: two daemons starting at once
    /// cannot both find the socket stale and replace each other's.
    _lock: std::fs::File,
}

/// Binds the control socket at `path`, creating its directory (mode 0700) when missing
/// and refusing one that others control ([`crate::record_file::secure_dir`]).
///
/// A socket file nobody answers on (a daemon that died) is replaced; if a daemon answers,
/// this fails with [`io::ErrorKind::AddrInUse`] and "another vipd is running". Every error
/// names the path. Needs no async runtime; the accept loop is [`ControlListener::run`].
pub fn bind(path: &Path) -> io::Result<ControlListener> {
    let named = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::record_file::secure_dir(dir)?;
    }
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = crate::record_file::try_lock(Path::new(&lock_path))?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "another vipd is running: it holds {}",
                Path::new(&lock_path).display()
            ),
        )
    })?;
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
        _lock: lock,
    })
}

impl ControlListener {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers clients with the latest view, and hands other requests to `commands`
    /// (`None`: status only), until the view's sender is dropped (the daemon is shutting
    /// down); then removes the socket and returns. Must run inside a tokio runtime.
    /// Accept errors (e.g. out of file descriptors) are logged and retried.
    pub async fn run(
        mut self,
        mut view: watch::Receiver<Arc<DaemonView>>,
        commands: Option<mpsc::Sender<Command>>,
    ) -> io::Result<()> {
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
                        let commands = commands.clone();
                        tokio::spawn(async move {
                            let _slot = slot;
                            super::fault::hit(super::fault::Fault::PanicInControlTask);
                            if let Err(e) = handle(stream, snapshot, commands, euid).await {
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

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Who may ask: root, and the user the daemon runs as.
fn allowed(peer_uid: u32, euid: u32) -> bool {
    peer_uid == 0 || peer_uid == euid
}

async fn handle(
    mut stream: UnixStream,
    view: Arc<DaemonView>,
    commands: Option<mpsc::Sender<Command>>,
    euid: u32,
) -> io::Result<()> {
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
            Ok(Ok(Line::TooLong)) => error_line(
                CODE_TOO_LONG,
                &format!("request longer than {MAX_REQUEST} bytes"),
            ),
            Ok(Ok(Line::Text(line))) => match Request::parse(&line) {
                Err(e) => error_line(CODE_BAD_REQUEST, &e),
                Ok(Request::Status) => view_line(&*view),
                Ok(request) => run_command(request, commands).await,
            },
        }
    };
    super::reply::answer_and_close(&mut stream, &answer, CLIENT_DEADLINE).await
}

/// Hands `request` to the daemon's loop and waits for its answer.
async fn run_command(request: Request, commands: Option<mpsc::Sender<Command>>) -> Vec<u8> {
    let unavailable = |why: &str| error_line(CODE_UNAVAILABLE, why);
    let Some(commands) = commands else {
        return unavailable("this server answers status only");
    };
    let (reply, answer) = oneshot::channel();
    if commands.send(Command { request, reply }).await.is_err() {
        return unavailable("the daemon is stopping");
    }
    match tokio::time::timeout(COMMAND_DEADLINE, answer).await {
        Err(_) => unavailable(&format!(
            "the daemon did not finish within {}s; see its log",
            COMMAND_DEADLINE.as_secs()
        )),
        Ok(Err(_)) => unavailable("the daemon stopped before answering"),
        Ok(Ok(Ok(message))) => message_line(&message),
        Ok(Ok(Err((code, error)))) => error_line(code, &error),
    }
}

/// One line, at most [`MAX_REQUEST`] bytes with its newline; end of stream ends it too.
async fn read_request(stream: &mut UnixStream) -> io::Result<Line> {
    let mut reader = LineReader::default();
    let mut chunk = [0u8; MAX_REQUEST];
    loop {
        let n = stream.read(&mut chunk).await?;
        if let Some(line) = reader.feed(&chunk[..n]) {
            return Ok(line);
        }
    }
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
