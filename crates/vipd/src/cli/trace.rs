//! `vipd trace`: a live log of connections through the configured VIPs, with the real
//! backend IPVS chose for each and every state transition, plus the outcome the health
//! logic would see (established, refused, SYN retransmit, ...).

use std::{
    collections::HashMap,
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context};
use vipd::{
    config::{self, Protocol, ServiceKey},
    watcher::{Correlator, Event, Hooks, Outcome, Probes, Report},
};

#[derive(clap::Args)]
pub struct Args {
    /// The config whose services to watch.
    #[arg(long, short)]
    config: PathBuf,
    /// Only this service (by name).
    #[arg(long)]
    service: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// CLOCK_MONOTONIC (what bpf_ktime_get_ns reports) minus CLOCK_REALTIME, to print
/// event times as wall-clock times.
fn clock(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

struct Printer {
    json: bool,
    names: HashMap<SocketAddr, String>,
    realtime_offset: i128,
}

impl Printer {
    fn time(&self, ts_ns: u64) -> String {
        let wall = ts_ns as i128 + self.realtime_offset;
        let secs = wall.div_euclid(1_000_000_000);
        let micros = wall.rem_euclid(1_000_000_000) / 1_000;
        format!(
            "{:02}:{:02}:{:02}.{micros:06}",
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60
        )
    }

    fn service(&self, vip: &SocketAddr) -> &str {
        self.names.get(vip).map_or("?", String::as_str)
    }

    fn event(&self, e: &Event) {
        let (ts, what, src, dst, backend) = match e {
            Event::StateChange {
                ts_ns,
                src,
                dst,
                old,
                new,
                backend,
                ..
            } => (
                *ts_ns,
                format!("{} -> {}", old.name(), new.name()),
                *src,
                *dst,
                *backend,
            ),
            Event::Connect {
                ts_ns, src, dst, ..
            } => (*ts_ns, "connect".into(), *src, *dst, None),
            Event::Retransmit {
                ts_ns,
                src,
                dst,
                state,
                backend,
                ..
            } => (
                *ts_ns,
                format!("retransmit in {}", state.name()),
                *src,
                *dst,
                *backend,
            ),
            Event::ReceiveReset {
                ts_ns,
                src,
                dst,
                backend,
                ..
            } => (*ts_ns, "RST received".into(), *src, *dst, *backend),
            Event::IpvsConn {
                ts_ns,
                client,
                vip,
                backend,
                ..
            } => (
                *ts_ns,
                "IPVS chose backend".into(),
                *client,
                *vip,
                Some(*backend),
            ),
        };
        let service = self.service(&dst);
        if self.json {
            let v = serde_json::json!({
                "ts_ns": ts, "service": service, "client": src.to_string(), "vip": dst.to_string(),
                "backend": backend.map(|b| b.to_string()), "event": what,
            });
            println!("{v}");
        } else {
            let via =
                backend.map_or_else(|| "(backend not yet known)".to_string(), |b| b.to_string());
            println!(
                "{} {service:<12} {src} -> {dst} via {via:<22} {what}",
                self.time(ts)
            );
        }
    }

    fn report(&self, r: &Report) {
        let outcome = match r.outcome {
            Outcome::Established { latency } => {
                format!("established in {:.3} ms", latency.as_secs_f64() * 1e3)
            }
            Outcome::Refused => "REFUSED".into(),
            Outcome::SynRetransmit(n) => format!("SYN retransmit #{n}"),
            Outcome::ClientAbort => "client gave up in SYN_SENT".into(),
            Outcome::Closed { by_peer, reset } => format!(
                "closed by {}{}",
                if by_peer { "backend" } else { "client" },
                if reset { " with RST" } else { "" }
            ),
        };
        let backend = r
            .backend
            .map_or_else(|| "UNATTRIBUTED".to_string(), |b| b.to_string());
        if self.json {
            let v = serde_json::json!({
                "ts_ns": r.ts_ns, "service": self.service(&r.vip), "vip": r.vip.to_string(),
                "client": r.client.map(|c| c.to_string()), "backend": backend, "outcome": outcome,
            });
            println!("{v}");
        } else {
            println!(
                "{} {:<12} => {backend}: {outcome}",
                self.time(r.ts_ns),
                self.service(&r.vip)
            );
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&args.config).map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut probes = match Probes::load(Hooks::ALL) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(
                "{e}; tracing with tracepoints only: events will not name their real backends"
            );
            Probes::load(Hooks::TRACEPOINTS).context("loading the tracepoint programs")?
        }
    };
    let mut names = HashMap::new();
    for (id, svc) in cfg.services.iter().enumerate() {
        if args.service.as_ref().is_some_and(|n| *n != svc.name) {
            continue;
        }
        match svc.key {
            ServiceKey::Addr {
                protocol: Protocol::Tcp,
                addr,
            } => {
                probes.watch(addr, vipd_common::IPPROTO_TCP as u8, id as u32)?;
                names.insert(addr, svc.name.clone());
            }
            _ => {
                tracing::info!(service = %svc.name, "not traced: only TCP services on a VIP are traced")
            }
        }
    }
    if names.is_empty() {
        bail!("no TCP service to trace in {}", args.config.display());
    }

    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let printer = Printer {
        json: args.json,
        names,
        realtime_offset: clock(libc::CLOCK_REALTIME) - clock(libc::CLOCK_MONOTONIC),
    };
    let mut correlator = Correlator::new(65536);
    let mut bad = 0u64;
    while !STOP.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: probes.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd. EINTR (a signal) just ends this wait.
        unsafe { libc::poll(&mut pfd, 1, 250) };
        while let Some(item) = probes.next_event() {
            match item {
                Ok(e) => {
                    printer.event(&e);
                    if let Some(r) = correlator.feed(&e) {
                        printer.report(&r);
                    }
                }
                Err(e) => {
                    bad += 1;
                    tracing::warn!("undecodable event: {e}");
                }
            }
        }
    }
    let c = correlator.counters();
    eprintln!(
        "vipd trace: {} outcomes, {} unattributed, {} lost in the kernel, {} undecodable, {} evicted",
        c.reports,
        c.unattributed,
        probes.lost_events()?,
        bad,
        c.evicted
    );
    Ok(ExitCode::SUCCESS)
}
