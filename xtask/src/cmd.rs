//! Running host programs from the tasks: a failure names the command line, and its
//! stderr reaches the terminal.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

/// The command line as a person would type it, for messages.
fn line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd`; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("running {}", line(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", line(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; fails unless it exits 0.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", line(cmd)))?;
    if !out.status.success() {
        bail!("{} failed ({})", line(cmd), out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("{} printed non-UTF-8", line(cmd)))
}

/// Runs `cmd` with its stdout written to the file `to`; fails unless it exits 0.
pub fn to_file(cmd: &mut Command, to: &Path) -> Result<()> {
    let file = std::fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    run(cmd.stdout(file))
}
