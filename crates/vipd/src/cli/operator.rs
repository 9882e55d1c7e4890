//! `vipd drain|undrain|quarantine|readmit SERVICE BACKEND`: an operator's hand on one
//! backend of the running daemon, over its control socket (root only).
//!
//! * drain: no new connections (weight 0), existing ones finish; held across reloads,
//!   restarts and reboots until undrain.
//! * undrain: back to the weight its health gives it.
//! * quarantine: out of rotation now, for `--for` or its next backoff, then back the
//!   usual way (probation probe, slow start).
//! * readmit: a quarantine or probation ends now, into slow start.
//!
//! Each is idempotent. Exit 1 when the service or backend is not configured or no
//! daemon runs.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use vipd::{
    config::parse_duration,
    daemon::{
        control::{self, ControlError, DEFAULT_RUNTIME_DIR},
        control_proto::Request,
    },
};

/// How long the daemon has to carry a command out.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Which command.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Drain,
    Undrain,
    Quarantine,
    Readmit,
}

#[derive(clap::Args)]
pub struct Args {
    /// The service: its name in the config, or its key as `vipd status` prints it.
    service: String,
    /// The backend's address and port, as in the config (e.g. 198.18.1.2:8080).
    backend: SocketAddr,
    /// The running daemon's directory, holding its control socket `vipd.sock`.
    #[arg(long, env = "VIPD_RUNTIME_DIR", default_value = DEFAULT_RUNTIME_DIR)]
    runtime_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct QuarantineArgs {
    #[command(flatten)]
    target: Args,
    /// How long (e.g. 4m), at most the service's max_ejection; default: the backend's next
    /// backoff, as a fault would get.
    #[arg(long = "for", value_parser = parse_duration)]
    duration: Option<Duration>,
}

pub fn run(action: Action, args: Args) -> anyhow::Result<ExitCode> {
    send(action, args, None)
}

pub fn quarantine(args: QuarantineArgs) -> anyhow::Result<ExitCode> {
    send(Action::Quarantine, args.target, args.duration)
}

fn send(action: Action, args: Args, duration: Option<Duration>) -> anyhow::Result<ExitCode> {
    let Args {
        service, backend, ..
    } = args;
    let request = match action {
        Action::Drain => Request::Drain { service, backend },
        Action::Undrain => Request::Undrain { service, backend },
        Action::Readmit => Request::Readmit { service, backend },
        Action::Quarantine => Request::Quarantine {
            service,
            backend,
            for_ms: duration
                .map(|d| u64::try_from(d.as_millis()).context("--for is too long"))
                .transpose()?,
        },
    };
    let socket = control::socket_path(&args.runtime_dir);
    answer(control::command(&socket, &request, TIMEOUT))
}

/// Prints what the daemon did (stdout, exit 0) or why it refused (stderr, exit 1).
pub fn answer(result: Result<String, ControlError>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(message) => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        Err(ControlError::Refused { error, .. }) => {
            eprintln!("{error}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
