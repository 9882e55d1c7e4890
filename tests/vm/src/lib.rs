//! Helpers for the VM integration tests. These tests need IPVS and kprobes, which the
//! development host lacks: they run inside the VM (`cargo xtask vm-test`) and fail
//! loudly anywhere else, never skip. The lab also runs natively, on a host with the
//! socket data plane's features ([`native`]): the native demo and its host test.

pub mod bpf_stats;
pub mod conformance;
pub mod conn_bench;
pub mod daemon;
pub mod dns;
pub mod failover;
pub mod keepalived;
pub mod lab;
pub mod load;
pub mod native;
pub(crate) mod packet_socket;
pub mod proc_cpu;
pub mod remote_server;
pub mod servers;
pub mod socket_bench;
pub mod socket_records;
pub mod stats;
pub mod syn;
pub mod tcp_client;
pub mod vipd_cli;
pub mod watch;
pub mod weights;

use std::{fs::File, os::fd::AsRawFd, process::Command};

/// Panics unless running inside the test VM (the runner boots with `vipd.vm=1`).
pub fn require_vm() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    assert!(
        cmdline.split_whitespace().any(|w| w == "vipd.vm=1"),
        "this test needs IPVS and kprobes and runs only inside the VM: cargo xtask vm-test"
    );
}

/// The VM kernel's build option `option` (`m`, `y`, ...), None when it is not set: the
/// runner puts the kernel's configuration into the image as /vipd/kernel.config, so that
/// a test knows what this kernel was built with and what it was built without.
pub fn kernel_option(option: &str) -> Option<String> {
    let config = std::fs::read_to_string("/vipd/kernel.config")
        .expect("reading /vipd/kernel.config (written by cargo xtask vm-test)");
    config.lines().find_map(|l| {
        l.strip_prefix(option)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_owned)
    })
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

/// Moves the calling thread into network namespace `ns` (created with `ip netns add`)
/// for good; threads it starts from now on start there too.
pub fn enter_netns(ns: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).map_err(|e| anyhow::anyhow!("opening {path}: {e}"))?;
    // SAFETY: a valid namespace descriptor; setns affects only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        anyhow::bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of the kernel programs' timestamps
/// (`bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Gives the calling thread a real-time priority (SCHED_FIFO `priority`), so that a busy
/// emulated VM does not delay what it times (the weight watcher's polls, the load's
/// schedule). Best effort: returns false where that is not permitted. Threads it spawns
/// inherit the policy; [`normal_thread`] undoes it.
pub fn realtime_thread(priority: i32) -> bool {
    set_policy(libc::SCHED_FIFO, priority)
}

/// Puts the calling thread back to the normal scheduling policy.
pub fn normal_thread() -> bool {
    set_policy(libc::SCHED_OTHER, 0)
}

fn set_policy(policy: libc::c_int, priority: i32) -> bool {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: the calling thread's own handle and a valid parameter.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), policy, &param) == 0 }
}
