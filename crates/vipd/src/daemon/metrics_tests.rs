use tokio::io::AsyncWriteExt;

use super::*;

fn example() -> Metrics {
    let m = Metrics::new();
    m.outcome("web", "198.18.1.2:8080", "refused");
    m.outcome("web", "198.18.1.2:8080", "refused");
    m.outcome("we\"b", "a\\b\nc", "established");
    m.quarantine("web", "198.18.1.2:8080", "refused");
    m.fault_to_quarantine("refused", 0.0015);
    m.fault_to_quarantine("refused", 3.0);
    m.set_lost_events(5);
    m.set_watcher_mode("partial");
    m.set_unattributed(1);
    m.reconcile_ops("ipvs", 2);
    m.reconcile_ops("ipvs", 1);
    m.reload(true);
    m.set_backend("web", "198.18.1.2:8080", 100, "healthy");
    // A new state replaces the old series.
    m.set_backend("web", "198.18.1.2:8080", 0, "quarantined");
    m.set_panic("web", true);
    m
}

const EXAMPLE: &str = r#"# HELP vipd_outcomes_total Connection outcomes and check results, per backend.
# TYPE vipd_outcomes_total counter
vipd_outcomes_total{service="we\"b",backend="a\\b\nc",outcome="established"} 1
vipd_outcomes_total{service="web",backend="198.18.1.2:8080",outcome="refused"} 2
# HELP vipd_quarantines_total Backends taken out of rotation, by cause.
# TYPE vipd_quarantines_total counter
vipd_quarantines_total{service="web",backend="198.18.1.2:8080",cause="refused"} 1
# HELP vipd_fault_to_quarantine_seconds Time from the kernel seeing a fault to the backend's weight-0 write.
# TYPE vipd_fault_to_quarantine_seconds histogram
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.001"} 0
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.002"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.005"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.01"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.02"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.05"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.1"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.2"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="0.5"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="1"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="1.5"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="2"} 1
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="5"} 2
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="10"} 2
vipd_fault_to_quarantine_seconds_bucket{cause="refused",le="+Inf"} 2
vipd_fault_to_quarantine_seconds_sum{cause="refused"} 3.0015
vipd_fault_to_quarantine_seconds_count{cause="refused"} 2
# HELP vipd_events_lost_total Kernel events lost to a full ring buffer.
# TYPE vipd_events_lost_total counter
vipd_events_lost_total 5
# HELP vipd_watcher_mode How passive detection runs: 1 for the current mode (full: every hook attached; partial: TCP only; degraded: none, active checks only; xdp: the XDP program).
# TYPE vipd_watcher_mode gauge
vipd_watcher_mode{mode="full"} 0
vipd_watcher_mode{mode="partial"} 1
vipd_watcher_mode{mode="degraded"} 0
vipd_watcher_mode{mode="xdp"} 0
# HELP vipd_watcher_degraded 1 while some kernel hook of the connection watcher is not attached.
# TYPE vipd_watcher_degraded gauge
vipd_watcher_degraded 1
# HELP vipd_events_unattributed_total Kernel events that could not be attributed to a backend.
# TYPE vipd_events_unattributed_total counter
vipd_events_unattributed_total 1
# HELP vipd_reconcile_operations_total Netlink writes made to bring the kernel to the desired state.
# TYPE vipd_reconcile_operations_total counter
vipd_reconcile_operations_total{kind="ipvs"} 3
vipd_reconcile_operations_total{kind="rtnetlink"} 0
# HELP vipd_reloads_total Config reloads, applied or rejected.
# TYPE vipd_reloads_total counter
vipd_reloads_total{result="ok"} 1
vipd_reloads_total{result="rejected"} 0
# HELP vipd_backend_weight A backend's effective weight, as written to IPVS.
# TYPE vipd_backend_weight gauge
vipd_backend_weight{service="web",backend="198.18.1.2:8080"} 0
# HELP vipd_backend_state A backend's health state: 1 for the current one.
# TYPE vipd_backend_state gauge
vipd_backend_state{service="web",backend="198.18.1.2:8080",state="quarantined"} 1
# HELP vipd_service_panic 1 while every backend of the service is out and weights are restored.
# TYPE vipd_service_panic gauge
vipd_service_panic{service="web"} 1
"#;

#[test]
fn render_is_the_text_exposition_format() {
    let text = example().render();
    assert_eq!(text, EXAMPLE, "\n{text}");
}

#[test]
fn forgetting_drops_the_series() {
    let m = example();
    m.set_backend("web", "198.18.1.3:8080", 100, "healthy");
    m.forget_backend("web", "198.18.1.2:8080");
    let text = m.render();
    assert!(!text.contains("198.18.1.2:8080"), "{text}");
    assert!(text.contains(r#"vipd_backend_weight{service="web",backend="198.18.1.3:8080"} 100"#));
    m.forget_service("web");
    let text = m.render();
    assert!(!text.contains("service=\"web\""), "{text}");
    // Another service's series and the per-cause histogram stay.
    assert!(text.contains(r#"service="we\"b""#), "{text}");
    assert!(text.contains("vipd_fault_to_quarantine_seconds_count{cause=\"refused\"} 2"));
}

#[test]
fn odd_observations() {
    let m = Metrics::new();
    m.fault_to_quarantine("rst", -1.0);
    m.fault_to_quarantine("rst", f64::NAN);
    m.fault_to_quarantine("rst", 100.0);
    let text = m.render();
    assert!(text.contains("vipd_fault_to_quarantine_seconds_bucket{cause=\"rst\",le=\"0.001\"} 1"));
    assert!(text.contains("vipd_fault_to_quarantine_seconds_bucket{cause=\"rst\",le=\"10\"} 1"));
    assert!(text.contains("vipd_fault_to_quarantine_seconds_bucket{cause=\"rst\",le=\"+Inf\"} 2"));
    assert!(text.contains("vipd_fault_to_quarantine_seconds_sum{cause=\"rst\"} 100\n"));
    assert_eq!(float(f64::INFINITY), "+Inf");
    assert_eq!(float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(float(f64::NAN), "NaN");
    assert_eq!(float(0.005), "0.005");
}

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
    metrics.reload(false);
    let (_, _, body) = http(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
    assert!(body.contains("vipd_reloads_total{result=\"rejected\"} 1\n"));

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
