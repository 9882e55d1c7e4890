//! The ICMP error hook of the socket plane: `vipd_sock_error` on the tp_btf
//! `inet_sk_error_report`, which is handed the socket. It reads the socket at offsets
//! from this kernel's BTF; a kernel without BTF or that tracepoint gets no passive
//! reports of UDP errors, and the plane says so.

use vipd_common::sock::SockErrorOffsets;

use crate::kernel::{btf::Btf, offsets};

/// The program and the tracepoint it attaches to.
pub const ERROR_PROGRAM: &str = "vipd_sock_error";
pub const TRACEPOINT: &str = "inet_sk_error_report";

/// The global the offsets go into.
pub const OFFSETS_GLOBAL: &str = "SOCK_ERROR_SK";

/// The socket's offsets in the kernel's `btf` (or why it could not be read), or why the
/// hook cannot run here.
pub fn offsets(btf: Result<&Btf, &str>) -> Result<SockErrorOffsets, String> {
    offsets::sock_error(btf?).map_err(|e| e.to_string())
}

/// The oldest kernel with the `inet_sk_error_report` tracepoint.
pub const MIN_KERNEL: (u32, u32) = (5, 14);

/// Why ICMP errors will not be reported on a kernel of `version` (`major.minor`, if
/// known) whose BTF gave `offsets`, if they will not be.
pub fn unavailable(
    version: Option<(u32, u32)>,
    offsets: Result<SockErrorOffsets, String>,
) -> Option<String> {
    match (version, offsets) {
        (Some(v), _) if v < MIN_KERNEL => Some(format!(
            "{TRACEPOINT} is new in Linux {}.{}",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        (_, Err(e)) => Some(e),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_kernel_or_missing_btf_is_named() {
        let ok = || Ok(SockErrorOffsets::UNSET);
        assert_eq!(unavailable(Some((6, 1)), ok()), None);
        assert_eq!(unavailable(None, ok()), None);
        let old = unavailable(Some((5, 10)), ok()).unwrap();
        assert!(old.contains("5.14"), "{old}");
        let e = unavailable(Some((6, 12)), Err("cannot read BTF".into())).unwrap();
        assert_eq!(e, "cannot read BTF");
    }

    #[test]
    fn this_hosts_btf_gives_the_offsets() {
        let btf = Btf::from_sys_fs(None).unwrap();
        assert_eq!(offsets(Ok(&btf)).unwrap().sock.valid, 1);
        assert_eq!(offsets(Err("no BTF")).unwrap_err(), "no BTF");
    }
}
