//! Packet sockets (`AF_PACKET`, `SOCK_DGRAM`: network-layer bytes, the link layer added
//! or removed by the kernel) bound to one device of a network namespace: receiving with
//! the kernel's timestamps (one frame, or every frame on a thread of its own until
//! stopped), and sending a ready-made IP packet to a chosen MAC address.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::in_netns;

fn check(rc: libc::c_int, what: &str) {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
}

/// A packet socket on `dev` of namespace `ns` for every protocol, with receive
/// timestamps and a 50 ms receive timeout (so a reader can notice that it should stop).
pub(crate) fn packet_socket(ns: &str, dev: &str) -> OwnedFd {
    bound_socket(ns, dev).0
}

/// [`packet_socket`] and the device's interface index (for [`send`]).
pub(crate) fn bound_socket(ns: &str, dev: &str) -> (OwnedFd, i32) {
    let dev = std::ffi::CString::new(dev).unwrap();
    in_netns(ns, move || {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket calls on a descriptor this closure owns.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, proto as libc::c_int);
            check(fd, "socket(AF_PACKET)");
            let fd = OwnedFd::from_raw_fd(fd);
            let ifindex = libc::if_nametoindex(dev.as_ptr()) as i32;
            assert!(ifindex != 0, "no device {dev:?} in the namespace");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex;
            check(
                libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                ),
                "bind(AF_PACKET)",
            );
            let on: libc::c_int = 1;
            check(
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    &on as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as u32,
                ),
                "SO_TIMESTAMPNS",
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            check(
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const libc::timeval as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                ),
                "SO_RCVTIMEO",
            );
            (fd, ifindex)
        }
    })
}

/// Receives one frame: its network-layer bytes (truncated to the buffer), its packet
/// type, and the kernel's timestamp mapped onto `Instant`. None on timeout.
pub(crate) fn receive(fd: &OwnedFd, buf: &mut [u8]) -> Option<(usize, u8, Instant)> {
    let mut cmsg = [0u64; 16];
    // SAFETY: the buffers outlive the call; msghdr points only at them.
    unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = &mut sll as *mut libc::sockaddr_ll as *mut libc::c_void;
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cmsg);
        let n = libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_TRUNC);
        let (now, wall) = (Instant::now(), SystemTime::now());
        if n < 0 {
            return None;
        }
        let mut at = now;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::timespec);
                let stamp = UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                // How long ago the kernel stamped it, by the wall clock.
                if let Ok(ago) = wall.duration_since(stamp) {
                    at = now.checked_sub(ago).unwrap_or(now);
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Some(((n as usize).min(buf.len()), sll.sll_pkttype, at))
    }
}

/// A thread that receives every frame of a packet socket and hands it to a closure, until
/// stopped or dropped (the socket's receive timeout bounds the wait for it).
pub(crate) struct FrameReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FrameReader {
    /// Reads `fd` into a buffer of `buf_len` bytes (longer frames are truncated) and
    /// calls `on_frame` with each frame's bytes, packet type and time.
    pub(crate) fn spawn(
        fd: OwnedFd,
        buf_len: usize,
        mut on_frame: impl FnMut(&[u8], u8, Instant) + Send + 'static,
    ) -> FrameReader {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; buf_len];
                while !stop.load(Ordering::Relaxed) {
                    if let Some((n, pkttype, at)) = receive(&fd, &mut buf) {
                        on_frame(&buf[..n], pkttype, at);
                    }
                }
            })
        };
        FrameReader {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread and waits for it; again, it does nothing.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends one IPv4 or IPv6 packet (`packet`, from its IP header on) out of interface
/// `ifindex` to the Ethernet address `mac`; the kernel adds the Ethernet header.
pub(crate) fn send(fd: &OwnedFd, ifindex: i32, mac: [u8; 6], packet: &[u8]) {
    let ethertype = match packet.first().map(|b| b >> 4) {
        Some(4) => libc::ETH_P_IP,
        Some(6) => libc::ETH_P_IPV6,
        _ => panic!("not an IP packet: {packet:02x?}"),
    };
    // SAFETY: the address and buffer outlive the call.
    unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (ethertype as u16).to_be();
        sll.sll_ifindex = ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&mac);
        let n = libc::sendto(
            fd.as_raw_fd(),
            packet.as_ptr() as *const libc::c_void,
            packet.len(),
            0,
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        assert_eq!(
            n,
            packet.len() as isize,
            "sendto(AF_PACKET): {}",
            std::io::Error::last_os_error()
        );
    }
}
