//! `cargo xtask vm-test`: one boot per kernel; fails if any test fails, a kernel does
//! not boot, the init script does not report, or a boot exceeds the timeout.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::{build, initramfs, kernel, qemu};

#[derive(clap::Args)]
pub struct Args {
    /// Kernels to run on (repeatable): 6.1, 6.12. Default: all of them.
    #[arg(long = "kernel")]
    kernels: Vec<String>,
    /// Seconds one boot may take before it counts as hung.
    #[arg(long, default_value_t = 1200)]
    timeout: u64,
    /// VM memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Use KVM instead of software emulation (stock kernels hang under KVM on the
    /// development host; see shared/ENV.md).
    #[arg(long)]
    kvm: bool,
    /// Passed to every test binary: test name filters and libtest flags (e.g. --exact).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    test_args: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let names: Vec<String> = if args.kernels.is_empty() {
        kernel::MATRIX.iter().map(|(n, _)| n.to_string()).collect()
    } else {
        args.kernels.clone()
    };
    let kernels = names
        .iter()
        .map(|n| kernel::Kernel::find(n))
        .collect::<Result<Vec<_>>>()?;
    let tests = build::test_binaries()?;
    let vipd = build::vipd_binary()?;
    let work_root = build::target_dir().join("vm");

    let mut summary = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for k in &kernels {
        let work = work_root.join(&k.name);
        std::fs::create_dir_all(&work)?;
        let initrd = initramfs::build(
            &initramfs::Inputs {
                kernel: k,
                tests: &tests,
                extra_bins: std::slice::from_ref(&vipd),
                test_args: &args.test_args,
            },
            &work,
        )?;
        println!(
            "vm-test: booting {} ({}) under {}",
            k.name,
            k.release,
            if args.kvm { "kvm" } else { "tcg" }
        );
        let started = std::time::Instant::now();
        let out = qemu::run(&qemu::Boot {
            label: &k.name,
            kernel: &k.vmlinuz,
            initrd: &initrd,
            memory_mb: args.memory,
            timeout: Duration::from_secs(args.timeout),
            kvm: args.kvm,
        })?;
        let verdict = if out.timed_out {
            format!("HUNG (no result within {} s)", args.timeout)
        } else if !out.booted {
            "DID NOT BOOT".to_string()
        } else {
            match out.result {
                None => "NO RESULT (the VM stopped before the init script reported)".to_string(),
                Some(0) if out.failed == 0 && out.passed > 0 => "ok".to_string(),
                Some(0) if out.passed == 0 => "NO TESTS RAN (check the filter)".to_string(),
                Some(rc) => format!("FAILED (init rc {rc}; failed: {})", out.failures.join(", ")),
            }
        };
        passed += out.passed;
        failed += out.failed;
        let ok = verdict == "ok";
        summary.push((
            k.name.clone(),
            k.release.clone(),
            out.passed,
            out.failed,
            verdict,
            started.elapsed(),
            ok,
        ));
    }

    println!("\nvm-test summary:");
    for (name, release, p, f, verdict, took, _) in &summary {
        println!(
            "  {name:5} {release:24} {p:3} passed, {f:3} failed  {:6.1}s  {verdict}",
            took.as_secs_f64()
        );
    }
    println!("vm-tests: {passed} passed, {failed} failed");
    if summary.iter().any(|s| !s.6) {
        bail!("VM tests failed");
    }
    Ok(())
}
