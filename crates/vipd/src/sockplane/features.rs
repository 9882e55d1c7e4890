//! What the socket data plane needs from this host's kernel, for `vipd check`: read
//! only, nothing is loaded. A missing requirement is an error naming it; a missing
//! extra (refusal or UDP error reports) is a note.

use std::path::Path;

pub use crate::plane::features::Features;
use crate::{
    config::SocketSettings,
    fs_type,
    kernel::btf::Btf,
    plane::features::{kernel_release, release_version, require_kernel},
};

/// The oldest kernel with every hook the plane attaches (`getpeername4/6`: 5.8;
/// `sock_release`: 5.9).
pub const MIN_KERNEL: (u32, u32) = (5, 9);

/// Checks the host for `s`.
pub fn check(s: &SocketSettings) -> Features {
    let mut out = Features::default();
    require_kernel(
        MIN_KERNEL,
        "socket",
        "cgroup getpeername and sock_release hooks",
        &mut out,
    );
    cgroup(&s.cgroup, &mut out);
    let btf = Btf::from_sys_fs(None).map_err(|e| e.to_string());
    let btf = btf.as_ref().map_err(String::as_str);
    if let Err(e) = super::reset::offsets(btf) {
        out.notes.push(format!(
            "TCP refusals will not be reported by the socket data plane ({e}); active checks still catch them"
        ));
    }
    let version = kernel_release().as_deref().and_then(release_version);
    if let Some(why) = super::error_report::unavailable(version, super::error_report::offsets(btf))
    {
        out.notes.push(format!(
            "ICMP errors on connected UDP sockets will not be reported by the socket data plane ({why}); active checks still catch them"
        ));
    }
    let build =
        kernel_release().and_then(|r| std::fs::read_to_string(format!("/boot/config-{r}")).ok());
    match super::udp_err::offsets(btf) {
        Err(e) => out
            .notes
            .push(format!("{UNCONNECTED_ERRORS} ({e}){ACTIVE}")),
        Ok(_) => out.notes.extend(fentry_note(build.as_deref())),
    }
    out.notes.extend(udp_destroy_note(build.as_deref()));
    if !fs_type::magic(Path::new("/sys/fs/bpf")).is_ok_and(|m| m == fs_type::BPF_FS_MAGIC) {
        out.notes
            .push("bpffs is not mounted on /sys/fs/bpf; vipd run mounts it".into());
    }
    out
}

const UNCONNECTED_ERRORS: &str =
    "ICMP errors about unconnected UDP datagrams will not be reported by the socket data plane";
const ACTIVE: &str = "; active checks still catch them";

/// A note when the kernel's build options (`/boot/config-<release>`, if there) say it
/// has no BPF trampolines, which the fentry programs on `udp_err`/`icmpv6_notify` need.
/// (A kernel can have them and still refuse: `vipd run` says so when it attaches.)
fn fentry_note(build: Option<&str>) -> Option<String> {
    let build = build?;
    let option = "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS";
    (!build.lines().any(|l| l == format!("{option}=y")))
        .then(|| format!("{UNCONNECTED_ERRORS} (the kernel is built without {option}, which fentry programs need){ACTIVE}"))
}

/// A note when the kernel's build options (`/boot/config-<release>`, if there) say it
/// cannot destroy sockets or dump UDP ones: connected UDP sockets of a backend taken out
/// then stay on it.
fn udp_destroy_note(build: Option<&str>) -> Option<String> {
    let build = build?;
    let has = |option: &str| {
        build
            .lines()
            .any(|l| l == format!("{option}=y") || l == format!("{option}=m"))
    };
    let missing: Vec<&str> = ["CONFIG_INET_DIAG_DESTROY", "CONFIG_INET_UDP_DIAG"]
        .into_iter()
        .filter(|o| !has(o))
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "connected UDP sockets of a backend taken out will not be moved by the socket data plane: the kernel is built without {}",
            missing.join(" and ")
        )
    })
}

fn cgroup(dir: &Path, out: &mut Features) {
    match fs_type::magic(dir) {
        Ok(fs_type::CGROUP2_SUPER_MAGIC) => {}
        Ok(_) => out.errors.push(format!(
            "[socket] cgroup {} is not a cgroup v2 directory (mount cgroup2, or name a directory on it)",
            dir.display()
        )),
        Err(e) => out
            .errors
            .push(format!("[socket] cgroup {}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_kernels_are_below_the_minimum() {
        assert!(release_version("5.4.0").unwrap() < MIN_KERNEL);
        assert!(release_version("5.8.0").unwrap() < MIN_KERNEL);
        assert!(release_version("5.9.0").unwrap() >= MIN_KERNEL);
    }

    #[test]
    fn a_kernel_that_cannot_destroy_udp_sockets_gets_a_note() {
        let debian = "CONFIG_INET_DIAG=m\nCONFIG_INET_UDP_DIAG=m\nCONFIG_INET_DIAG_DESTROY=y\n";
        assert_eq!(udp_destroy_note(Some(debian)), None);
        assert_eq!(udp_destroy_note(None), None);
        let without = "CONFIG_INET_UDP_DIAG=m\n# CONFIG_INET_DIAG_DESTROY is not set\n";
        let note = udp_destroy_note(Some(without)).unwrap();
        assert!(
            note.ends_with("built without CONFIG_INET_DIAG_DESTROY"),
            "{note}"
        );
    }

    #[test]
    fn a_kernel_without_bpf_trampolines_gets_a_note() {
        let debian = "CONFIG_FUNCTION_TRACER=y\nCONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS=y\n";
        assert_eq!(fentry_note(Some(debian)), None);
        assert_eq!(fentry_note(None), None);
        let note = fentry_note(Some("# CONFIG_FUNCTION_TRACER is not set\n")).unwrap();
        assert!(note.starts_with(UNCONNECTED_ERRORS), "{note}");
        assert!(
            note.contains("built without CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS"),
            "{note}"
        );
    }

    #[test]
    fn a_cgroup_that_is_not_cgroup2_is_an_error_naming_it() {
        let mut out = Features::default();
        cgroup(Path::new("/proc"), &mut out);
        assert_eq!(
            out.errors,
            ["[socket] cgroup /proc is not a cgroup v2 directory (mount cgroup2, or name a directory on it)"]
        );
        let mut out = Features::default();
        cgroup(Path::new("/nonexistent/vipd"), &mut out);
        assert!(
            out.errors[0].starts_with("[socket] cgroup /nonexistent/vipd: "),
            "{out:?}"
        );
    }
}
