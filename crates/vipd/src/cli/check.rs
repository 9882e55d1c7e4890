//! `vipd check --config FILE`: the file and its drop-ins (`conf.d/*.toml` beside it) as
//! one config; every problem on stderr, one per line, then a count; exit 1.
//! A valid file gets a one-line summary on stdout; exit 0. Unless `--config-only`, this
//! host's kernel is checked for what the config's data plane needs (IPVS and its
//! schedulers, XDP, the socket plane's cgroup hooks; missing extras are notes), and the
//! VIPs of a valid IPVS config against this host's interfaces and routes (read-only),
//! as `vipd apply` would before writing anything. `--json` prints
//! one JSON object instead (same exit status), for tools and editors.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use serde::Serialize;
use vipd::{
    config::{self, Diagnostic},
    plane::features,
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
    /// Print the result as JSON: `ok`, `errors` (file, line, column, message), `notes`
    /// and, when valid, the service and backend counts.
    #[arg(long)]
    json: bool,
}

/// What `--json` prints.
#[derive(Debug, Default, Serialize)]
struct Report {
    file: String,
    /// The drop-in files checked with it, in the order they are merged.
    drop_ins: Vec<String>,
    ok: bool,
    /// Where the errors were found: `config` or `host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<&'static str>,
    errors: Vec<JsonDiagnostic>,
    notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    services: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backends: Option<usize>,
}

#[derive(Debug, Serialize)]
struct JsonDiagnostic {
    file: String,
    /// 1-based; absent for problems with the whole file.
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

impl From<&Diagnostic> for JsonDiagnostic {
    fn from(d: &Diagnostic) -> Self {
        JsonDiagnostic {
            file: d.file.clone(),
            line: d.location.map(|l| l.line),
            column: d.location.map(|l| l.column),
            message: d.message.clone(),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = args.config.display().to_string();
    let mut report = Report {
        file: file.clone(),
        drop_ins: config::drop_ins(&args.config)
            .unwrap_or_default()
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        ..Report::default()
    };
    match config::load(&args.config) {
        Ok(cfg) => {
            if !args.config_only {
                let host = features::of_config(&cfg);
                report.notes = host.notes;
                if !host.errors.is_empty() {
                    let errors: Vec<Diagnostic> = host
                        .errors
                        .into_iter()
                        .map(|message| Diagnostic {
                            file: file.clone(),
                            location: None,
                            message,
                        })
                        .collect();
                    report.stage = Some("host");
                    report.errors = errors.iter().map(JsonDiagnostic::from).collect();
                    return finish(&args, report, &errors, "on this host");
                }
            }
            if !args.config_only && cfg.dataplane == config::Dataplane::Ipvs {
                let host = host_check(&cfg, &args.state_file)
                    .context("checking the VIPs against this host")?;
                report.notes.extend(host.notes);
                if !host.errors.is_empty() {
                    report.stage = Some("host");
                    report.errors = host.errors.iter().map(JsonDiagnostic::from).collect();
                    return finish(&args, report, &host.errors, "on this host");
                }
            }
            report.ok = true;
            report.services = Some(cfg.services.len());
            report.backends = Some(cfg.backend_count());
            finish(&args, report, &[], "")
        }
        Err(diagnostics) => {
            let all = diagnostics.into_vec();
            report.stage = Some("config");
            report.errors = all.iter().map(JsonDiagnostic::from).collect();
            finish(&args, report, &all, "")
        }
    }
}

/// Prints the report as JSON or as text; exit 0 when it is ok.
fn finish(
    args: &Args,
    report: Report,
    errors: &[Diagnostic],
    where_: &str,
) -> anyhow::Result<ExitCode> {
    let code = if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(code);
    }
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    let file = match report.drop_ins.len() {
        0 => report.file.clone(),
        n => format!("{} + {n} drop-in{}", report.file, plural(n)),
    };
    if report.ok {
        let services = report.services.unwrap_or(0);
        let backends = report.backends.unwrap_or(0);
        println!(
            "{file}: ok: {services} service{}, {backends} backend{}",
            plural(services),
            plural(backends)
        );
    } else {
        for d in errors {
            eprintln!("{d}");
        }
        let n = errors.len();
        let suffix = if where_.is_empty() {
            String::new()
        } else {
            format!(" {where_}")
        };
        eprintln!("{file}: {n} error{}{suffix}", plural(n));
    }
    Ok(code)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
