//! Helpers for the VM integration tests. These tests need IPVS and kprobes, which the
//! development host lacks: they run inside the VM (`cargo xtask vm-test`) and fail
//! loudly anywhere else, never skip.

pub mod lab;
pub mod servers;
pub mod vipd_cli;

use std::{fs::File, os::fd::AsRawFd, process::Command};

/// Panics unless running inside the test VM (the runner boots with `vipd.vm=1`).
pub fn require_vm() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    assert!(
        cmdline.split_whitespace().any(|w| w == "vipd.vm=1"),
        "this test needs IPVS and kprobes and runs only inside the VM: cargo xtask vm-test"
    );
}

/// Runs a command line with bash; panics with its output if it fails. Returns stdout.
/// (Not busybox sh: the VM's static busybox runs its own `ip` applet even when
/// iproute2's is first on PATH.)
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread that has entered network namespace `ns` (created with
/// `ip netns add`). Sockets created there stay in that namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        // SAFETY: a valid namespace descriptor; setns affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread panicked")
}
