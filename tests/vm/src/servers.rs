//! Backend servers: a TCP greeting server (`hello from <ns>`, then close), a TCP echo
//! server that keeps connections open, a TCP sink for bulk uploads, a TCP server that tells each client the address
//! it sees the connection come from (`peer <addr> <ns>`, then close), and UDP servers
//! that answer each datagram with their namespace's name, or with the address the
//! datagram came from. [`whoami_tcp`] and [`whoami_udp`] ask the latter two through a
//! VIP: what a backend sees of the client host.
//!
//! The TCP servers are registered with the [`Lab`], so that a fault can close a
//! backend's listener ([`Lab::kill_server`]: the namespace then answers SYNs to that port
//! with RST) and start it again on the same port ([`Lab::restart_server`]). Connections
//! already accepted are not touched by either.

use std::{
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use crate::{
    in_netns,
    lab::{Lab, Served},
};

/// What a TCP server does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Writes `hello from <ns>` and closes.
    Greeting,
    /// Answers each line with `<ns>: <line>` until the client closes.
    Echo,
    /// Writes `peer <addr> <ns>\n`, `<addr>` being the connection's remote address as
    /// the backend sees it (`198.18.250.2:40000`, `[fd00:18:fa::2]:40000`), and closes.
    Peer,
    /// Reads and discards everything until the client closes, then closes (a bulk
    /// upload's receiver).
    Sink,
}

/// A running listener: closing it makes the accept loop end.
pub(crate) struct Listening {
    listener: Arc<TcpListener>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Listening {
    /// Starts `kind` on `addr` inside network namespace `ns`.
    fn start(ns: &str, addr: SocketAddr, kind: Kind) -> Self {
        let listener = in_netns(ns, move || {
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr} in backend netns: {e}"))
        });
        let listener = Arc::new(listener);
        let stop = Arc::new(AtomicBool::new(false));
        let name = ns.to_string();
        let thread = {
            let (listener, stop) = (listener.clone(), stop.clone());
            thread::spawn(move || accept_loop(&listener, &stop, kind, &name))
        };
        Listening {
            listener,
            stop,
            thread,
        }
    }

    /// Closes the listener at once (no SYN is accepted after this returns) and waits for
    /// the accept loop to end.
    fn close(self) {
        self.stop.store(true, Ordering::SeqCst);
        // shutdown() on a listening TCP socket moves it to CLOSE (so new SYNs get RST)
        // and wakes a blocked accept() with EINVAL.
        // SAFETY: the descriptor is valid while `self.listener` lives.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        let _ = self.thread.join();
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, kind: Kind, name: &str) {
    loop {
        match listener.accept() {
            Ok((conn, peer)) => match kind {
                Kind::Greeting => {
                    let mut conn = conn;
                    let _ = conn.write_all(format!("hello from {name}").as_bytes());
                }
                Kind::Peer => {
                    let mut conn = conn;
                    let _ = conn.write_all(peer_line(peer, name).as_bytes());
                }
                Kind::Echo => {
                    let name = name.to_string();
                    thread::spawn(move || echo(conn, &name));
                }
                Kind::Sink => {
                    thread::spawn(move || std::io::copy(&mut &conn, &mut std::io::sink()));
                }
            },
            Err(_) if stop.load(Ordering::SeqCst) => return,
            // ECONNABORTED and the like: keep serving; EMFILE: do not spin.
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn echo(conn: TcpStream, name: &str) {
    let Ok(mut w) = conn.try_clone() else { return };
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        if writeln!(w, "{name}: {line}").is_err() {
            return;
        }
    }
}

impl Lab {
    /// Starts `kind` on backend `i` at `port`, bound to the backend's address (or to
    /// every address of its namespace, `any`). Returns the backend's address and `port`.
    fn serve(&self, i: usize, port: u16, kind: Kind, any: bool) -> SocketAddr {
        let b = &self.backends[i];
        let addr = SocketAddr::new(b.addr, port);
        let bind = if any { unspecified(addr) } else { addr };
        let running = Listening::start(&b.ns, bind, kind);
        self.servers.lock().unwrap().push(Served {
            backend: i,
            bind,
            kind,
            running: Some(running),
        });
        addr
    }

    /// Starts a TCP server on backend `i` (0-based) at `port` that answers each
    /// connection with `hello from <ns>` and closes it. Returns its address.
    pub fn serve_greeting(&self, i: usize, port: u16) -> SocketAddr {
        self.serve(i, port, Kind::Greeting, false)
    }

    /// A TCP server on backend `i` at `port` that answers each line with `<ns>: <line>`
    /// and keeps the connection until the client closes it.
    pub fn serve_echo(&self, i: usize, port: u16) -> SocketAddr {
        self.serve(i, port, Kind::Echo, false)
    }

    /// A TCP server on backend `i` at `port` that answers each connection with
    /// `peer <addr> <ns>` (the address the connection comes from, as the backend sees
    /// it) and closes it. Ask it with [`whoami_tcp`].
    pub fn serve_peer(&self, i: usize, port: u16) -> SocketAddr {
        self.serve(i, port, Kind::Peer, false)
    }

    /// A TCP server on backend `i` at `port` that reads and discards what each client
    /// sends, and closes when the client does.
    pub fn serve_sink(&self, i: usize, port: u16) -> SocketAddr {
        self.serve(i, port, Kind::Sink, false)
    }

    /// [`Lab::serve_peer`] listening on every address of backend `i`'s namespace (the
    /// unspecified address of the lab's family), e.g. also on a VIP the backend holds, as
    /// a real server of a tunnel-mode service does. Returns the backend's address and
    /// `port`.
    pub fn serve_peer_any(&self, i: usize, port: u16) -> SocketAddr {
        self.serve(i, port, Kind::Peer, true)
    }

    /// Closes the listeners of every TCP server on backend `i` (greeting, echo, peer): from
    /// when this returns, the namespace answers SYNs to those ports with RST. Accepted
    /// connections stay. Returns how many listeners were closed; panics if none was open.
    pub fn kill_server(&self, i: usize) -> usize {
        let mut servers = self.servers.lock().unwrap();
        let mut closed = 0;
        for s in servers.iter_mut().filter(|s| s.backend == i) {
            if let Some(l) = s.running.take() {
                l.close();
                closed += 1;
            }
        }
        assert!(closed > 0, "backend {i} has no running TCP server to kill");
        closed
    }

    /// Starts again, on the same ports, every server [`Lab::kill_server`] closed on
    /// backend `i`. Returns how many; panics if none was down.
    pub fn restart_server(&self, i: usize) -> usize {
        let mut servers = self.servers.lock().unwrap();
        let ns = self.backends[i].ns.clone();
        let mut started = 0;
        for s in servers
            .iter_mut()
            .filter(|s| s.backend == i && s.running.is_none())
        {
            s.running = Some(Listening::start(&ns, s.bind, s.kind));
            started += 1;
        }
        assert!(
            started > 0,
            "backend {i} has no stopped TCP server to restart"
        );
        started
    }

    /// Closes every listener and UDP server the lab started (when the lab is dropped).
    pub(crate) fn close_servers(&self) {
        let mut servers = self.servers.lock().unwrap();
        for s in servers.iter_mut() {
            if let Some(l) = s.running.take() {
                l.close();
            }
        }
        for u in self.udp.lock().unwrap().drain(..) {
            u.stop();
        }
    }

    /// A UDP server on backend `i` at `port` that answers every datagram with its
    /// namespace's name (`vb1`, ...).
    pub fn serve_udp_name(&self, i: usize, port: u16) -> SocketAddr {
        self.serve_udp(i, port, false, |ns, _| ns.as_bytes().to_vec())
    }

    /// A UDP server on backend `i` at `port` that answers every datagram with
    /// `peer <addr> <ns>` (the address the datagram came from, as the backend sees it).
    /// Ask it with [`whoami_udp`].
    pub fn serve_udp_peer(&self, i: usize, port: u16) -> SocketAddr {
        self.serve_udp(i, port, false, |ns, from| peer_line(from, ns).into_bytes())
    }

    /// [`Lab::serve_udp_peer`] on every address of the lab's family that backend `i`'s
    /// namespace has when it starts (e.g. also a VIP it holds, see
    /// [`Lab::serve_peer_any`]): one socket per address, so that each answer leaves from
    /// the address its datagram was sent to. Returns the backend's address and `port`.
    pub fn serve_udp_peer_any(&self, i: usize, port: u16) -> SocketAddr {
        self.serve_udp(i, port, true, |ns, from| peer_line(from, ns).into_bytes())
    }

    /// Starts a UDP server on backend `i` at `port` (bound to the backend's address, or
    /// to each of its namespace's addresses, `any`) that answers each datagram with
    /// `answer(namespace, sender)`; it runs until the lab is dropped. Returns the
    /// backend's address and `port`.
    fn serve_udp(
        &self,
        i: usize,
        port: u16,
        any: bool,
        answer: impl Fn(&str, SocketAddr) -> Vec<u8> + Send + Sync + 'static,
    ) -> SocketAddr {
        let b = &self.backends[i];
        let addr = SocketAddr::new(b.addr, port);
        let binds = if any {
            namespace_addresses(&b.ns, addr.is_ipv4())
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect()
        } else {
            vec![addr]
        };
        let stop = Arc::new(AtomicBool::new(false));
        let answer = Arc::new(answer);
        let threads = binds
            .into_iter()
            .map(|bind| {
                let sock = in_netns(&b.ns, move || UdpSocket::bind(bind))
                    .unwrap_or_else(|e| panic!("bind {bind} in backend netns: {e}"));
                sock.set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("setting a read timeout");
                let (stop, answer, name) = (stop.clone(), answer.clone(), b.ns.clone());
                thread::spawn(move || {
                    let mut buf = [0u8; 1500];
                    while !stop.load(Ordering::SeqCst) {
                        if let Ok((_, from)) = sock.recv_from(&mut buf) {
                            let _ = sock.send_to(&answer(&name, from), from);
                        }
                    }
                })
            })
            .collect();
        self.udp.lock().unwrap().push(UdpServer { stop, threads });
        addr
    }
}

/// The addresses of one family in namespace `ns` (but link-local ones).
fn namespace_addresses(ns: &str, v4: bool) -> Vec<IpAddr> {
    let listing = crate::sh(&format!(
        "ip -n {ns} -o {} addr show",
        if v4 { "-4" } else { "-6" }
    ));
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
        .filter(|ip: &IpAddr| !matches!(ip, IpAddr::V6(a) if a.is_unicast_link_local()))
        .collect()
}

/// `addr`'s family's unspecified address, with its port.
fn unspecified(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, addr.port()).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, addr.port()).into(),
    }
}

/// A UDP server the lab started: a thread per socket answering datagrams until told to
/// stop.
pub(crate) struct UdpServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl UdpServer {
    /// Stops the server and closes its socket (within its 50 ms read timeout).
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// What a peer server ([`Kind::Peer`], [`Lab::serve_udp_peer`]) answers to `peer`.
fn peer_line(peer: SocketAddr, ns: &str) -> String {
    format!("peer {peer} {ns}\n")
}

/// What a backend saw of a client: the answer of a peer server, and the client's own
/// socket address for the same connection (or datagram).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// The backend that answered (its namespace, `vb1`, ...).
    pub backend: String,
    /// The address the connection or datagram came from, as the backend saw it.
    pub seen: SocketAddr,
    /// The client socket's own local address (after connecting).
    pub local: SocketAddr,
}

fn parse_peer(text: &str, local: SocketAddr) -> std::io::Result<PeerView> {
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a peer server's answer: {text:?}"),
        )
    };
    let mut words = text.split_whitespace();
    if words.next() != Some("peer") {
        return Err(bad());
    }
    let seen = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
    let backend = words.next().ok_or_else(bad)?.to_string();
    Ok(PeerView {
        backend,
        seen,
        local,
    })
}

/// Connects to `dst` (a VIP whose backends run [`Lab::serve_peer`]) and returns what the
/// backend saw: whose address the connection came from.
pub fn whoami_tcp(dst: SocketAddr, timeout: Duration) -> std::io::Result<PeerView> {
    let mut s = TcpStream::connect_timeout(&dst, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let local = s.local_addr()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text)?;
    parse_peer(&text, local)
}

/// Sends one datagram to `dst` (a VIP whose backends run [`Lab::serve_udp_peer`]) from
/// an ephemeral port and returns what the backend saw of it.
pub fn whoami_udp(dst: SocketAddr, timeout: Duration) -> std::io::Result<PeerView> {
    let s = UdpSocket::bind(unspecified(SocketAddr::new(dst.ip(), 0)))?;
    s.connect(dst)?;
    s.set_read_timeout(Some(timeout))?;
    s.send(b"who am i")?;
    let mut buf = [0u8; 256];
    let n = s.recv(&mut buf)?;
    parse_peer(&String::from_utf8_lossy(&buf[..n]), s.local_addr()?)
}
