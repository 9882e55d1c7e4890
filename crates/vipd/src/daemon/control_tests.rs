use tokio::{io::AsyncWriteExt, task::JoinHandle};

use super::*;
use crate::daemon::control_proto::Reply;
use crate::daemon::view::{BackendView, ServiceView, WatcherView};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vipd-ctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn sample_view(pid: u32) -> DaemonView {
    DaemonView {
        pid,
        version: "0.1.0".into(),
        config: "/etc/vipd/vipd.toml".into(),
        started_unix_ms: 1_000,
        config_loaded_unix_ms: 2_000,
        dataplane: "ipvs".into(),
        last_reload: None,
        sysctls: Vec::new(),
        watcher: WatcherView {
            mode: "full".into(),
            lost_events: 3,
            ..WatcherView::default()
        },
        services: vec![ServiceView {
            name: "web".into(),
            key: "198.18.0.10:80/tcp".into(),
            scheduler: "wlc".into(),
            panic: false,
            backends: vec![BackendView {
                addr: "198.18.1.2:8080".into(),
                state: "healthy".into(),
                config_weight: 100,
                weight: 100,
                ..BackendView::default()
            }],
        }],
        dns: vec![],
    }
}

fn start(
    path: &Path,
    view: DaemonView,
) -> (watch::Sender<Arc<DaemonView>>, JoinHandle<io::Result<()>>) {
    let listener = bind(path).expect("bind");
    let (tx, rx) = watch::channel(Arc::new(view));
    (tx, tokio::spawn(listener.run(rx, None)))
}

async fn query(path: &Path) -> Result<DaemonView, ControlError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || query_status(&path, Duration::from_secs(5)))
        .await
        .unwrap()
}

/// Sends `request` as is and returns the parsed answer.
async fn raw(path: &Path, request: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(path).await.unwrap();
    // The server may answer and close before reading everything (too long).
    let _ = s.write_all(request).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    assert_eq!(out.last(), Some(&b'\n'));
    serde_json::from_slice(&out).unwrap()
}

#[tokio::test]
async fn status_round_trip_and_cleanup() {
    let dir = temp_dir("round-trip");
    let path = socket_path(&dir.join("run"));
    let (tx, server) = start(&path, sample_view(1));
    let dir_mode = std::fs::metadata(dir.join("run"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let sock_mode = std::fs::symlink_metadata(&path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(sock_mode & 0o777, 0o600);

    assert_eq!(query(&path).await.unwrap(), sample_view(1));
    // The latest view is served.
    tx.send(Arc::new(sample_view(2))).unwrap();
    assert_eq!(query(&path).await.unwrap().pid, 2);
    // The wire format: one line, ok and view.
    let v = raw(&path, b"status\n").await;
    assert_eq!(v["ok"], true);
    assert_eq!(v["view"]["services"][0]["key"], "198.18.0.10:80/tcp");

    // The daemon going away stops the server and removes the socket.
    drop(tx);
    server.await.unwrap().unwrap();
    assert!(!path.exists());
    assert!(matches!(
        query(&path).await,
        Err(ControlError::NotRunning { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn unknown_request_gets_an_error_line() {
    let dir = temp_dir("unknown");
    let path = socket_path(&dir);
    let (_tx, _server) = start(&path, sample_view(1));
    let v = raw(&path, b"reload\n").await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["code"], "bad-request");
    assert!(v["error"].as_str().unwrap().contains("\"reload\""), "{v}");
    assert!(v.get("view").is_none());
    // End of stream ends the request too.
    assert_eq!(raw(&path, b"status").await["ok"], true);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn too_long_request_is_rejected() {
    let dir = temp_dir("too-long");
    let path = socket_path(&dir);
    let (_tx, _server) = start(&path, sample_view(1));
    let v = raw(&path, &[b'a'; 4 * MAX_REQUEST]).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["code"], "too-long");
    // The server is still fine.
    assert_eq!(query(&path).await.unwrap().pid, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn silent_client_does_not_block_others() {
    let dir = temp_dir("silent");
    let path = socket_path(&dir);
    let (_tx, _server) = start(&path, sample_view(1));
    let _silent = UnixStream::connect(&path).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(query(&path).await.unwrap().pid, 1);
    assert!(started.elapsed() < CLIENT_DEADLINE);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn stale_socket_is_replaced() {
    let dir = temp_dir("stale");
    std::fs::create_dir_all(&dir).unwrap();
    let path = socket_path(&dir);
    // A daemon that died: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    assert!(matches!(
        query(&path).await,
        Err(ControlError::NotRunning { .. })
    ));
    let (_tx, _server) = start(&path, sample_view(7));
    assert_eq!(query(&path).await.unwrap().pid, 7);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn second_daemon_is_refused() {
    let dir = temp_dir("second");
    let path = socket_path(&dir);
    let (_tx, _server) = start(&path, sample_view(1));
    let err = bind(&path).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    let msg = err.to_string();
    assert!(msg.contains("another vipd is running"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    // The first one still answers: the refused bind left its socket alone.
    assert_eq!(query(&path).await.unwrap().pid, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let dir = temp_dir("not-socket");
    std::fs::create_dir_all(&dir).unwrap();
    let path = socket_path(&dir);
    std::fs::write(&path, "keep me").unwrap();
    let err = bind(&path).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn errors_name_the_socket() {
    let path = temp_dir("missing").join("vipd.sock");
    let err = query_status(&path, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, ControlError::NotRunning { .. }));
    assert!(err.to_string().contains(&path.display().to_string()));
    let denied = ControlError::PermissionDenied {
        path: PathBuf::from("/run/vipd/vipd.sock"),
    };
    assert_eq!(
        denied.to_string(),
        "permission denied on the vipd control socket /run/vipd/vipd.sock: it needs root \
         (run with sudo)"
    );
}

#[test]
fn only_root_and_the_daemon_user_are_answered() {
    assert!(allowed(0, 1000));
    assert!(allowed(1000, 1000));
    assert!(allowed(0, 0));
    assert!(!allowed(1000, 0));
    assert!(!allowed(1001, 1000));
}

#[test]
fn denied_reply_maps_to_permission_denied() {
    let line = error_line(CODE_DENIED, "permission denied");
    let reply: Reply<DaemonView> = serde_json::from_slice(&line).unwrap();
    assert!(!reply.ok);
    assert_eq!(reply.code.as_deref(), Some(CODE_DENIED));
    assert_eq!(
        String::from_utf8(line).unwrap(),
        "{\"ok\":false,\"error\":\"permission denied\",\"code\":\"permission-denied\"}\n"
    );
}

#[tokio::test]
async fn commands_go_to_the_loop_and_their_answers_come_back() {
    let dir = temp_dir("commands");
    let path = socket_path(&dir);
    let listener = bind(&path).expect("bind");
    let (_tx, rx) = watch::channel(Arc::new(sample_view(1)));
    let (cmd_tx, mut cmd_rx) = mpsc::channel(4);
    let _server = tokio::spawn(listener.run(rx, Some(cmd_tx)));
    // A stand-in for the daemon's loop: drains succeed, reloads are rejected.
    tokio::spawn(async move {
        while let Some(Command { request, reply }) = cmd_rx.recv().await {
            let answer = match request {
                Request::Drain { service, backend } => Ok(format!("{service} {backend} drained")),
                Request::Reload { .. } => Err((
                    crate::daemon::control_proto::CODE_REJECTED,
                    "vipd.toml:3:7: bad".to_owned(),
                )),
                other => Err((CODE_BAD_REQUEST, format!("{other:?}"))),
            };
            let _ = reply.send(answer);
        }
    });
    let p = path.clone();
    let drained = tokio::task::spawn_blocking(move || {
        let drain = Request::Drain {
            service: "web".into(),
            backend: "198.18.1.2:8080".parse().unwrap(),
        };
        command(&p, &drain, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert_eq!(drained.unwrap(), "web 198.18.1.2:8080 drained");
    let p = path.clone();
    let rejected = tokio::task::spawn_blocking(move || {
        command(
            &p,
            &Request::Reload { config: None },
            Duration::from_secs(5),
        )
    })
    .await
    .unwrap()
    .unwrap_err();
    match rejected {
        ControlError::Refused { code, error } => {
            assert_eq!(code, "rejected");
            assert_eq!(error, "vipd.toml:3:7: bad");
        }
        other => panic!("{other:?}"),
    }
    // Status is still answered from the view, not the loop.
    assert_eq!(query(&path).await.unwrap().pid, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_status_only_server_says_commands_are_unavailable() {
    let dir = temp_dir("status-only");
    let path = socket_path(&dir);
    let (_tx, _server) = start(&path, sample_view(1));
    let v = raw(
        &path,
        b"{\"op\":\"readmit\",\"service\":\"web\",\"backend\":\"198.18.1.2:8080\"}\n",
    )
    .await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["code"], "unavailable");
    std::fs::remove_dir_all(&dir).unwrap();
}
