//! Building the binaries that go into the VM.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

/// Builds the VM test binaries and returns their paths (`cargo test --no-run`).
pub fn test_binaries() -> Result<Vec<PathBuf>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "test",
            "-p",
            "vipd-vmtests",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the VM tests failed");
    }
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["profile"]["test"] == true {
            if let Some(exe) = msg["executable"].as_str() {
                bins.push(PathBuf::from(exe));
            }
        }
    }
    if bins.is_empty() {
        bail!("cargo built no VM test binaries");
    }
    Ok(bins)
}

/// A benchmark to run in the VM: its binary and the arguments it needs before the user's.
pub struct Bench {
    pub binary: PathBuf,
    pub args: Vec<String>,
}

/// Builds a benchmark of the VM test crate in release mode: an example
/// (`tests/vm/examples/<name>.rs`, run as is), or an integration test file
/// (`tests/vm/tests/<name>.rs`, whose benchmarks are `#[ignore]`d tests so that
/// `vm-test` skips them; run here with `--include-ignored --nocapture`).
pub fn bench_binary(name: &str) -> Result<Bench> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vm");
    if crate_dir
        .join("examples")
        .join(format!("{name}.rs"))
        .exists()
    {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-p",
                "vipd-vmtests",
                "--example",
                name,
            ])
            .status()?;
        if !status.success() {
            bail!("building the {name} benchmark failed");
        }
        return Ok(Bench {
            binary: target_dir().join("release/examples").join(name),
            args: Vec::new(),
        });
    }
    if !crate_dir.join("tests").join(format!("{name}.rs")).exists() {
        bail!(
            "no benchmark {name}: neither tests/vm/examples/{name}.rs nor tests/vm/tests/{name}.rs"
        );
    }
    let out = Command::new(env!("CARGO"))
        .args([
            "test",
            "--release",
            "-p",
            "vipd-vmtests",
            "--test",
            name,
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the {name} benchmark failed");
    }
    let exe = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo built no test binary for {name}"))?;
    // The runner installs binaries under their file name: drop cargo's hash suffix.
    let dir = target_dir().join("vm/bench");
    std::fs::create_dir_all(&dir)?;
    let binary = dir.join(name);
    std::fs::copy(&exe, &binary).with_context(|| format!("copying {}", exe.display()))?;
    Ok(Bench {
        binary,
        args: ["--include-ignored", "--nocapture", "--test-threads=1"]
            .map(String::from)
            .to_vec(),
    })
}

/// Builds the `vipd` binary, which end-to-end VM tests run as a daemon.
pub fn vipd_binary() -> Result<PathBuf> {
    // The release build: what operators run, and what the daemon's latency tests measure
    // (a debug build is several times slower on the event path under emulation).
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "vipd", "--bin", "vipd"])
        .status()?;
    if !status.success() {
        bail!("building vipd failed");
    }
    Ok(target_dir().join("release/vipd"))
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or the workspace's `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}
