//! Host tier: the `sock/inet_sock_set_state` program from vipd-ebpf, loaded on the
//! running kernel, reports a loopback TCP connection's lifecycle with its exact
//! addresses. Needs root (CAP_BPF); it fails, never skips, without it.

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use vipd::watcher::{Event, Hooks, Probes, TcpState};

/// Collects the state changes of the client socket connecting to `server`, identified
/// by the kernel socket address (`skaddr`) of the event that carries `client` as its
/// local end, until `done` says enough or two seconds pass. Returns (source, old, new).
fn transitions(
    probes: &mut Probes,
    client: SocketAddr,
    server: SocketAddr,
    done: impl Fn(&[(SocketAddr, TcpState, TcpState)]) -> bool,
) -> Vec<(SocketAddr, TcpState, TcpState)> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut toward_server = Vec::new();
    let mut client_sock = None;
    let mine = |all: &[(u64, SocketAddr, TcpState, TcpState)], sock: Option<u64>| {
        all.iter()
            .filter(|e| Some(e.0) == sock)
            .map(|e| (e.1, e.2, e.3))
            .collect::<Vec<_>>()
    };
    while Instant::now() < deadline && !done(&mine(&toward_server, client_sock)) {
        match probes.next_event() {
            Some(Ok(Event::StateChange {
                sock,
                src,
                dst,
                old,
                new,
                ..
            })) if dst == server => {
                if src == client {
                    client_sock = Some(sock);
                }
                toward_server.push((sock, src, old, new));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("undecodable event: {e}"),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    mine(&toward_server, client_sock)
}

fn lifecycle(bind: &str) {
    let mut probes = Probes::load(Hooks {
        state_changes: true,
        ..Default::default()
    })
    .expect("loading the tracepoint program (run as root)");
    let listener = TcpListener::bind(bind).unwrap();
    let server = listener.local_addr().unwrap();
    let mut stream = TcpStream::connect(server).unwrap();
    let client = stream.local_addr().unwrap();
    let (_accepted, _) = listener.accept().unwrap();
    stream.write_all(b"x").unwrap();
    drop(stream);

    use TcpState::*;
    let seen = transitions(&mut probes, client, server, |s| {
        s.iter().any(|&(_, _, n)| n == FinWait1)
    });
    // The kernel enters SYN_SENT before it binds the source port (tcp_v4_connect and
    // tcp_v6_connect call inet_hash_connect after tcp_set_state), so the first event has
    // port 0: the reason vipd also hooks tcp_connect.
    let unbound = SocketAddr::new(client.ip(), 0);
    assert_eq!(
        seen,
        [
            (unbound, Close, SynSent),
            (client, SynSent, Established),
            (client, Established, FinWait1)
        ],
        "client socket {client} -> {server}"
    );
    assert_eq!(probes.lost_events().unwrap(), 0);
}

#[test]
fn tracepoint_reports_ipv4_loopback_connection() {
    lifecycle("127.0.0.1:0");
}

#[test]
fn tracepoint_reports_ipv6_loopback_connection() {
    lifecycle("[::1]:0");
}
