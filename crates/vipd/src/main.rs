//! The `vipd` command: daemon and CLI. One file per subcommand under `cli/`.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    cli::main(cli::Cli::parse())
}
