//! `vipd apply --config FILE`: one reconcile. The config is validated whole first (errors:
//! exit 1, nothing touched); then the kernel is brought to it and a summary printed, with
//! the number of netlink writes (`--json` for all of it as JSON). Exit 1 if the kernel
//! refused any write.
//!
//! Beside a running daemon (which holds the ownership record's daemon lock) it refuses:
//! the daemon owns the kernel's state, and an apply would undo its quarantines and the
//! operator's drains. Change the config and run `vipd reload` instead. `--dry-run` is
//! allowed: it writes nothing.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use vipd::{
    config,
    daemon::control::{self, DEFAULT_RUNTIME_DIR},
    reconcile::{
        self, ApplyOptions, ApplySummary, DaemonLock, WeightOverrides, DEFAULT_STATE_FILE,
    },
};

#[derive(clap::Args)]
pub struct Args {
    /// The config file to apply.
    #[arg(long, short, default_value = vipd::config::DEFAULT_CONFIG, env = "VIPD_CONFIG")]
    config: PathBuf,
    /// vipd's ownership record (what it created and so may change or remove).
    #[arg(long, default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
    /// Show what would be written; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// List every write, not only the counts.
    #[arg(long, short)]
    verbose: bool,
    /// A running daemon's directory, to name it when refusing to apply beside it.
    #[arg(long, env = "VIPD_RUNTIME_DIR", default_value = DEFAULT_RUNTIME_DIR)]
    runtime_dir: PathBuf,
}

/// The config with its DNS backends resolved once (as the daemon does at start: each
/// name's first answer, waiting at most the DNS timeout). A name without an answer
/// gives no backend, and says so on stderr.
fn resolve_dns(cfg: vipd::config::Config) -> anyhow::Result<vipd::config::Config> {
    use vipd::daemon::dns_link::DnsLink;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(async {
        let mut link = DnsLink::start(&cfg, vipd::clock::mono_ns(), Default::default());
        let deadline =
            tokio::time::Instant::now() + cfg.dns.timeout + std::time::Duration::from_millis(500);
        for e in link.first_round(deadline).await {
            if e.result != vipd::dns::ResultKind::Ok {
                eprintln!(
                    "note: service {:?}: {} {}: {}",
                    e.key.service, e.view.kind, e.view.name, e.view.note
                );
            }
        }
        link.expand(&cfg)
    }))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = args.config.display();
    let cfg = match config::load(&args.config) {
        Ok(cfg) => cfg,
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            let n = diagnostics.len();
            eprintln!(
                "{file}: {n} error{}; nothing was applied",
                if n == 1 { "" } else { "s" }
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let cfg = if vipd::dns::wanted(&cfg) {
        resolve_dns(cfg)?
    } else {
        cfg
    };
    let _lock = if args.dry_run {
        None
    } else {
        match DaemonLock::try_acquire(&args.state_file)? {
            Some(lock) => Some(lock),
            None => {
                eprintln!("{}", beside_daemon(&args));
                return Ok(ExitCode::FAILURE);
            }
        }
    };
    if let Some(x) = cfg.dataplane.xdp() {
        return super::apply_xdp::run(&cfg, x, args.dry_run, args.json);
    }
    if cfg.dataplane.socket().is_some() {
        anyhow::bail!(
            "{file}: dataplane = \"socket\" is applied by the daemon (`vipd run`), which \
             attaches its cgroup programs; `vipd apply` programs IPVS and XDP only"
        );
    }
    let opts = ApplyOptions {
        state_file: args.state_file,
        dry_run: args.dry_run,
        overrides: WeightOverrides::default(),
    };
    let summary = reconcile::apply(&cfg, &opts).with_context(|| format!("applying {file}"))?;
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", text(&summary, args.verbose || args.dry_run));
    }
    for n in &summary.notes {
        eprintln!("vipd: note: {n}");
    }
    for f in &summary.failures {
        eprintln!("vipd: kernel refused {}", f.error);
    }
    Ok(if summary.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Why apply refuses, naming the daemon when its control socket says who it is.
fn beside_daemon(args: &Args) -> String {
    let socket = control::socket_path(&args.runtime_dir);
    let who = match control::query_status(&socket, Duration::from_secs(2)) {
        Ok(v) => format!("a vipd daemon (pid {}, config {})", v.pid, v.config),
        Err(_) => "a vipd daemon".to_owned(),
    };
    format!(
        "vipd apply: {who} is running with the ownership record {} and owns the kernel's \
         state; an apply would undo its quarantines and drains. Change the config and run \
         `vipd reload`, or stop the daemon first. Nothing was applied.",
        args.state_file.display()
    )
}

fn text(s: &ApplySummary, list: bool) -> String {
    let mut out = String::new();
    let shape = format!(
        "{} service{}, {} backend{}",
        s.services,
        plural(s.services),
        s.backends,
        plural(s.backends)
    );
    if s.dry_run {
        out.push_str(&format!(
            "dry run ({shape}): would make {} IPVS write{} and {} rtnetlink write{}\n",
            s.ops.len(),
            plural(s.ops.len()),
            s.reach.len(),
            plural(s.reach.len())
        ));
    } else {
        out.push_str(&format!(
            "applied ({shape}): {} netlink writes ({} IPVS, {} rtnetlink), {} sysctl write{}, {:.3} s\n",
            s.netlink_writes,
            s.ipvs_writes,
            s.rtnetlink_writes,
            s.sysctl_writes,
            plural(s.sysctl_writes),
            s.elapsed_us as f64 / 1e6
        ));
    }
    if list {
        for line in s.ops.iter().chain(&s.reach) {
            out.push_str(&format!("  {line}\n"));
        }
        for line in &s.sysctls {
            out.push_str(&format!("  sysctl {line}\n"));
        }
    }
    for d in &s.draining {
        out.push_str(&format!(
            "  draining backend {} of {}: {} active, {} inactive connection{}\n",
            d.backend,
            d.service,
            d.active_conns,
            d.inactive_conns,
            plural(d.inactive_conns as usize)
        ));
    }
    if s.foreign_services > 0 {
        out.push_str(&format!(
            "  {} service{} not created by vipd left untouched\n",
            s.foreign_services,
            plural(s.foreign_services)
        ));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
