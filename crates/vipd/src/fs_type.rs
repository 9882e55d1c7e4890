//! Which file system a path is on (`statfs`), and mounting bpffs where pinning needs it:
//! shared by the data planes that pin kernel objects.

use std::{ffi::CString, io, path::Path};

/// `f_type` of bpffs and of cgroup v2 (linux/magic.h).
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The `f_type` of the file system `path` is on.
pub fn magic(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    // SAFETY: statfs fills the zeroed struct; the path is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type as i64)
}

/// Mounts bpffs on /sys/fs/bpf unless it is there already (pinning needs it).
pub fn ensure_bpffs() -> io::Result<()> {
    if magic(Path::new("/sys/fs/bpf")).is_ok_and(|m| m == BPF_FS_MAGIC) {
        return Ok(());
    }
    // SAFETY: plain mount(2) with valid C strings.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
