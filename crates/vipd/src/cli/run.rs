//! `vipd run --config FILE`: the daemon (see `vipd::daemon`). Runs until SIGTERM or
//! SIGINT and leaves the kernel's IPVS state in place when it stops.

use std::{path::PathBuf, process::ExitCode};

use vipd::{
    daemon::{self, control::DEFAULT_RUNTIME_DIR, Options},
    reconcile::DEFAULT_STATE_FILE,
    watcher::Flavour,
};

#[derive(clap::Args)]
pub struct Args {
    /// The config file. Reloaded on SIGHUP and when its content changes.
    #[arg(long, short, default_value = vipd::config::DEFAULT_CONFIG, env = "VIPD_CONFIG")]
    config: PathBuf,
    /// vipd's ownership record (what it created and so may change or remove).
    #[arg(long, default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
    /// Where the control socket (`vipd.sock`) and the health record (`health.json`) live.
    #[arg(long, default_value = DEFAULT_RUNTIME_DIR, env = "VIPD_RUNTIME_DIR")]
    runtime_dir: PathBuf,
    /// How to attach the socket hooks: `auto` (tp_btf and fentry where the kernel has
    /// them, else tracepoints and kprobes, hook by hook), `btf` or `classic`.
    #[arg(long, default_value = "auto", env = "VIPD_PROBES")]
    probes: Flavour,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    daemon::run(Options {
        config: args.config,
        state_file: args.state_file,
        runtime_dir: args.runtime_dir,
        probes: args.probes,
    })?;
    Ok(ExitCode::SUCCESS)
}
