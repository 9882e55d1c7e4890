//! Host tier: vipd's socket tracepoint programs, loaded on the running kernel, report a
//! loopback TCP connection's lifecycle with its exact addresses, and only for watched
//! destinations. Needs root (CAP_BPF); it fails, never skips, without it.

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use vipd::watcher::{Event, Hooks, Probes, TcpState};
use vipd_common::IPPROTO_TCP;

type Transition = (SocketAddr, TcpState, TcpState);

/// Collects the state changes of the client socket connecting to `server`, identified
/// by the kernel socket address (`skaddr`) of the event that carries `client` as its
/// local end, until `done` says enough or two seconds pass.
fn transitions(
    probes: &mut Probes,
    client: SocketAddr,
    server: SocketAddr,
    done: impl Fn(&[Transition]) -> bool,
) -> Vec<Transition> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut toward_server = Vec::new();
    let mut client_sock = None;
    let mine = |all: &[(u64, Transition)], sock: Option<u64>| {
        all.iter()
            .filter(|e| Some(e.0) == sock)
            .map(|e| e.1)
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
                backend,
                ..
            })) => {
                assert_eq!(dst, server, "event for a destination nobody watches");
                assert_eq!(backend, None, "no IPVS here, so nothing can name a backend");
                if src == client {
                    client_sock = Some(sock);
                }
                toward_server.push((sock, (src, old, new)));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("undecodable event: {e}"),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    mine(&toward_server, client_sock)
}

fn lifecycle(bind: &str) {
    let mut probes =
        Probes::load(Hooks::TRACEPOINTS).expect("loading the tracepoint programs (run as root)");
    let listener = TcpListener::bind(bind).unwrap();
    let server = listener.local_addr().unwrap();
    probes.watch(server, IPPROTO_TCP as u8, 1).unwrap();
    let mut stream = TcpStream::connect(server).unwrap();
    let client = stream.local_addr().unwrap();
    let (_accepted, _) = listener.accept().unwrap();
    stream.write_all(b"x").unwrap();
    drop(stream);

    use TcpState::*;
    let seen = transitions(&mut probes, client, server, |s| {
        s.iter().any(|t| t.2 == FinWait1)
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

/// Only connections to watched addresses produce events: the kernel filters.
#[test]
fn unwatched_connections_produce_no_events() {
    let mut probes =
        Probes::load(Hooks::TRACEPOINTS).expect("loading the tracepoint programs (run as root)");
    let watched = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    probes
        .watch(watched.local_addr().unwrap(), IPPROTO_TCP as u8, 1)
        .unwrap();
    drop(TcpStream::connect(other.local_addr().unwrap()).unwrap());
    drop(other.accept().unwrap());
    // A connection to the watched address afterwards proves the programs were running.
    let marker = TcpStream::connect(watched.local_addr().unwrap()).unwrap();
    let marker_src = marker.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut saw_marker = false;
    while Instant::now() < deadline && !saw_marker {
        match probes.next_event() {
            Some(Ok(Event::StateChange { src, dst, .. })) => {
                assert_eq!(
                    dst,
                    watched.local_addr().unwrap(),
                    "event for an unwatched connection"
                );
                saw_marker |= src == marker_src;
            }
            Some(other) => panic!("unexpected event {other:?}"),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert!(saw_marker, "no event for the watched connection");
}

/// A refused connection (nothing listens) shows as an RST received in SYN_SENT.
#[test]
fn refused_connection_reports_receive_reset() {
    let mut probes =
        Probes::load(Hooks::TRACEPOINTS).expect("loading the tracepoint programs (run as root)");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap(); // now closed
    probes.watch(closed, IPPROTO_TCP as u8, 1).unwrap();
    let err = TcpStream::connect(closed).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let deadline = Instant::now() + Duration::from_secs(2);
    let (mut reset, mut closed_from_syn_sent) = (false, false);
    while Instant::now() < deadline && !(reset && closed_from_syn_sent) {
        match probes.next_event() {
            Some(Ok(Event::ReceiveReset { dst, .. })) => reset |= dst == closed,
            Some(Ok(Event::StateChange { dst, old, new, .. })) if dst == closed => {
                closed_from_syn_sent |= (old, new) == (TcpState::SynSent, TcpState::Close);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("undecodable event: {e}"),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert!(
        reset,
        "no tcp_receive_reset event for the refused connection"
    );
    assert!(
        closed_from_syn_sent,
        "no SYN_SENT -> CLOSE for the refused connection"
    );
}
