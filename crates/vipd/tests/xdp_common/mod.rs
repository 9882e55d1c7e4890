//! Shared by the XDP host tests: network namespaces the test creates (and always
//! deletes, through a Drop guard), and running code inside one.

#![allow(dead_code)]

pub mod daemon;
pub mod gen;
pub mod lab;

use std::{
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

/// A network namespace created for a test; deleted on drop, even after a panic.
pub struct Netns {
    pub name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// A new namespace named `vipd-<tag>-<pid>-<n>`, with loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!(
            "vipd-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sh(&format!("ip netns add {name}"));
        let ns = Netns { name };
        ns.run("ip link set lo up");
        ns
    }

    /// Runs a shell command inside the namespace; panics with its output if it fails.
    pub fn run(&self, cmd: &str) -> String {
        sh(&format!("ip netns exec {} sh -c '{}'", self.name, cmd))
    }

    /// Runs `f` on a thread that has entered the namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(move || {
                let fd = std::fs::File::open(&path).expect("namespace file");
                // SAFETY: setns on this thread only, with a namespace descriptor we opened.
                let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// The interface index of `dev` in the namespace.
    pub fn ifindex(&self, dev: &str) -> u32 {
        self.run(&format!("cat /sys/class/net/{dev}/ifindex"))
            .trim()
            .parse()
            .expect("ifindex")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Runs a shell command; panics with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
