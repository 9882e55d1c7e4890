//! `vipd completions SHELL`: the completion script for bash, zsh or fish on stdout, made
//! from the CLI's own definition, so it always knows every subcommand and flag.
//!
//!   vipd completions bash > /usr/share/bash-completion/completions/vipd

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to write the completion script for.
    shell: CompletionShell,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut cmd = super::Cli::command();
    clap_complete::generate(shell, &mut cmd, "vipd", &mut std::io::stdout().lock());
    Ok(ExitCode::SUCCESS)
}
