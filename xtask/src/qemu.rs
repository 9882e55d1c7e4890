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
    /// Why the boot was stopped, if it was.
    pub hung: Option<Hang>,
    pub passed: u64,
    pub failed: u64,
    /// Names of failed tests, as libtest printed them.
    pub failures: Vec<String>,
}

/// How a boot that never reported was judged hung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hang {
    /// It printed nothing for `Boot::silence`.
    Silent,
    /// It ran past `Boot::timeout`.
    Overtime,
}

pub struct Boot<'a> {
    pub label: &'a str,
    pub kernel: &'a Path,
    pub initrd: &'a Path,
    pub memory_mb: u32,
    pub cpus: u32,
    pub timeout: Duration,
    pub silence: Duration,
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
    cmd.args([
        "-smp",
        &boot.cpus.to_string(),
        "-m",
        &boot.memory_mb.to_string(),
    ])
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
    let mut last_line = Instant::now();
    let mut out = Outcome::default();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                last_line = Instant::now();
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
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        out.hung = if Instant::now() >= deadline {
            Some(Hang::Overtime)
        } else if last_line.elapsed() >= boot.silence {
            Some(Hang::Silent)
        } else {
            None
        };
        if out.hung.is_some() {
            let _ = child.kill();
            break;
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
