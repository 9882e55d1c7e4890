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

/// Builds a release example of the VM test crate (a benchmark) and returns its path.
pub fn bench_binary(name: &str) -> Result<PathBuf> {
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
    Ok(target_dir().join("release/examples").join(name))
}

/// Builds the `vipd` binary, which end-to-end VM tests run as a daemon.
pub fn vipd_binary() -> Result<PathBuf> {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-p", "vipd", "--bin", "vipd"])
        .status()?;
    if !status.success() {
        bail!("building vipd failed");
    }
    Ok(target_dir().join("debug/vipd"))
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or the workspace's `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}
