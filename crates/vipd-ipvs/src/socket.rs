//! A blocking `NETLINK_GENERIC` socket (over `netlink-sys`) with a reusable receive buffer.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use crate::error::{Error, Result};

/// Receive buffer per datagram. Kernel dump datagrams are bounded well below this (the
/// netlink dump allocator caps them at 32 KiB); anything larger is reported as truncated
/// rather than silently cut (`MSG_TRUNC`).
const RECV_BUF: usize = 256 * 1024;

/// `SO_RCVBUF` asked for (the kernel caps it at `net.core.rmem_max`). Acks of a batch window
/// queue up here before they are read.
const SOCKET_RCVBUF: libc::c_int = 1 << 20;

/// What the client needs from a socket; a scripted fake stands in for it in unit tests.
pub(crate) trait Transport: Send {
    /// Sends one datagram (which may hold several netlink messages).
    fn send(&mut self, datagram: &[u8]) -> Result<()>;
    /// Receives one datagram.
    fn recv(&mut self) -> Result<&[u8]>;
    /// Sets the receive timeout; `None` waits forever.
    fn set_recv_timeout(&mut self, timeout: Option<Duration>) -> Result<()>;
}

pub(crate) struct NlSocket {
    sock: Socket,
    rbuf: Vec<u8>,
}

impl NlSocket {
    /// Opens, binds (kernel-assigned port id) and connects to the kernel (port 0).
    /// Turns on `NETLINK_EXT_ACK` (error strings) and `NETLINK_CAP_ACK` (acks without the
    /// request echoed back) where the kernel supports them.
    pub(crate) fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_GENERIC)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Optional features: older kernels refuse them, which changes nothing here.
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        let _ = sock.set_rx_buf_sz(SOCKET_RCVBUF);
        Ok(NlSocket {
            sock,
            rbuf: Vec::with_capacity(RECV_BUF),
        })
    }
}

impl Transport for NlSocket {
    fn send(&mut self, datagram: &[u8]) -> Result<()> {
        loop {
            match self.sock.send(datagram, 0) {
                Ok(n) if n == datagram.len() => return Ok(()),
                Ok(n) => {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("netlink send wrote {n} of {} bytes", datagram.len()),
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    fn recv(&mut self) -> Result<&[u8]> {
        self.rbuf.clear();
        self.rbuf.reserve(RECV_BUF);
        loop {
            match self.sock.recv(&mut self.rbuf, libc::MSG_TRUNC) {
                Ok(n) if n > self.rbuf.len() => {
                    return Err(Error::Truncated {
                        what: "netlink datagram (larger than the receive buffer)",
                        need: n,
                        have: self.rbuf.len(),
                    })
                }
                Ok(_) => return Ok(&self.rbuf),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Err(Error::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no reply from the kernel within the receive timeout",
                    )))
                }
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    /// Sets `SO_RCVTIMEO`; `None` (or zero) waits forever.
    fn set_recv_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let d = timeout.unwrap_or(Duration::ZERO);
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            // Below 1_000_000, so it fits any suseconds_t.
            tv_usec: d.subsec_micros() as libc::suseconds_t,
        };
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::timeval>())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `tv` is a valid, initialised `timeval` that outlives the call, and `len` is
        // its size; the fd is owned by `self.sock` and open.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast::<libc::c_void>(),
                len,
            )
        };
        if rc < 0 {
            return Err(Error::Io(io::Error::last_os_error()));
        }
        Ok(())
    }
}
