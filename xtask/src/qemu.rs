//! Boots one kernel with an initramfs under qemu and follows its console.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

/// What one boot produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The init script's exit code (`VIPD_VM_RESULT`), if it got that far.
    pub result: Option<i32>,
    pub booted: bool,
    pub timed_out: bool,
    pub passed: u64,
    pub failed: u64,
    /// Names of failed tests, as libtest printed them.
    pub failures: Vec<String>,
}

pub struct Boot<'a> {
    pub label: &'a str,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub kvm: bool,
}

/// Reads `test result: ok. 3 passed; 1 failed; ...`.
fn tally(line: &str, out: &mut Outcome) {
    let Some(rest) = line.split("test result: ").nth(1) else {
        return;
    };
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(what), Some(n)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        match what {
            "passed" => out.passed += n,
            "failed" => out.failed += n,
            _ => {}
        }
    }
}

pub fn run(boot: &Boot<'_>) -> Result<Outcome> {
    let mut cmd = Command::new("qemu-system-x86_64");
    if boot.kvm {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg", "-cpu", "max"]);
    }
    cmd.args(["-smp", "2", "-m", &boot.memory_mb.to_string()])
        .args([
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-serial",
            "stdio",
        ])
        .args(["-nic", "none"])
        .arg("-kernel")
        .arg(boot.kernel)
        .arg("-initrd")
        .arg(boot.initrd)
        .args([
            "-append",
            "console=ttyS0 panic=-1 oops=panic quiet loglevel=4 vipd.vm=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .context("starting qemu-system-x86_64 (run scripts/setup.sh)")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + boot.timeout;
    let mut out = Outcome::default();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left.min(Duration::from_secs(1))) {
            Ok(line) => {
                let line = line.trim_end_matches('\r');
                println!("[{}] {line}", boot.label);
                if line.starts_with("VIPD_VM_READY") {
                    out.booted = true;
                }
                if let Some(rc) = line.strip_prefix("VIPD_VM_RESULT ") {
                    out.result = rc.trim().parse().ok();
                }
                if let Some(name) = line
                    .strip_prefix("test ")
                    .and_then(|r| r.strip_suffix(" ... FAILED"))
                {
                    out.failures.push(name.to_string());
                }
                tally(line, &mut out);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                out.timed_out = true;
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_libtest_summaries() {
        let mut o = Outcome::default();
        tally("test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 2 filtered out; finished in 1.2s", &mut o);
        tally(
            "[6.1] test result: ok. 2 passed; 0 failed; 0 ignored",
            &mut o,
        );
        tally("running 4 tests", &mut o);
        assert_eq!((o.passed, o.failed), (5, 1));
    }
}
