//! `vipd check --config FILE`.

use std::{path::PathBuf, process::ExitCode};

#[derive(clap::Args)]
pub struct Args {
    /// The config file to validate.
    #[arg(long, short)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("config parsing is not written yet ({})", args.config.display())
}
