//! Command-line interface: one file per subcommand.

mod apply;
mod apply_xdp;
mod check;
mod completions;
mod logging;
mod manpages;
mod operator;
mod reload;
mod run;
mod status;
mod trace;
mod trace_dns;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vipd",
    version,
    about = "Client-side L4 load balancer: IPVS control plane with eBPF outlier detection"
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `vipd=debug`.
    #[arg(long, global = true, default_value = "info", env = "VIPD_LOG")]
    log: String,
    /// Log line format: `text` or `json` (one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "VIPD_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and report every error at once, with file:line:col.
    Check(check::Args),
    /// Bring the kernel's IPVS table to a config, once: create, change, drain and delete
    /// only what vipd owns.
    Apply(apply::Args),
    /// IPVS services and backends with weights, connections, rates and counters.
    Status(status::Args),
    /// The daemon: reconcile, watch connections, quarantine failing backends, re-admit
    /// them carefully; reload on SIGHUP or file change.
    Run(run::Args),
    /// Live log of connections through the configured VIPs, naming each one's real backend.
    Trace(trace::Args),
    /// Ask the running daemon to reload its config; fails if the new config is rejected.
    Reload(reload::Args),
    /// Drain a backend: no new connections, existing ones finish; held until undrain,
    /// across reloads, restarts and reboots.
    Drain(operator::Args),
    /// Put a drained backend back.
    Undrain(operator::Args),
    /// Take a backend out of rotation now; it comes back by probation and slow start.
    Quarantine(operator::QuarantineArgs),
    /// End a backend's quarantine now: it re-enters rotation in slow start.
    Readmit(operator::Args),
    /// Print the shell completion script for bash, zsh or fish.
    Completions(completions::Args),
    #[command(hide = true)]
    Manpages(manpages::Args),
}

pub fn main(cli: Cli) -> ExitCode {
    let logging = logging::init(&cli.log, cli.log_format);
    if !matches!(cli.command, Command::Run(_)) {
        // Only the daemon handles them; other commands get their defaults back.
        vipd::daemon::start_signals::release();
    }
    let result = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Status(args) => status::run(args),
        Command::Run(args) => run::run(args),
        Command::Reload(args) => reload::run(args),
        Command::Drain(args) => operator::run(operator::Action::Drain, args),
        Command::Undrain(args) => operator::run(operator::Action::Undrain, args),
        Command::Quarantine(args) => operator::quarantine(args),
        Command::Readmit(args) => operator::run(operator::Action::Readmit, args),
        Command::Completions(args) => completions::run(args),
        Command::Manpages(args) => manpages::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            logging.fatal(&e);
            run::exit_code(&e)
        }
    }
}
