//! Host tier: vipd's socket hooks, loaded on the running kernel, report a loopback TCP
//! connection's lifecycle with its exact addresses, and only for watched destinations.
//! Every scenario runs twice: with the classic tracepoints (record offsets from
//! tracefs), and with the tp_btf tracepoints (offsets from BTF), each asserting that it
//! got the form it asked for. The host kernel has neither kprobes nor ftrace for BPF
//! (fentry), so tcp_connect and IPVS are VM-tier tests. Needs root (CAP_BPF); it fails,
//! never skips, without it.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use vipd::watcher::{Event, Flavour, HookKind, Hooks, Probes, TcpState};
use vipd_common::IPPROTO_TCP;

type Transition = (SocketAddr, TcpState, TcpState);

/// The three socket tracepoints in `flavour`; asserts the form attached (`Auto` must
/// pick tp_btf, which this kernel has).
fn load(flavour: Flavour) -> Probes {
    let probes = Probes::load(Hooks::TRACEPOINTS.with_flavour(flavour))
        .unwrap_or_else(|e| panic!("loading the {flavour:?} socket hooks (run as root): {e}"));
    let expected = match flavour {
        Flavour::Classic => vec![HookKind::TracePoint; 3],
        Flavour::Btf | Flavour::Auto => vec![HookKind::BtfTracePoint; 3],
    };
    let kinds: Vec<HookKind> = probes.attachments().iter().map(|a| a.kind).collect();
    assert_eq!(kinds, expected, "{}", probes.describe());
    probes
}

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

fn lifecycle(flavour: Flavour, bind: &str) {
    let mut probes = load(flavour);
    let listener = TcpListener::bind(bind).unwrap();
    let server = listener.local_addr().unwrap();
    probes.watch(server, IPPROTO_TCP as u8, 1).unwrap();
    let mut stream = TcpStream::connect(server).unwrap();
    let client = stream.local_addr().unwrap();
    let (mut accepted, _) = listener.accept().unwrap();
    stream.write_all(b"x").unwrap();
    // The client closes first, then the server once it has read everything: the client
    // goes through FIN_WAIT1 and FIN_WAIT2 to CLOSE (TIME_WAIT is another socket).
    drop(stream);
    let mut got = Vec::new();
    accepted.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"x");
    drop(accepted);

    use TcpState::*;
    let seen = transitions(&mut probes, client, server, |s| {
        s.iter().any(|t| t.2 == Close)
    });
    // The kernel enters SYN_SENT before it binds the source port (tcp_v4_connect and
    // tcp_v6_connect call inet_hash_connect after tcp_set_state), so the first event has
    // port 0: the reason vipd also hooks tcp_connect. The steps between established
    // and closed are not sent.
    let unbound = SocketAddr::new(client.ip(), 0);
    assert_eq!(
        seen,
        [
            (unbound, Close, SynSent),
            (client, SynSent, Established),
            (client, FinWait2, Close)
        ],
        "client socket {client} -> {server}"
    );
    assert_eq!(probes.lost_events().unwrap(), 0);
}

#[test]
fn tracepoint_reports_ipv4_loopback_connection() {
    lifecycle(Flavour::Classic, "127.0.0.1:0");
}

#[test]
fn tracepoint_reports_ipv6_loopback_connection() {
    lifecycle(Flavour::Classic, "[::1]:0");
}

#[test]
fn tp_btf_reports_ipv4_loopback_connection() {
    lifecycle(Flavour::Btf, "127.0.0.1:0");
}

#[test]
fn tp_btf_reports_ipv6_loopback_connection() {
    lifecycle(Flavour::Btf, "[::1]:0");
}

/// `auto` (what the daemon uses) picks tp_btf where the kernel has it.
#[test]
fn auto_picks_tp_btf_on_this_kernel() {
    lifecycle(Flavour::Auto, "127.0.0.1:0");
}

/// A hook with no form this kernel can attach is an error naming why each failed:
/// tcp_connect has neither fentry (no ftrace for BPF here) nor a kprobe.
#[test]
fn hook_without_any_form_names_every_reason() {
    let err = match Probes::load(Hooks::SOCKETS) {
        Ok(p) => panic!(
            "tcp_connect attached on a host without kprobes: {}",
            p.describe()
        ),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with("tcp_connect: cannot attach as kprobe:")
            && err.contains("fentry unavailable"),
        "{err}"
    );
}

/// Only connections to watched addresses produce events: the kernel filters.
fn unwatched_connections_produce_no_events(flavour: Flavour) {
    let mut probes = load(flavour);
    let watched = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    probes
        .watch(watched.local_addr().unwrap(), IPPROTO_TCP as u8, 1)
        .unwrap();
    drop(TcpStream::connect(other.local_addr().unwrap()).unwrap());
    drop(other.accept().unwrap());
    only_the_marker_is_seen(&mut probes, watched.local_addr().unwrap(), None);
}

/// Connects to `watched` (a marker: proof that the programs run) and reads events until
/// one of the marker's comes or two seconds pass. Every event must be a state change of
/// a connection to `watched`, and none from `excluded`.
fn only_the_marker_is_seen(probes: &mut Probes, watched: SocketAddr, excluded: Option<SocketAddr>) {
    let marker = TcpStream::connect(watched).unwrap();
    let marker_src = marker.local_addr().unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut saw_marker = false;
    while Instant::now() < deadline && !saw_marker {
        match probes.next_event() {
            Some(Ok(Event::StateChange { src, dst, .. })) => {
                assert_eq!(dst, watched, "event for an unwatched connection");
                assert_ne!(Some(src), excluded, "event for an unwatched connection");
                saw_marker |= src == marker_src;
            }
            Some(other) => panic!("unexpected event {other:?}"),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    assert!(saw_marker, "no event for the watched connection");
}

#[test]
fn tracepoint_filters_unwatched_connections() {
    unwatched_connections_produce_no_events(Flavour::Classic);
}

#[test]
fn tp_btf_filters_unwatched_connections() {
    unwatched_connections_produce_no_events(Flavour::Btf);
}

/// The hooks test the destination port first, then the whole address: a connection to
/// a VIP's port on another address produces nothing, and a port stays open while any
/// VIP uses it.
fn same_port_other_address_produces_no_events(flavour: Flavour) {
    let mut probes = load(flavour);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let decoy = SocketAddr::new("127.0.0.2".parse().unwrap(), server.port());
    probes.watch(decoy, IPPROTO_TCP as u8, 1).unwrap();
    let other = TcpStream::connect(server).unwrap();
    let other_src = other.local_addr().unwrap();
    drop(listener.accept().unwrap());
    drop(other);
    // Its last state changes come before it is watched.
    std::thread::sleep(Duration::from_millis(50));
    // Two VIPs on the port, then one: the port must stay open for the other.
    probes.watch(server, IPPROTO_TCP as u8, 2).unwrap();
    probes.unwatch(decoy, IPPROTO_TCP as u8).unwrap();
    only_the_marker_is_seen(&mut probes, server, Some(other_src));
}

#[test]
fn tracepoint_filters_same_port_other_address() {
    same_port_other_address_produces_no_events(Flavour::Classic);
}

#[test]
fn tp_btf_filters_same_port_other_address() {
    same_port_other_address_produces_no_events(Flavour::Btf);
}

/// A refused connection (nothing listens) shows as an RST received in SYN_SENT.
fn refused_connection_reports_receive_reset(flavour: Flavour) {
    let mut probes = load(flavour);
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

#[test]
fn tracepoint_reports_refusal() {
    refused_connection_reports_receive_reset(Flavour::Classic);
}

#[test]
fn tp_btf_reports_refusal() {
    refused_connection_reports_receive_reset(Flavour::Btf);
}

/// A SYN the server drops shows as a retransmission in SYN_SENT. The listener's accept
/// queue is made full (backlog 0, one connection never accepted), so the kernel drops
/// the next SYN and the client resends it after its initial RTO (1 s).
fn dropped_syn_reports_retransmit(flavour: Flavour) {
    let mut probes = load(flavour);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: a valid listening socket; listen() again only changes its backlog.
    assert_eq!(
        unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 0) },
        0
    );
    let server = listener.local_addr().unwrap();
    let _fills_the_queue = TcpStream::connect(server).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    probes.watch(server, IPPROTO_TCP as u8, 1).unwrap();
    let waiting =
        std::thread::spawn(move || TcpStream::connect_timeout(&server, Duration::from_secs(3)));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut retransmit = None;
    while Instant::now() < deadline && retransmit.is_none() {
        match probes.next_event() {
            Some(Ok(Event::Retransmit {
                dst, state, src, ..
            })) if dst == server => {
                retransmit = Some((src, state));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("undecodable event: {e}"),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let (src, state) = retransmit.expect("no retransmit event for the dropped SYN");
    assert_eq!(state, TcpState::SynSent);
    assert_ne!(src.port(), 0, "the retransmitted SYN has its source port");
    drop(listener);
    let _ = waiting.join();
}

#[test]
fn tracepoint_reports_syn_retransmit() {
    dropped_syn_reports_retransmit(Flavour::Classic);
}

#[test]
fn tp_btf_reports_syn_retransmit() {
    dropped_syn_reports_retransmit(Flavour::Btf);
}

/// Successes the reader has not caught up with never crowd out a failure: with the ring
/// three quarters full, success and close records are shed (and counted) and a refusal
/// still gets in; nothing is lost.
#[test]
fn a_success_flood_never_hides_a_refusal() {
    use std::os::fd::AsRawFd;
    let mut probes = load(Flavour::Auto);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    probes.watch(server, IPPROTO_TCP as u8, 1).unwrap();
    let accepting = std::thread::spawn(move || {
        for s in listener.incoming() {
            if s.is_err() {
                break;
            }
        }
    });
    // About 3 records per connection (closed by RST: no TIME_WAIT, no port shortage);
    // 24,000 connections are far more than the 4 MiB ring holds, and nobody reads.
    for _ in 0..24_000 {
        let s = TcpStream::connect(server).unwrap();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket and a linger struct of the size given.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger as *const libc::linger as *const libc::c_void,
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    }
    assert!(
        probes.shed_events().unwrap() > 0,
        "the flood filled the ring"
    );
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    probes.watch(closed, IPPROTO_TCP as u8, 2).unwrap();
    let err = TcpStream::connect(closed).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let mut reset = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !reset {
        match probes.next_event() {
            Some(Ok(Event::ReceiveReset { dst, .. })) => reset |= dst == closed,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("undecodable event: {e}"),
            None => break,
        }
    }
    assert!(reset, "the refusal was not in the ring");
    assert_eq!(probes.lost_events().unwrap(), 0, "nothing lost");
    drop(accepting);
}
