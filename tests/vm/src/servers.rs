//! Backend servers for the reconciler tests: a TCP echo server that keeps connections
//! open, and a UDP server that answers each datagram with its namespace's name.

use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, UdpSocket},
    thread,
};

use crate::{in_netns, lab::Lab};

impl Lab {
    /// A TCP server on backend `i` at `port` that answers each line with `<ns>: <line>`
    /// and keeps the connection until the client closes it.
    pub fn serve_echo(&self, i: usize, port: u16) -> SocketAddr {
        let b = &self.backends[i];
        let addr = SocketAddr::new(b.addr, port);
        let listener = in_netns(&b.ns, move || {
            TcpListener::bind(addr).expect("bind in backend netns")
        });
        let name = b.ns.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let name = name.clone();
                thread::spawn(move || {
                    let mut w = match conn.try_clone() {
                        Ok(w) => w,
                        Err(_) => return,
                    };
                    for line in BufReader::new(conn).lines() {
                        let Ok(line) = line else { return };
                        if writeln!(w, "{name}: {line}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
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
