//! vipd's developer tasks. `cargo xtask vm-test` boots Debian kernels that have IPVS and
//! kprobes under qemu and runs the VM integration tests (`tests/vm`) inside them;
//! `cargo xtask deb` builds the Debian package; `cargo xtask fuzz` fuzzes the parsers.

mod build;
mod cmd;
mod deb;
mod deb_test;
mod fuzz;
mod initramfs;
mod kernel;
mod qemu;
mod vm_test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "vipd developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the VM integration tests on each kernel of the matrix (one boot per kernel).
    VmTest(vm_test::Args),
    /// Run a benchmark (an example or a test file of tests/vm) inside each VM kernel and
    /// print its figures.
    VmBench(vm_test::BenchArgs),
    /// Build the Debian package: target/debian/vipd_<version>_<arch>.deb.
    Deb(deb::Args),
    /// Test the Debian package: lintian, then install, use, upgrade, remove and purge it
    /// in a fresh Debian root.
    DebTest,
    /// Fuzz the parsers of untrusted input (cargo-fuzz, libFuzzer) for a bounded time
    /// each; fails on any crash.
    Fuzz(fuzz::Args),
}

/// Runs the task; a failure prints its chain of causes once, on one line, without the
/// backtrace that `RUST_BACKTRACE` would add to the debug form.
fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::VmTest(args) => vm_test::run(args),
        Command::VmBench(args) => vm_test::bench(args),
        Command::Deb(args) => deb::run(args),
        Command::DebTest => deb_test::run(),
        Command::Fuzz(args) => fuzz::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
