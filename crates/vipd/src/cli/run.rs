//! `vipd run --config FILE`: the daemon (see `vipd::daemon`). Runs until SIGTERM or
//! SIGINT and leaves the kernel's IPVS state in place when it stops. Exit 78 when the
//! config is invalid at start-up (nothing touched), 1 on other errors.

use std::{path::PathBuf, process::ExitCode};

use vipd::{
    daemon::{self, control::DEFAULT_RUNTIME_DIR, ConfigInvalid, Options},
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

/// The exit status for a config that is invalid at start-up (sysexits' EX_CONFIG): the
/// unit's `RestartPreventExitStatus`, since restarting cannot help.
pub const EXIT_CONFIG: u8 = 78;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let result = daemon::run(Options {
        config: args.config,
        state_file: args.state_file,
        runtime_dir: args.runtime_dir,
        probes: args.probes,
    });
    result.map(|()| ExitCode::SUCCESS)
}

/// The exit status for an error that ended a command: [`EXIT_CONFIG`] for an invalid
/// config at the daemon's start-up, 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    if e.is::<ConfigInvalid>() {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::FAILURE
    }
}
