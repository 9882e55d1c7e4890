//! `vipd check --config FILE`: every problem on stderr, one per line, then a count; exit 1.
//! A valid file gets a one-line summary on stdout; exit 0. Unless `--config-only`, the
//! VIPs of a valid IPVS config are also checked against this host's interfaces and
//! routes (read-only), as `vipd apply` would before writing anything.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use vipd::{
    config,
    reconcile::{host_check, DEFAULT_STATE_FILE},
};

#[derive(clap::Args)]
pub struct Args {
    /// The config file to validate.
    #[arg(long, short, default_value = vipd::config::DEFAULT_CONFIG, env = "VIPD_CONFIG")]
    config: PathBuf,
    /// Check the file only, not its VIPs against this host (e.g. on a build machine).
    #[arg(long)]
    config_only: bool,
    /// vipd's ownership record (VIP addresses an earlier vipd added are converted, not
    /// refused).
    #[arg(long, default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = args.config.display();
    match config::load(&args.config) {
        Ok(cfg) => {
            if !args.config_only && cfg.dataplane.xdp().is_none() {
                let host = host_check(&cfg, &args.state_file)
                    .context("checking the VIPs against this host")?;
                for n in &host.notes {
                    eprintln!("note: {n}");
                }
                if !host.errors.is_empty() {
                    for d in &host.errors {
                        eprintln!("{d}");
                    }
                    let n = host.errors.len();
                    eprintln!("{file}: {n} error{} on this host", plural(n));
                    return Ok(ExitCode::FAILURE);
                }
            }
            let services = cfg.services.len();
            let backends = cfg.backend_count();
            println!(
                "{file}: ok: {services} service{}, {backends} backend{}",
                plural(services),
                plural(backends)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            let n = diagnostics.len();
            eprintln!("{file}: {n} error{}", plural(n));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
