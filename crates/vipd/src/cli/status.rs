//! `vipd status`: with a daemon running, its view over the control socket: per service
//! and backend the health state, effective weight, quarantines and recent outcomes
//! ([`status_daemon`]). Without one, every IPVS service in the kernel with its backends,
//! weights, connection counts, rates and counters, laid out like `ipvsadm -Ln` with
//! `--rate` and `--stats` side by side; each service marked as vipd's (with its config
//! name) or foreign, draining backends marked. `--json` for either as JSON.
//!
//! The first line (or the JSON's `source`) says which was read. `--daemon` asks the
//! daemon only and fails (exit 1) when none runs; `--kernel` reads the kernel even
//! when one does. `--service NAME` shows one service (its config name, or its key).

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use vipd::{
    daemon::control::{self, ControlError, DEFAULT_RUNTIME_DIR},
    reconcile::{
        status::{self, StatsView, StatusView},
        DEFAULT_STATE_FILE,
    },
};

#[path = "status_daemon.rs"]
mod status_daemon;

/// How long the daemon has to answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(clap::Args)]
pub struct Args {
    /// vipd's ownership record, to tell its services from others.
    #[arg(long, default_value = DEFAULT_STATE_FILE)]
    state_file: PathBuf,
    /// The running daemon's directory, holding its control socket `vipd.sock`.
    #[arg(long, env = "VIPD_RUNTIME_DIR", default_value = DEFAULT_RUNTIME_DIR)]
    runtime_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// The daemon's view only: exit 1 when no daemon runs.
    #[arg(long, conflicts_with = "kernel")]
    daemon: bool,
    /// The kernel's IPVS table, even when a daemon runs.
    #[arg(long)]
    kernel: bool,
    /// Only this service: its config name, or its key as status prints it (the
    /// daemon: `tcp 198.18.0.10:80`; the kernel's table: `198.18.0.10:80`).
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
}

/// Which source a status came from.
#[derive(serde::Serialize)]
struct Sourced<'a, V> {
    /// `daemon` or `kernel`.
    source: &'static str,
    #[serde(flatten)]
    view: &'a V,
}

fn print_json<V: serde::Serialize>(source: &'static str, view: &V) -> anyhow::Result<()> {
    let out = serde_json::to_string_pretty(&Sourced { source, view })?;
    println!("{out}");
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let socket = control::socket_path(&args.runtime_dir);
    let wanted = args.service.as_deref();
    if !args.kernel {
        match control::query_status(&socket, QUERY_TIMEOUT) {
            Ok(mut view) => {
                if let Some(name) = wanted {
                    view.services.retain(|s| s.name == name || s.key == name);
                    if view.services.is_empty() {
                        eprintln!("vipd status: the daemon has no service {name:?}");
                        return Ok(ExitCode::FAILURE);
                    }
                }
                if args.json {
                    print_json("daemon", &view)?;
                } else {
                    println!("source: the daemon, on {}", socket.display());
                    print!("{}", status_daemon::render(&view, SystemTime::now()));
                }
                return Ok(ExitCode::SUCCESS);
            }
            Err(ControlError::NotRunning { path }) if args.daemon => {
                eprintln!("vipd status: no daemon at {} (not running)", path.display());
                return Ok(ExitCode::FAILURE);
            }
            Err(ControlError::NotRunning { path }) => eprintln!(
                "vipd status: no daemon at {} (not running); showing the kernel's IPVS table",
                path.display()
            ),
            // Permission denied names the socket and says root is needed.
            Err(e) => return Err(e.into()),
        }
    }
    let mut view = status::read(&args.state_file).context("reading the IPVS state")?;
    if let Some(name) = wanted {
        view.services.retain(|s| kernel_service_matches(s, name));
        if view.services.is_empty() {
            eprintln!("vipd status: the kernel has no IPVS service {name:?}");
            return Ok(ExitCode::FAILURE);
        }
    }
    if args.json {
        print_json("kernel", &view)?;
    } else {
        println!("source: the kernel's IPVS table, with vipd's ownership record");
        print!("{}", render(&view, SystemTime::now()));
    }
    Ok(ExitCode::SUCCESS)
}

/// A kernel service `name` designates: vipd's config name for it, its address
/// (`198.18.0.10:80`, `5` for a fwmark) or that after the protocol (`tcp 198.18.0.10:80`).
fn kernel_service_matches(s: &status::ServiceView, name: &str) -> bool {
    let keyed = format!("{} {}", s.protocol.to_ascii_lowercase(), s.address);
    s.name.as_deref() == Some(name) || s.address == name || keyed == name
}

const NUMBERS: [&str; 11] = [
    "Weight",
    "ActiveConn",
    "InActConn",
    "CPS",
    "InPPS",
    "OutPPS",
    "Conns",
    "InPkts",
    "OutPkts",
    "InBytes",
    "OutBytes",
];

fn numbers(weight: Option<u32>, active: u64, inactive: u64, s: &StatsView) -> Vec<String> {
    let mut v = vec![weight.map_or_else(String::new, |w| w.to_string())];
    v.extend(
        [
            active, inactive, s.cps, s.inpps, s.outpps, s.conns, s.inpkts, s.outpkts, s.inbytes,
            s.outbytes,
        ]
        .iter()
        .map(|n| human(*n)),
    );
    v
}

/// As ipvsadm prints large counters: exact below 100 million, then K, M, G, T.
fn human(n: u64) -> String {
    match n {
        0..100_000_000 => n.to_string(),
        100_000_000..1_000_000_000 => format!("{}K", n / 1_000),
        1_000_000_000..1_000_000_000_000 => format!("{}M", n / 1_000_000),
        1_000_000_000_000..1_000_000_000_000_000 => format!("{}G", n / 1_000_000_000),
        _ => format!("{}T", n / 1_000_000_000_000),
    }
}

fn forward_label(f: &str) -> String {
    match f {
        "masq" => "Masq".to_owned(),
        "route" => "Route".to_owned(),
        "local" => "Local".to_owned(),
        "bypass" => "Bypass".to_owned(),
        other => other.replacen("tunnel", "Tunnel", 1),
    }
}

/// The table. `now` only dates draining backends.
pub fn render(view: &StatusView, now: SystemTime) -> String {
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut rows: Vec<(String, Vec<String>)> = vec![
        (
            "Prot LocalAddress:Port Scheduler Flags [Owner]".to_owned(),
            vec![String::new(); NUMBERS.len()],
        ),
        (
            "  -> RemoteAddress:Port Forward".to_owned(),
            NUMBERS.iter().map(|s| s.to_string()).collect(),
        ),
    ];
    for s in &view.services {
        let mut left = format!("{:<4} {} {}", s.protocol, s.address, s.scheduler);
        let sched_flags: Vec<&str> = s
            .flags
            .iter()
            .map(String::as_str)
            .filter(|f| *f != "persistent" && *f != "ops")
            .collect();
        if !sched_flags.is_empty() {
            left.push_str(&format!(" ({})", sched_flags.join(",")));
        }
        if let Some(t) = s.persistence_timeout {
            left.push_str(&format!(" persistent {t}"));
        }
        if s.flags.iter().any(|f| f == "ops") {
            left.push_str(" ops");
        }
        match &s.name {
            Some(n) => left.push_str(&format!(" [vipd: {n}]")),
            None => left.push_str(&format!(" [{}]", s.owner)),
        }
        rows.push((
            left,
            numbers(None, s.active_conns, s.inactive_conns, &s.stats),
        ));
        for b in &s.backends {
            let mut left = format!("  -> {} {}", b.address, forward_label(&b.forward));
            if b.upper_threshold != 0 || b.lower_threshold != 0 {
                left.push_str(&format!(" x{}/y{}", b.upper_threshold, b.lower_threshold));
            }
            if let Some(since) = b.draining_since_unix_ms {
                let secs = now_ms.saturating_sub(since) / 1000;
                left.push_str(&format!(" (draining {secs}s)"));
            }
            rows.push((
                left,
                numbers(
                    Some(b.weight),
                    u64::from(b.active_conns),
                    u64::from(b.inactive_conns),
                    &b.stats,
                ),
            ));
        }
    }
    let left_w = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut widths = [0usize; NUMBERS.len()];
    for (_, cols) in &rows {
        for (w, c) in widths.iter_mut().zip(cols) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = format!(
        "IP Virtual Server: {} service{} ({} vipd's, {} foreign)\n",
        view.services.len(),
        if view.services.len() == 1 { "" } else { "s" },
        view.services.iter().filter(|s| s.owner == "vipd").count(),
        view.services.iter().filter(|s| s.owner != "vipd").count(),
    );
    if !view.sysctls.is_empty() {
        out.push_str(&format!("sysctls: {}\n", view.sysctls.join(" ")));
    }
    for (left, cols) in &rows {
        let mut line = format!("{left:<left_w$}");
        for (w, c) in widths.iter().zip(cols) {
            line.push_str(&format!(" {c:>w$}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use vipd::reconcile::status::{BackendView, ServiceView};

    use super::*;

    fn stats(n: u64) -> StatsView {
        StatsView {
            conns: n,
            inpkts: n * 10,
            outpkts: n * 9,
            inbytes: n * 1000,
            outbytes: n * 900,
            cps: 1,
            inpps: 2,
            outpps: 3,
            inbps: 4,
            outbps: 5,
        }
    }

    #[test]
    fn table_reads_like_ipvsadm() {
        let view = StatusView {
            sysctls: vec!["net.ipv4.vs.conntrack=1".into()],
            services: vec![
                ServiceView {
                    protocol: "TCP".into(),
                    address: "198.18.0.10:80".into(),
                    owner: "vipd".into(),
                    name: Some("web".into()),
                    scheduler: "sh".into(),
                    flags: vec!["persistent".into(), "sh-port".into()],
                    persistence_timeout: Some(300),
                    active_conns: 1,
                    inactive_conns: 2,
                    stats: stats(12),
                    backends: vec![BackendView {
                        address: "198.18.1.2:8080".into(),
                        forward: "masq".into(),
                        weight: 0,
                        upper_threshold: 0,
                        lower_threshold: 0,
                        active_conns: 1,
                        inactive_conns: 2,
                        persistent_conns: 0,
                        draining_since_unix_ms: Some(1_000),
                        stats: stats(12_345),
                    }],
                },
                ServiceView {
                    protocol: "UDP".into(),
                    address: "[fd00:18::1]:53".into(),
                    owner: "foreign".into(),
                    name: None,
                    scheduler: "rr".into(),
                    flags: vec!["ops".into()],
                    persistence_timeout: None,
                    active_conns: 0,
                    inactive_conns: 0,
                    stats: StatsView::default(),
                    backends: vec![],
                },
            ],
        };
        let text = render(
            &view,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(61),
        );
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines[0].join(" "),
            "IP Virtual Server: 2 services (1 vipd's, 1 foreign)"
        );
        assert_eq!(lines[1].join(" "), "sysctls: net.ipv4.vs.conntrack=1");
        let lines = &lines[1..];
        assert_eq!(
            lines[2][..4],
            ["->", "RemoteAddress:Port", "Forward", "Weight"]
        );
        assert_eq!(
            lines[3].join(" "),
            "TCP 198.18.0.10:80 sh (sh-port) persistent 300 [vipd: web] 1 2 1 2 3 12 120 108 12000 10800"
        );
        assert_eq!(
            lines[4].join(" "),
            "-> 198.18.1.2:8080 Masq (draining 60s) 0 1 2 1 2 3 12345 123450 111105 12345000 11110500"
        );
        assert_eq!(
            lines[5].join(" "),
            "UDP [fd00:18::1]:53 rr ops [foreign] 0 0 0 0 0 0 0 0 0 0"
        );
        // Columns line up: every number column ends at the same offset.
        let ends: Vec<usize> = text.lines().skip(3).map(str::len).collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn human_units() {
        assert_eq!(human(99_999_999), "99999999");
        assert_eq!(human(123_456_789), "123456K");
        assert_eq!(human(12_345_678_901), "12345M");
        assert_eq!(human(u64::MAX), "18446744T");
    }
}
