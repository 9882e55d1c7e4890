//! `cargo xtask vm-test` and `vm-bench`: one boot per kernel, one after the other (or
//! side by side, `--jobs`).
//! A test run fails if any test fails, no test ran, a kernel does not boot, the init
//! script does not report, or a boot hangs (falls silent, or outlasts its time limit); a
//! bench run fails if the benchmark exits non-zero.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Result};

use crate::{build, initramfs, kernel, qemu};

#[derive(clap::Args)]
pub struct VmArgs {
    /// Kernels to run on (repeatable): 6.1, 6.12. Default: all of them.
    #[arg(long = "kernel")]
    kernels: Vec<String>,
    /// Seconds one boot may take in all before it counts as hung.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
    /// Seconds a boot may go without printing a line before it counts as hung. Default
    /// for tests: 600 (no test runs silent for more than a few minutes); for benchmarks:
    /// the whole `--timeout`.
    #[arg(long)]
    silence: Option<u64>,
    /// Kernels booted at once (default one). `--jobs 2 --cpus 1` halves the VM tier's
    /// time on a 2-core machine, but a VM of one vCPU shared with nothing else is tighter
    /// than the timing tests' bounds allow: a refusal took 147 ms to reach its weight
    /// there, against a few ms with two vCPUs.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// VM memory in MiB. The initramfs (test binaries with debug info, ~0.8 GB) and its
    /// unpacked copy must both fit while the kernel unpacks it.
    #[arg(long, default_value_t = 4096)]
    memory: u32,
    /// Virtual CPUs per VM (default two). Two VMs of two vCPUs each on a 2-core machine
    /// made every test two to three times slower than one VM alone.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Use KVM instead of software emulation (stock kernels hang under KVM on the
    /// development host).
    #[arg(long)]
    kvm: bool,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    vm: VmArgs,
    /// Run only this test file of tests/vm/tests (repeatable, e.g. `--test smoke`).
    /// Default: every one.
    #[arg(long = "test")]
    files: Vec<String>,
    /// Passed to every test binary: test name filters and libtest flags (e.g. --exact).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    test_args: Vec<String>,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    vm: VmArgs,
    /// The benchmark: an example of tests/vm (e.g. watcher_bench), or a test file of
    /// tests/vm/tests whose `#[ignore]`d tests are benchmarks (e.g. bench_failover).
    name: String,
    /// Arguments for the benchmark (for a test file: test name filters).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    bench_args: Vec<String>,
}

/// What to put into the VM and what to run there.
struct Payload<'a> {
    tests: &'a [PathBuf],
    bins: &'a [PathBuf],
    test_args: &'a [String],
    command: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let tests = select(build::test_binaries()?, &args.files)?;
    let vipd = build::vipd_binary()?;
    let payload = Payload {
        tests: &tests,
        bins: &[vipd],
        test_args: &args.test_args,
        command: None,
    };
    boot_each(&args.vm, &payload)
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let bench = build::bench_binary(&args.name)?;
    let vipd = build::vipd_binary()?;
    let command = std::iter::once(format!("/usr/bin/{}", args.name))
        .chain(bench.args.iter().cloned())
        .chain(args.bench_args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let payload = Payload {
        tests: &[],
        bins: &[vipd, bench.binary],
        test_args: &[],
        command: Some(command),
    };
    boot_each(&args.vm, &payload)
}

/// The test binaries of `files` (all of them when empty). A binary is named after its
/// test file, with cargo's hash: `smoke-0123abcd`.
fn select(tests: Vec<PathBuf>, files: &[String]) -> Result<Vec<PathBuf>> {
    if files.is_empty() {
        return Ok(tests);
    }
    let file_of = |t: &PathBuf| {
        t.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once('-'))
            .map(|(file, _)| file.to_string())
    };
    for f in files {
        if !tests
            .iter()
            .any(|t| file_of(t).as_deref() == Some(f.as_str()))
        {
            bail!("no test file {f} in tests/vm/tests");
        }
    }
    Ok(tests
        .into_iter()
        .filter(|t| file_of(t).is_some_and(|name| files.contains(&name)))
        .collect())
}

fn verdict(out: &qemu::Outcome, vm: &VmArgs, bench: bool) -> String {
    match out.hung {
        Some(qemu::Hang::Silent) => {
            return format!("HUNG (nothing printed for {} s)", silence(vm, bench));
        }
        Some(qemu::Hang::Overtime) => {
            return format!("HUNG (no result within {} s)", vm.timeout);
        }
        None => {}
    }
    if !out.booted {
        return "DID NOT BOOT".to_string();
    }
    match out.result {
        None => "NO RESULT (the VM stopped before the init script reported)".to_string(),
        Some(0) if bench => "ok".to_string(),
        Some(0) if out.failed == 0 && out.passed > 0 => "ok".to_string(),
        Some(0) if out.passed == 0 => "NO TESTS RAN (check the filter)".to_string(),
        Some(rc) => format!("FAILED (init rc {rc}; failed: {})", out.failures.join(", ")),
    }
}

/// How long a boot may print nothing (`--silence`, or its default).
fn silence(vm: &VmArgs, bench: bool) -> u64 {
    vm.silence.unwrap_or(if bench { vm.timeout } else { 600 })
}

fn boot_each(vm: &VmArgs, payload: &Payload<'_>) -> Result<()> {
    let names: Vec<String> = if vm.kernels.is_empty() {
        kernel::MATRIX.iter().map(|(n, _)| n.to_string()).collect()
    } else {
        vm.kernels.clone()
    };
    let kernels = names
        .iter()
        .map(|n| kernel::Kernel::find(n))
        .collect::<Result<Vec<_>>>()?;
    let work_root = build::target_dir().join("vm");
    let bench = payload.command.is_some();

    let mut boots = Vec::new();
    for k in &kernels {
        let work = work_root.join(&k.name);
        std::fs::create_dir_all(&work)?;
        let initrd = initramfs::build(
            &initramfs::Inputs {
                kernel: k,
                tests: payload.tests,
                extra_bins: payload.bins,
                test_args: payload.test_args,
                command: payload.command.as_deref(),
            },
            &work,
        )?;
        boots.push((k, initrd));
    }
    let accel = if vm.kvm { "kvm" } else { "tcg" };
    let jobs = vm.jobs.max(1);
    let mut summary = Vec::new();
    let (mut passed, mut failed) = (0, 0);
    for group in boots.chunks(jobs) {
        let outcomes = std::thread::scope(|scope| {
            let running: Vec<_> = group
                .iter()
                .map(|(k, initrd)| {
                    println!("vm: booting {} ({}) under {accel}", k.name, k.release);
                    scope.spawn(move || {
                        let started = std::time::Instant::now();
                        let out = qemu::run(&qemu::Boot {
                            label: &k.name,
                            kernel: &k.vmlinuz,
                            initrd,
                            memory_mb: vm.memory,
                            cpus: vm.cpus,
                            timeout: Duration::from_secs(vm.timeout),
                            silence: Duration::from_secs(silence(vm, bench)),
                            kvm: vm.kvm,
                        });
                        out.map(|o| (o, started.elapsed()))
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|r| r.join().expect("the thread following a VM panicked"))
                .collect::<Vec<_>>()
        });
        for ((k, _), out) in group.iter().zip(outcomes) {
            let (out, took) = out?;
            let verdict = verdict(&out, vm, bench);
            passed += out.passed;
            failed += out.failed;
            summary.push((*k, out.passed, out.failed, verdict, took));
        }
    }

    println!("\nvm summary:");
    for (k, p, f, verdict, took) in &summary {
        let secs = took.as_secs_f64();
        println!(
            "  {:5} {:24} {p:3} passed, {f:3} failed  {secs:6.1}s  {verdict}",
            k.name, k.release
        );
    }
    if !bench {
        println!("vm-tests: {passed} passed, {failed} failed");
    }
    if summary.iter().any(|s| s.3 != "ok") {
        bail!("VM run failed");
    }
    Ok(())
}
