//! Backend servers: a TCP greeting server (`hello from <ns>`, then close), a TCP echo
//! server that keeps connections open, and a UDP server that answers each datagram with
//! its namespace's name.
//!
//! The TCP servers are registered with the [`Lab`], so that a fault can close a
//! backend's listener ([`Lab::kill_server`]: the namespace then answers SYNs to that port
//! with RST) and start it again on the same port ([`Lab::restart_server`]). Connections
//! already accepted are not touched by either.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
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
            Ok((conn, _)) => match kind {
                Kind::Greeting => {
                    let mut conn = conn;
                    let _ = conn.write_all(format!("hello from {name}").as_bytes());
                }
                Kind::Echo => {
                    let name = name.to_string();
                    thread::spawn(move || echo(conn, &name));
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
    fn serve(&self, i: usize, port: u16, kind: Kind) -> SocketAddr {
        let b = &self.backends[i];
        let addr = SocketAddr::new(b.addr, port);
        let running = Listening::start(&b.ns, addr, kind);
        self.servers.lock().unwrap().push(Served {
            backend: i,
            port,
            kind,
            running: Some(running),
        });
        addr
    }

    /// Starts a TCP server on backend `i` (0-based) at `port` that answers each
    /// connection with `hello from <ns>` and closes it. Returns its address.
    pub fn serve_greeting(&self, i: usize, port: u16) -> SocketAddr {
        self.serve(i, port, Kind::Greeting)
    }

    /// A TCP server on backend `i` at `port` that answers each line with `<ns>: <line>`
    /// and keeps the connection until the client closes it.
    pub fn serve_echo(&self, i: usize, port: u16) -> SocketAddr {
        self.serve(i, port, Kind::Echo)
    }

    /// Closes the listeners of every TCP server on backend `i` (greeting and echo): from
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
        let addr = self.backends[i].addr;
        let mut started = 0;
        for s in servers
            .iter_mut()
            .filter(|s| s.backend == i && s.running.is_none())
        {
            s.running = Some(Listening::start(&ns, SocketAddr::new(addr, s.port), s.kind));
            started += 1;
        }
        assert!(
            started > 0,
            "backend {i} has no stopped TCP server to restart"
        );
        started
    }

    /// Closes every listener the lab started (when the lab is dropped).
    pub(crate) fn close_servers(&self) {
        let mut servers = self.servers.lock().unwrap();
        for s in servers.iter_mut() {
            if let Some(l) = s.running.take() {
                l.close();
            }
        }
    }

    /// A UDP server on backend `i` at `port` that answers every datagram with its
    /// namespace's name (`vb1`, ...).
    pub fn serve_udp_name(&self, i: usize, port: u16) -> SocketAddr {
        let b = &self.backends[i];
        let addr = SocketAddr::new(b.addr, port);
        let sock = in_netns(&b.ns, move || {
            UdpSocket::bind(addr).expect("bind in backend netns")
        });
        let name = b.ns.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((_, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(name.as_bytes(), from);
            }
        });
        addr
    }
}
