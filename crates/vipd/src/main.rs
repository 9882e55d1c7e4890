//! The `vipd` command: daemon and CLI. One file per subcommand under `cli/`.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Before anything else: a signal during the daemon's start-up waits for it.
    vipd::daemon::start_signals::hold();
    cli::main(cli::Cli::parse())
}
