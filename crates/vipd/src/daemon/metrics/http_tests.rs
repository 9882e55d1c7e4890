use tokio::io::AsyncWriteExt;

use std::{io, net::SocketAddr, sync::Arc};

use tokio::{io::AsyncReadExt, net::TcpStream};

use super::{
    render_tests::{example, EXAMPLE},
    *,
};

async fn start() -> (SocketAddr, Arc<Metrics>) {
    let listener = bind_metrics("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(example());
    tokio::spawn(serve_metrics(listener, metrics.clone()));
    (addr, metrics)
}

/// Sends `request` and returns the status line, the headers (lower-cased names) and the
/// body.
async fn http(addr: SocketAddr, request: &[u8]) -> (String, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a full response");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn http_get_metrics() {
    let (addr, metrics) = start().await;
    let (status, headers, body) = http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(header(&headers, "content-type"), Some(CONTENT_TYPE));
    assert_eq!(header(&headers, "connection"), Some("close"));
    assert_eq!(
        header(&headers, "content-length"),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(body, EXAMPLE);

    // Live: a later update shows in the next scrape; a query string is ignored.
    metrics.reload(false, std::time::SystemTime::now());
    let (_, _, body) = http(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert!(body.contains("vipd_reloads_total{result=\"rejected\"} 2\n"));

    let (status, headers, body) = http(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        header(&headers, "content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    assert_eq!(body, "");
}

#[tokio::test]
async fn http_errors() {
    let (addr, _) = start().await;
    let (status, _, _) = http(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _, _) = http(addr, b"GET /metricsx HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    let (status, headers, _) = http(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    assert_eq!(header(&headers, "allow"), Some("GET, HEAD"));

    let (status, _, _) = http(addr, b"nonsense\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request");

    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    while huge.len() <= MAX_REQUEST_HEAD {
        huge.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let (status, _, _) = http(addr, &huge).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");

    // After all that the server still answers.
    let (status, _, _) = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn silent_client_does_not_block_scrapes() {
    let (addr, _) = start().await;
    let _silent = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let (status, _, _) = http(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(started.elapsed() < HTTP_DEADLINE);
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let first = bind_metrics("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = first.local_addr().unwrap();
    let err = bind_metrics(addr).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
