//! What every plane's map writes share.

use aya::maps::MapError;

/// A map removal as whether the key was there: `Ok(false)` when it was not. aya reports
/// that as the kernel's ENOENT from `bpf_map_delete_elem`, not as `KeyNotFound` (which
/// only its lookups return); both are taken.
pub(crate) fn removed(r: Result<(), MapError>) -> Result<bool, MapError> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use aya::sys::SyscallError;

    use super::*;

    fn syscall(errno: i32) -> MapError {
        MapError::SyscallError(SyscallError {
            call: "bpf_map_delete_elem",
            io_error: std::io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn an_absent_key_is_not_an_error_and_other_failures_are() {
        assert!(removed(Ok(())).unwrap());
        assert!(!removed(Err(syscall(libc::ENOENT))).unwrap());
        assert!(!removed(Err(MapError::KeyNotFound)).unwrap());
        assert!(removed(Err(syscall(libc::EPERM))).is_err());
    }
}
