//! The backends' servers and the clients, in python3: each server answers with its own
//! address (TCP: a line on accept; UDP: a datagram back), and a client prints, for each
//! connection or exchange, who answered and what its socket says the peer is.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use super::{TCP_PORT, UDP_PORT};
use crate::xdp_common::Netns;

const SERVER: &str = r#"
import socket, sys, threading
def tcp(a, fam):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a, TCP)); s.listen(1024)
    while True:
        c, _ = s.accept()
        c.sendall(a.encode() + b"\n"); c.close()
def udp(a, fam):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((a, UDP))
    while True:
        d, p = s.recvfrom(100)
        s.sendto(a.encode(), p)
for a in sys.argv[1:]:
    fam = socket.AF_INET6 if ":" in a else socket.AF_INET
    for f in (tcp, udp):
        threading.Thread(target=f, args=(a, fam), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

const CLIENT: &str = r#"
import socket, sys
vip, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
for i in range(n):
    try:
        if mode == "tcp":
            s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(2)
            s.connect((vip, port)); peer = s.getpeername()
            d = s.makefile().readline().strip()
        elif mode == "udp":
            s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
            s.connect((vip, port)); s.send(b"x"); d = s.recv(100).decode()
            peer = s.getpeername()
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
            s.sendto(b"x", (vip, port)); d, peer = s.recvfrom(100); d = d.decode()
        print(d, peer[0], peer[1], flush=True)
        s.close()
    except OSError as e:
        print("error:%s" % e.errno, "0.0.0.0", 0, flush=True)
"#;

/// One unconnected UDP socket kept open: each line read on stdin says how many
/// exchanges to make with it now.
const ONE_SOCKET: &str = r#"
import socket, sys
vip, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
for line in sys.stdin:
    for i in range(int(line)):
        try:
            s.sendto(b"x", (vip, port)); d, peer = s.recvfrom(100)
            print(d.decode(), peer[0], peer[1], flush=True)
        except OSError as e:
            print("error:%s" % e.errno, "0.0.0.0", 0, flush=True)
"#;

/// One TCP connection to a VIP, kept open (after the server's line) until a line comes
/// on stdin.
const HELD: &str = r#"
import socket, sys
vip, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(2)
s.connect((vip, port)); peer = s.getpeername()
d = s.makefile().readline().strip()
print(d, peer[0], peer[1], flush=True)
sys.stdin.readline()
s.close()
print("closed", flush=True)
"#;

/// `n` exchanges with a target, each on a new socket that is closed after it; prints the
/// seconds they took in all. `tcp`: connect and read the server's line; `udp`: an
/// unconnected socket sends a datagram and reads the answer (a socket per query).
const TIMED: &str = r#"
import socket, sys, time
ip, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
t = time.perf_counter()
if mode == "tcp":
    for i in range(n):
        s = socket.socket(fam, socket.SOCK_STREAM); s.connect((ip, port)); s.recv(100); s.close()
else:
    for i in range(n):
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(2)
        s.sendto(b"x", (ip, port)); s.recvfrom(100); s.close()
print(time.perf_counter() - t)
"#;

/// python3 running `script` with `args`, in namespace `ns` and cgroup `cgroup`. Into
/// the cgroup first: `ip netns exec` mounts a sysfs of the namespace's own, without the
/// cgroup file systems.
pub fn in_cgroup(ns: &Netns, cgroup: &Path, script: &str, args: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "echo $$ > {}/cgroup.procs && exec ip netns exec {} python3 -c '{script}' {args}",
        cgroup.display(),
        ns.name,
    ));
    cmd
}

/// Seconds that `n` exchanges with `ip:port` (`mode`: `tcp` or `udp`, see [`TIMED`]) took
/// from a client in namespace `ns` and cgroup `cgroup`.
pub fn timed_exchanges(
    ns: &Netns,
    cgroup: &Path,
    ip: &str,
    port: u16,
    n: usize,
    mode: &str,
) -> f64 {
    let out = in_cgroup(ns, cgroup, TIMED, &format!("{ip} {port} {n} {mode}"))
        .output()
        .expect("client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds")
}

/// The servers on the given addresses, in the namespace (not in the test's cgroup);
/// killed on drop.
pub struct Servers(Child);

impl Servers {
    pub fn start(ns: &Netns, addrs: &[&str]) -> Servers {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "python3", "-c"])
            .arg(
                SERVER
                    .replace("TCP", &TCP_PORT.to_string())
                    .replace("UDP", &UDP_PORT.to_string()),
            )
            .args(addrs)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the servers did not start");
        Servers(child)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One exchange as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The backend that answered (its own address), or `error`.
    pub backend: String,
    /// What the socket said the peer was.
    pub peer: std::net::SocketAddr,
}

/// Runs `n` exchanges (`mode`: `tcp`, `udp` connected, `udp-unconnected`) to `vip`
/// from a client in namespace `ns` and cgroup `cgroup`.
pub fn client(ns: &Netns, cgroup: &Path, vip: &str, port: u16, n: usize, mode: &str) -> Vec<Seen> {
    let out = in_cgroup(ns, cgroup, CLIENT, &format!("{vip} {port} {n} {mode}"))
        .output()
        .expect("client");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(parse)
        .collect()
}

/// One output line of a client.
fn parse(line: &str) -> Seen {
    let mut w = line.split_whitespace();
    let backend = w.next().unwrap_or_default().to_owned();
    let ip: std::net::IpAddr = w
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let port = w.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Seen {
        backend,
        peer: std::net::SocketAddr::new(ip, port),
    }
}

/// A client with one unconnected UDP socket to a VIP, kept open across exchanges
/// (in namespace `ns` and cgroup `cgroup`); killed on drop.
pub struct OneSocket {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl OneSocket {
    pub fn start(ns: &Netns, cgroup: &Path, vip: &str, port: u16) -> OneSocket {
        let mut child = in_cgroup(ns, cgroup, ONE_SOCKET, &format!("{vip} {port}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("client");
        let out = BufReader::new(child.stdout.take().unwrap());
        OneSocket { child, out }
    }

    /// `n` exchanges on the socket.
    pub fn exchange(&mut self, n: usize) -> Vec<Seen> {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{n}").unwrap();
        stdin.flush().unwrap();
        (0..n)
            .map(|_| {
                let mut line = String::new();
                self.out.read_line(&mut line).unwrap();
                parse(&line)
            })
            .collect()
    }
}

impl Drop for OneSocket {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client holding one TCP connection to a VIP open (in namespace `ns` and cgroup
/// `cgroup`) until [`HeldTcp::close`]; killed on drop.
pub struct HeldTcp {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl HeldTcp {
    /// Connects; returns once the server's line came, with what the client saw.
    pub fn start(ns: &Netns, cgroup: &Path, vip: &str, port: u16) -> (HeldTcp, Seen) {
        let mut child = in_cgroup(ns, cgroup, HELD, &format!("{vip} {port}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("client");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        (HeldTcp { child, out }, parse(&line))
    }

    /// Closes the connection; returns once the client did.
    pub fn close(mut self) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "closed", "the held connection's client");
    }
}

impl Drop for HeldTcp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
