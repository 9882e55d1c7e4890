//! A packet generator for the benchmark: prebuilt Ethernet frames sent from inside a
//! namespace with an AF_PACKET socket (qdisc bypassed, `sendmmsg` batches), so the
//! sender's own cost per packet stays small next to what is measured downstream.

use std::{
    ffi::CString,
    time::{Duration, Instant},
};

use super::Netns;

/// Sends `frames` round robin on `dev` in `ns` for `dur`; returns how many the kernel
/// took.
pub fn blast(ns: &Netns, dev: &str, frames: &[Vec<u8>], dur: Duration) -> u64 {
    let dev = dev.to_owned();
    ns.enter(move || {
        let name = CString::new(dev).unwrap();
        // SAFETY: plain socket calls with valid arguments; every pointer handed to the
        // kernel (addresses, iovecs into `frames`, message headers) outlives the call.
        unsafe {
            let ifindex = libc::if_nametoindex(name.as_ptr());
            assert!(ifindex != 0, "no interface");
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as u32,
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
            let rc = libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            const BATCH: usize = 64;
            let mut iov: Vec<libc::iovec> = Vec::with_capacity(frames.len());
            for f in frames {
                iov.push(libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                });
            }
            let mut sent = 0u64;
            let mut next = 0usize;
            let deadline = Instant::now() + dur;
            let mut msgs: Vec<libc::mmsghdr> = vec![std::mem::zeroed(); BATCH];
            while Instant::now() < deadline {
                for m in msgs.iter_mut() {
                    m.msg_hdr.msg_iov = &mut iov[next] as *mut libc::iovec;
                    m.msg_hdr.msg_iovlen = 1;
                    next = (next + 1) % iov.len();
                }
                let n = libc::sendmmsg(fd, msgs.as_mut_ptr(), BATCH as u32, 0);
                if n > 0 {
                    sent += n as u64;
                }
            }
            libc::close(fd);
            sent
        }
    })
}
