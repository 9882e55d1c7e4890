//! The metrics endpoint: a minimal HTTP/1.1 server answering `GET /metrics` (and
//! `HEAD`) with the rendered metrics, one task per connection, bounded in clients, time
//! and request size.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

use super::{
    request::{parse_request_head, Head, HeadReader, RequestLine},
    Metrics,
};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long a client has to send its request head, and to take the answer.
pub const HTTP_DEADLINE: Duration = Duration::from_secs(5);
/// Connections handled at once; more are closed at once.
pub const MAX_HTTP_CONNECTIONS: usize = 32;

/// Binds the metrics address; the error names it.
pub async fn bind_metrics(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("metrics address {addr}: {e}")))
}

/// Serves `GET /metrics` on `listener` forever, one task per connection. Accept errors
/// (e.g. out of file descriptors) are logged and retried.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "metrics: too many clients, closing one");
                    continue;
                };
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(e) = handle(stream, &metrics).await {
                        tracing::debug!(%peer, "metrics client: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> io::Result<Head> {
    let mut reader = HeadReader::default();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if let Some(head) = reader.feed(&chunk[..n]) {
            return Ok(head);
        }
    }
}

fn response(status: &str, content_type: &str, extra: &str, body: &str, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    out.into_bytes()
}

/// The answer to one request head.
fn route(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    let Ok(RequestLine { method, path }) = parse_request_head(head) else {
        return response("400 Bad Request", PLAIN, "", "bad request\n", false);
    };
    if path != "/metrics" {
        let head_only = method == "HEAD";
        return response(
            "404 Not Found",
            PLAIN,
            "",
            "not found: see /metrics\n",
            head_only,
        );
    }
    match method.as_str() {
        "GET" | "HEAD" => response(
            "200 OK",
            CONTENT_TYPE,
            "",
            &metrics.render(),
            method == "HEAD",
        ),
        _ => response(
            "405 Method Not Allowed",
            PLAIN,
            "Allow: GET, HEAD\r\n",
            "method not allowed\n",
            false,
        ),
    }
}

async fn handle(mut stream: TcpStream, metrics: &Arc<Metrics>) -> io::Result<()> {
    let answer = match tokio::time::timeout(HTTP_DEADLINE, read_head(&mut stream)).await {
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request head in time",
            ))
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Closed)) => return Ok(()),
        Ok(Ok(Head::TooLarge)) => response(
            "431 Request Header Fields Too Large",
            "text/plain; charset=utf-8",
            "",
            "request head too large\n",
            false,
        ),
        Ok(Ok(Head::Complete(head))) => {
            // Rendering is CPU work proportional to the backends: off the runtime's
            // thread, which also runs the daemon's loop.
            let metrics = metrics.clone();
            tokio::task::spawn_blocking(move || route(&head, &metrics))
                .await
                .map_err(io::Error::other)?
        }
    };
    super::super::reply::answer_and_close(&mut stream, &answer, HTTP_DEADLINE).await
}
