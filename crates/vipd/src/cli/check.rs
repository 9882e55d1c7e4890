//! `vipd check --config FILE`: every problem on stderr, one per line, then a count; exit 1.
//! A valid file gets a one-line summary on stdout; exit 0.

use std::{path::PathBuf, process::ExitCode};

use vipd::config;

#[derive(clap::Args)]
pub struct Args {
    /// The config file to validate.
    #[arg(long, short)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = args.config.display();
    match config::load(&args.config) {
        Ok(cfg) => {
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
