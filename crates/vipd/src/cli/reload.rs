//! `vipd reload`: asks the running daemon to reload its config file and waits for the
//! verdict. Exit 0 when the new config is in force; 1 when it was rejected (every
//! problem printed, the running config kept) or no daemon answers. What
//! `systemctl reload vipd` runs, so a rejected config fails the reload.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use vipd::daemon::{
    control::{self, DEFAULT_RUNTIME_DIR},
    control_proto::Request,
};

/// A reload applies the whole config; give it as long as the daemon does.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(130);

#[derive(clap::Args)]
pub struct Args {
    /// The config file the daemon is expected to run; refused if it runs another.
    /// Without it, the daemon reloads whatever file it was started with.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The running daemon's directory, holding its control socket `vipd.sock`.
    #[arg(long, env = "VIPD_RUNTIME_DIR", default_value = DEFAULT_RUNTIME_DIR)]
    runtime_dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(c) => Some(
            std::path::absolute(c)
                .with_context(|| format!("{}", c.display()))?
                .to_string_lossy()
                .into_owned(),
        ),
        None => None,
    };
    let socket = control::socket_path(&args.runtime_dir);
    let result = control::command(&socket, &Request::Reload { config }, RELOAD_TIMEOUT);
    super::operator::answer(result)
}
