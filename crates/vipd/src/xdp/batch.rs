//! `BPF_MAP_UPDATE_BATCH` (Linux 5.6+): many entries of a map written with one bpf(2)
//! call. A Maglev table change moves about 1/N of 65,537 entries; one syscall per entry
//! takes tens of milliseconds in a debug build, one batch about a millisecond, and the
//! sooner a quarantined backend's entries move, the fewer new connections reach it.
//! aya 0.14 has no wrapper, so this calls bpf(2) directly, like `test_run`.

use std::os::fd::{AsRawFd, BorrowedFd};

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of `union bpf_attr` (linux/bpf.h).
#[repr(C, align(8))]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Writes `values[i]` at `keys[i]` in the map `fd` (keys and values of 4 bytes each).
pub fn update_u32(fd: BorrowedFd<'_>, keys: &[u32], values: &[u32]) -> std::io::Result<()> {
    assert_eq!(keys.len(), values.len());
    let mut done = 0;
    while done < keys.len() {
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: (keys.len() - done) as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..Default::default()
        };
        // SAFETY: the kernel reads `count` keys and values from the two slices, which
        // outlive the call, and writes back only `attr.count`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_UPDATE_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The kernel reports how many it wrote; it may stop early.
        if attr.count == 0 {
            return Err(std::io::Error::other("BPF_MAP_UPDATE_BATCH wrote nothing"));
        }
        done += attr.count as usize;
    }
    Ok(())
}
