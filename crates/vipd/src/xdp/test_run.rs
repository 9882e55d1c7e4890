//! `BPF_PROG_TEST_RUN` for XDP programs: runs the program once (or `repeat` times) on a
//! packet given from userspace and returns the verdict and the packet as the program
//! left it. aya 0.14 has no wrapper, so this calls bpf(2) directly; the unsafe is the
//! one syscall, with every pointer it carries valid for the call.
//!
//! The run happens in the calling thread's network namespace: `bpf_fib_lookup` sees
//! that namespace's routes and neighbours, and `ingress_ifindex` must name one of its
//! interfaces.

use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (linux/bpf.h), up to `batch_size`.
#[repr(C, align(8))]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `struct xdp_md`: the context an XDP program gets.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

/// What one run gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The XDP action (`XDP_PASS` = 2, `XDP_TX` = 3, ...).
    pub action: u32,
    /// The packet after the program.
    pub packet: Vec<u8>,
    /// Mean nanoseconds per run, as the kernel measured.
    pub duration_ns: u32,
}

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// Runs the XDP program `prog` on `packet`, `repeat` times (>= 1), as if it arrived on
/// interface `ingress_ifindex` (0: the namespace's loopback).
pub fn run(
    prog: BorrowedFd<'_>,
    packet: &[u8],
    ingress_ifindex: u32,
    repeat: u32,
) -> std::io::Result<RunResult> {
    let mut out = vec![0u8; packet.len() + 256];
    let ctx = XdpMd {
        data_end: packet.len() as u32,
        ingress_ifindex,
        ..Default::default()
    };
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: packet.len() as u32,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: repeat.max(1),
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: &ctx as *const XdpMd as u64,
        ..Default::default()
    };
    // SAFETY: bpf(BPF_PROG_TEST_RUN) reads `packet` and `ctx` (sizes given) and writes at
    // most `data_size_out` bytes to `out`; all three outlive the call, and `attr` is a
    // correctly laid out prefix of union bpf_attr with the rest zero.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &mut attr as *mut TestRunAttr,
            std::mem::size_of::<TestRunAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    out.truncate(attr.data_size_out as usize);
    Ok(RunResult {
        action: attr.retval,
        packet: out,
        duration_ns: attr.duration,
    })
}
