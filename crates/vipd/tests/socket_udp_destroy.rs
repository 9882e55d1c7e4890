//! Host tier: connected UDP sockets the socket data plane translated move when their
//! backend is taken out of the service (`udp_stale_flows = "expire"`): vipd destroys
//! them with `SOCK_DESTROY`, the application's next receive on the old socket fails with
//! `ECONNABORTED`, and a new socket through the VIP reaches another backend. At weight 0
//! (a drain, or `udp_stale_flows = "keep"`) they keep going. A socket the application
//! connected straight to the same backend is not the plane's and keeps working. Needs
//! root and a kernel with `CONFIG_INET_DIAG_DESTROY`.
//!
//! `sock_diag` sees the sockets of its own network namespace: the plane runs on a thread
//! inside the test's namespace, where the clients' sockets are.

mod socket_common;
mod xdp_common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdout, Stdio},
};

use socket_common::{
    addr, backend_netns, procs::in_cgroup, start_plane, Cgroup, Pins, Servers, BACKENDS4,
    BACKENDS6, UDP_PORT, VIP4, VIP6,
};
use vipd::{
    config::{Config, Protocol},
    model::{BackendId, ServiceKey, Vip},
    plane::{socket::SocketPlane, DataPlane, Held, Weights},
};

/// One UDP service of `vip` on [`UDP_PORT`] over `backends` at weights `w` (`None`:
/// taken out of the plane, as a quarantine with `udp_stale_flows = "expire"` does).
fn udp_weights(vip: &str, backends: &[&str], w: &[Option<u32>]) -> Weights {
    let key = ServiceKey::Addr(Vip::new(Protocol::Udp, addr(vip, UDP_PORT)));
    let mut out = Weights::default();
    for (b, w) in backends.iter().zip(w) {
        out.insert(
            key,
            BackendId::new(addr(b, UDP_PORT).ip(), UDP_PORT),
            Held {
                configured: 1,
                weight: *w,
            },
        );
    }
    out
}

/// A connected UDP socket through the VIP (`a`) and one connected straight to the
/// backend `a` reached (`d`); prints who answered each, then again at a line on stdin.
/// At a second line: what a `recv` on `a` gets, an exchange on `a`, one on `d`, and one
/// on a new socket through the VIP.
const CLIENT: &str = r#"
import socket, sys
vip, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
def sock(a):
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2); s.connect((a, port)); return s
def r(s):
    try:
        return s.recv(100).decode()
    except OSError as e:
        return "error:%s" % e.errno
def x(s):
    try:
        s.send(b"x"); return s.recv(100).decode()
    except OSError as e:
        return "error:%s" % e.errno
a = sock(vip); first = x(a)
d = sock(("::ffff:" + first) if fam == socket.AF_INET6 and ":" not in first else first)
print(first, x(d), flush=True)
sys.stdin.readline()
print(x(a), x(d), flush=True)
sys.stdin.readline()
print(r(a), x(a), x(d), x(sock(vip)), flush=True)
"#;

/// The client's next line, in words.
fn words(out: &mut impl BufRead) -> Vec<String> {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.split_whitespace().map(str::to_owned).collect()
}

/// The plane's count of destroyed sockets.
fn destroyed(plane: &SocketPlane) -> Option<u64> {
    plane
        .stats()
        .into_iter()
        .find(|(n, _)| *n == "udp_sockets_destroyed")
        .map(|(_, v)| v)
}

/// Backends serving in a namespace of their own, a socket plane (on a thread inside that
/// namespace) with the UDP service of `vip` over them at weight 1, and `script` run with
/// `args` as a client in the plane's cgroup; `f` gets the plane, the client (ended after
/// `f`) and its output.
fn with_client(
    vip: &str,
    backends: [&str; 3],
    tag: &str,
    (script, args): (&str, &str),
    f: impl FnOnce(&mut SocketPlane, &mut Child, &mut BufReader<ChildStdout>) + Send,
) {
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    let cg = Cgroup::new(tag);
    let pins = Pins::new(tag);
    ns.enter(|| {
        let mut plane = start_plane(&cg, &pins);
        plane
            .apply(
                &Config::default(),
                &udp_weights(vip, &backends, &[Some(1); 3]),
            )
            .unwrap();
        let mut child = in_cgroup(&ns, &cg.0, script, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("client");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        f(&mut plane, &mut child, &mut out);
        let _ = child.kill();
        let _ = child.wait();
    });
}

/// `client_vip`: the VIP as the client names it (`::ffff:a.b.c.d` for a dual-stack
/// socket reaching the IPv4 VIP).
fn moves_off_a_backend_taken_out(vip: &str, client_vip: &str, backends: [&str; 3], tag: &str) {
    let args = format!("{client_vip} {UDP_PORT}");
    with_client(vip, backends, tag, (CLIENT, &args), |plane, child, out| {
        let before = words(out);
        assert_eq!(before.len(), 2, "{before:?}");
        let first = before[0].clone();
        let i = backends
            .iter()
            .position(|b| *b == first)
            .unwrap_or_else(|| panic!("no backend answered: {before:?}"));
        assert_eq!(before[1], first, "the direct socket: {before:?}");

        // At weight 0 (a drain) both sockets keep their backend.
        let mut w = [Some(1); 3];
        w[i] = Some(0);
        plane
            .write_weights(&udp_weights(vip, &backends, &w))
            .unwrap();
        writeln!(child.stdin.as_mut().unwrap()).unwrap();
        let drained = words(out);
        assert_eq!(drained, [first.clone(), first.clone()], "at weight 0");

        // Taken out: the translated socket is destroyed.
        w[i] = None;
        plane
            .write_weights(&udp_weights(vip, &backends, &w))
            .unwrap();
        writeln!(child.stdin.as_mut().unwrap()).unwrap();
        let after = words(out);
        eprintln!("{tag}: before {before:?}, after the move {after:?}");
        assert_eq!(after.len(), 4, "{after:?}");
        // A waiting recv gets ECONNABORTED; the kernel has disconnected the socket, so a
        // send without an address then gets EDESTADDRREQ.
        assert_eq!(
            after[0],
            format!("error:{}", libc::ECONNABORTED),
            "the translated socket was not destroyed: {after:?}"
        );
        assert_eq!(
            after[1],
            format!("error:{}", libc::EDESTADDRREQ),
            "{after:?}"
        );
        assert_eq!(after[2], first, "the direct socket was touched: {after:?}");
        assert!(
            !after[3].starts_with("error") && after[3] != first,
            "a new socket did not reach another backend: {after:?}"
        );
        assert_eq!(destroyed(plane), Some(1), "{after:?}");
        // The destroyed socket's record went with the move (the kernel disconnected it,
        // so its close could not find it); the new socket's went at its close.
        assert_eq!(plane.records().translations, 0, "{after:?}");
    });
}

#[test]
fn a_connected_udp_socket_leaves_a_backend_taken_out_v4() {
    moves_off_a_backend_taken_out(VIP4, VIP4, BACKENDS4, "udpd4");
}

#[test]
fn a_connected_udp_socket_leaves_a_backend_taken_out_v6() {
    moves_off_a_backend_taken_out(VIP6, VIP6, BACKENDS6, "udpd6");
}

#[test]
fn a_dual_stack_udp_socket_leaves_an_ipv4_backend_taken_out() {
    let mapped = format!("::ffff:{VIP4}");
    moves_off_a_backend_taken_out(VIP4, &mapped, BACKENDS4, "udpdm");
}

/// `n` connected UDP sockets through the VIP, one exchange each; prints who answered
/// each, all on one line, and holds them until stdin closes.
const MANY: &str = r#"
import socket, sys
vip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
socks, seen = [], []
for i in range(n):
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2); s.connect((vip, port))
    s.send(b"x"); seen.append(s.recv(100).decode()); socks.append(s)
print(" ".join(seen), flush=True)
sys.stdin.read()
"#;

/// Hundreds of sockets: exactly those on the backend taken out are destroyed, and the
/// write that takes it out (dump and destroys included) is timed.
#[test]
fn hundreds_of_sockets_of_a_backend_taken_out_are_destroyed() {
    let backends = BACKENDS4;
    let n = 600;
    let args = format!("{VIP4} {UDP_PORT} {n}");
    with_client(
        VIP4,
        backends,
        "udpdn",
        (MANY, &args),
        |plane, child, out| {
            let seen = words(out);
            assert_eq!(seen.len(), n, "{seen:?}");
            let on_first = seen.iter().filter(|b| *b == backends[0]).count();
            let t = std::time::Instant::now();
            plane
                .write_weights(&udp_weights(VIP4, &backends, &[None, Some(1), Some(1)]))
                .unwrap();
            let took = t.elapsed();
            drop(child.stdin.take());
            eprintln!(
            "{on_first} of {n} sockets on the backend taken out: destroyed {:?} in {took:?} (the map write included)",
            destroyed(plane)
        );
            assert_eq!(destroyed(plane), Some(on_first as u64));
        },
    );
}
