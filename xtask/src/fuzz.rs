//! `cargo xtask fuzz`: builds the fuzz targets of vipd's parsers with cargo-fuzz
//! (coverage-guided, libFuzzer) and runs each for a bounded time over its corpus. Fails
//! if any target crashes (a panic, an assertion of its contract, a hang or running out
//! of memory), naming the file that holds the input.
//!
//! On the stable toolchain: with `--sanitizer none` cargo-fuzz needs no nightly flag.
//! The seeds in the repository (`<fuzz crate>/corpus/<target>/`) are only read; what the
//! fuzzer finds goes to `target/fuzz/corpus/<target>/`, where the next run starts from.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{build::target_dir, cmd, deb::repo_root};

/// The fuzz crates (each a cargo-fuzz project outside the workspace).
const FUZZ_CRATES: &[&str] = &["crates/vipd/fuzz", "crates/vipd-ipvs/fuzz"];

/// Longest a single input may take, in seconds, before it counts as a hang.
const INPUT_TIMEOUT_S: u64 = 10;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds each target runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Targets to run, as `cargo fuzz list` names them. Default: every one.
    targets: Vec<String>,
}

/// One target of one fuzz crate.
struct Target {
    crate_dir: PathBuf,
    name: String,
}

pub fn run(args: Args) -> Result<()> {
    cmd::stdout(Command::new("cargo").args(["fuzz", "--version"]))
        .context("cargo-fuzz is missing: scripts/setup.sh installs it")?;
    let root = repo_root();
    let out = target_dir().join("fuzz");
    let targets = select(&root, &args.targets)?;
    for crate_dir in FUZZ_CRATES.iter().map(|c| root.join(c)) {
        if targets.iter().any(|t| t.crate_dir == crate_dir) {
            cmd::run(&mut cargo_fuzz("build", &crate_dir, &out))?;
        }
    }
    let mut crashed = Vec::new();
    for t in &targets {
        if let Err(e) = run_one(t, &out, args.seconds) {
            eprintln!("fuzz {}: {e:#}", t.name);
            crashed.push(t.name.as_str());
        }
    }
    if !crashed.is_empty() {
        bail!("fuzz targets failed: {}", crashed.join(", "));
    }
    println!(
        "fuzz: {} targets ran {} s each without a crash",
        targets.len(),
        args.seconds
    );
    Ok(())
}

/// `cargo fuzz <sub>` for the crate in `crate_dir`, built into `out`.
fn cargo_fuzz(sub: &str, crate_dir: &Path, out: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.args(["fuzz", sub, "--sanitizer", "none", "--fuzz-dir"])
        .arg(crate_dir)
        .arg("--target-dir")
        .arg(out);
    c
}

/// The targets asked for, or every one; an unknown name is an error listing them all.
fn select(root: &Path, wanted: &[String]) -> Result<Vec<Target>> {
    let mut all = Vec::new();
    for crate_dir in FUZZ_CRATES.iter().map(|c| root.join(c)) {
        let listed = cmd::stdout(
            Command::new("cargo")
                .args(["fuzz", "list", "--fuzz-dir"])
                .arg(&crate_dir),
        )?;
        all.extend(listed.lines().map(|name| Target {
            crate_dir: crate_dir.clone(),
            name: name.trim().to_owned(),
        }));
    }
    if let Some(unknown) = wanted.iter().find(|w| !all.iter().any(|t| &t.name == *w)) {
        let names: Vec<_> = all.iter().map(|t| t.name.as_str()).collect();
        bail!("no fuzz target {unknown}; there are: {}", names.join(", "));
    }
    all.retain(|t| wanted.is_empty() || wanted.contains(&t.name));
    Ok(all)
}

/// Runs one target for `seconds`, its output in `<out>/logs/<target>.log`.
fn run_one(t: &Target, out: &Path, seconds: u64) -> Result<()> {
    let seeds = t.crate_dir.join("corpus").join(&t.name);
    let found = out.join("corpus").join(&t.name);
    let artifacts = out.join("artifacts").join(&t.name);
    let log = out.join("logs").join(format!("{}.log", t.name));
    for dir in [&found, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::create_dir_all(log.parent().expect("a log directory"))?;
    let mut prefix = artifacts.into_os_string();
    prefix.push("/");
    let mut c = cargo_fuzz("run", &t.crate_dir, out);
    c.arg(&t.name).arg(&found);
    if seeds.is_dir() {
        c.arg(&seeds);
    }
    c.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg("-print_final_stats=1")
        .arg({
            let mut a = std::ffi::OsString::from("-artifact_prefix=");
            a.push(&prefix);
            a
        });
    let file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let start = Instant::now();
    let status = c
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .context("running cargo fuzz run")?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if !status.success() {
        let tail: Vec<_> = text.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        let saved = std::fs::read_dir(&prefix).is_ok_and(|mut d| d.next().is_some());
        let input = if saved {
            format!("the input is in {}", Path::new(&prefix).display())
        } else {
            // libFuzzer's signal handler cannot run on an overflowed stack.
            "no input was saved (a stack overflow?)".to_owned()
        };
        bail!(
            "crashed ({status}); {input}, the whole output in {}",
            log.display()
        );
    }
    println!(
        "fuzz {}: {} runs in {:.0} s, {}",
        t.name,
        stat(&text, "stat::number_of_executed_units:").unwrap_or("?"),
        start.elapsed().as_secs_f64(),
        coverage(&text).unwrap_or("no coverage line"),
    );
    Ok(())
}

/// A `-print_final_stats` value.
fn stat<'a>(log: &'a str, key: &str) -> Option<&'a str> {
    log.lines().find_map(|l| l.strip_prefix(key)).map(str::trim)
}

/// The last coverage figures libFuzzer printed (`cov: N ft: N corp: N/N`).
fn coverage(log: &str) -> Option<&str> {
    let line = log.lines().rev().find(|l| l.contains(" cov: "))?;
    let from = line.find("cov: ")?;
    let to = line
        .find(" lim:")
        .or_else(|| line.find(" exec/s"))
        .unwrap_or(line.len());
    Some(line[from..to].trim())
}
