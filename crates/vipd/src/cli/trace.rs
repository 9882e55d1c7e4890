//! `vipd trace`: a live log of connections through the configured VIPs, with the real
//! backend IPVS chose for each and every state transition, plus the outcome the health
//! logic would see (established, refused, SYN retransmit, ...). For UDP services: each
//! new flow and the backend IPVS chose, ICMP errors naming their backend, and once a
//! second the datagrams sent to and replies received from each backend. Services with
//! DNS backends: each change of a name's backends, as the running daemon resolved it.

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
    config::{self, Family, Protocol, ServiceKey},
    daemon::control::DEFAULT_RUNTIME_DIR,
    watcher::{Correlator, Event, Flavour, Hooks, Outcome, Probes, Report, RING_DRAIN},
};

#[derive(clap::Args)]
pub struct Args {
    /// The config whose services to watch.
    #[arg(long, short, default_value = vipd::config::DEFAULT_CONFIG, env = "VIPD_CONFIG")]
    config: PathBuf,
    /// Only this service (by name).
    #[arg(long)]
    service: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// How to attach the socket hooks: `auto`, `btf` or `classic` (see `vipd run`).
    #[arg(long, default_value = "auto", env = "VIPD_PROBES")]
    probes: Flavour,
    /// The running daemon's directory: changes of the backends it resolves from DNS
    /// are noted in the trace.
    #[arg(long, env = "VIPD_RUNTIME_DIR", default_value = DEFAULT_RUNTIME_DIR)]
    runtime_dir: PathBuf,
}

static STOP: AtomicBool = AtomicBool::new(false);

const TCP: u8 = vipd_common::IPPROTO_TCP as u8;
const UDP: u8 = vipd_common::IPPROTO_UDP as u8;

/// The UDP traffic counters as last printed, to print only what changed.
#[derive(Default)]
struct UdpTally {
    last: HashMap<vipd_common::DestKey, vipd_common::UdpTraffic>,
}

impl UdpTally {
    fn print(
        &mut self,
        printer: &Printer,
        now: &[(vipd_common::DestKey, vipd_common::UdpTraffic)],
    ) {
        let mono = clock(libc::CLOCK_MONOTONIC);
        for (key, t) in now {
            let before = self.last.insert(*key, *t).unwrap_or_default();
            let (sent, replies) = (
                t.sent.saturating_sub(before.sent),
                t.replied.saturating_sub(before.replied),
            );
            if sent == 0 && replies == 0 {
                continue;
            }
            let Some((vip, backend)) = vipd::watcher::dest_addrs(key) else {
                continue;
            };
            let waiting = match t.pending_since_ns {
                0 => String::new(),
                since => format!(
                    ", no reply for {:.0} ms",
                    (mono - since as i128).max(0) as f64 / 1e6
                ),
            };
            let service = printer.service(UDP, &vip, None);
            if printer.json {
                let v = serde_json::json!({
                    "ts_ns": mono, "service": service, "vip": vip.to_string(),
                    "backend": backend.to_string(), "udp_sent": sent, "udp_replies": replies,
                    "pending_since_ns": t.pending_since_ns,
                });
                println!("{v}");
            } else {
                println!(
                    "{} {service:<12} => {backend}: UDP {sent} datagrams sent, {replies} replies in the last second{waiting}",
                    printer.time(mono as u64)
                );
            }
        }
    }
}

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

/// `HH:MM:SS.micros` (UTC) of a wall-clock time in ns since the epoch.
fn hms(wall: i128) -> String {
    let secs = wall.div_euclid(1_000_000_000);
    let micros = wall.rem_euclid(1_000_000_000) / 1_000;
    format!(
        "{:02}:{:02}:{:02}.{micros:06}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

struct Printer {
    json: bool,
    /// Service names by (IP protocol, VIP).
    names: HashMap<(u8, SocketAddr), String>,
    /// Fwmark service names by (is IPv6, mark).
    marks: HashMap<(bool, u32), String>,
    realtime_offset: i128,
}

impl Printer {
    fn time(&self, ts_ns: u64) -> String {
        hms(ts_ns as i128 + self.realtime_offset)
    }

    /// The service of a connection to `vip`, or of the fwmark service that scheduled
    /// it.
    fn service(&self, protocol: u8, vip: &SocketAddr, fwmark: Option<u32>) -> &str {
        match fwmark {
            Some(mark) => self.marks.get(&(vip.is_ipv6(), mark)),
            None => self.names.get(&(protocol, *vip)),
        }
        .map_or("?", String::as_str)
    }

    fn event(&self, e: &Event) {
        let mut protocol = TCP;
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
                protocol: p,
                client,
                vip,
                backend,
                ..
            } => {
                protocol = *p;
                let what = if *p == UDP {
                    "new UDP flow: IPVS chose backend"
                } else {
                    "IPVS chose backend"
                };
                (*ts_ns, what.into(), *client, *vip, Some(*backend))
            }
            Event::IcmpError {
                ts_ns,
                client,
                vip,
                icmp,
                backend,
            } => {
                protocol = UDP;
                (
                    *ts_ns,
                    format!("ICMP {}", icmp.describe()),
                    *client,
                    *vip,
                    *backend,
                )
            }
        };
        let service = self.service(protocol, &dst, e.fwmark());
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
            Outcome::Established {
                latency: Some(latency),
            } => format!("established in {:.3} ms", latency.as_secs_f64() * 1e3),
            Outcome::Established { latency: None } => "established".into(),
            Outcome::Refused => "REFUSED".into(),
            Outcome::SynRetransmit(n) => format!("SYN retransmit #{n}"),
            Outcome::ClientAbort => "client gave up in SYN_SENT".into(),
            Outcome::Closed { by_peer, reset } => format!(
                "closed by {}{}",
                if by_peer { "backend" } else { "client" },
                if reset { " with RST" } else { "" }
            ),
            Outcome::Unreachable(icmp) => format!("UNREACHABLE ({})", icmp.describe()),
            Outcome::Silent(d) => format!("SILENT for {:.0} ms", d.as_secs_f64() * 1e3),
        };
        let service = self.service(r.protocol, &r.vip, r.fwmark);
        let backend = r
            .backend
            .map_or_else(|| "UNATTRIBUTED".to_string(), |b| b.to_string());
        if self.json {
            let v = serde_json::json!({
                "ts_ns": r.ts_ns, "service": service, "vip": r.vip.to_string(),
                "client": r.client.map(|c| c.to_string()), "backend": backend, "outcome": outcome,
            });
            println!("{v}");
        } else {
            println!(
                "{} {:<12} => {backend}: {outcome}",
                self.time(r.ts_ns),
                service
            );
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&args.config).map_err(|d| anyhow::anyhow!("{d}"))?;
    let mut probes = match Probes::load(Hooks {
        syn_rto: false,
        ..Hooks::ALL.with_flavour(args.probes)
    }) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(
                "{e}; tracing without IPVS hooks: events will not name their real backends"
            );
            Probes::load(Hooks::SOCKETS.with_flavour(args.probes))
                .or_else(|_| Probes::load(Hooks::TRACEPOINTS.with_flavour(args.probes)))
                .context("loading the socket hooks")?
        }
    };
    tracing::info!("hooks: {}", probes.describe());
    let mut names = HashMap::new();
    let mut marks = HashMap::new();
    for (id, svc) in cfg.services.iter().enumerate() {
        if args.service.as_ref().is_some_and(|n| *n != svc.name) {
            continue;
        }
        match svc.key {
            ServiceKey::Addr { protocol, addr } => {
                let p = match protocol {
                    Protocol::Tcp => TCP,
                    Protocol::Udp => UDP,
                };
                probes.watch(addr, p, id as u32)?;
                names.insert((p, addr), svc.name.clone());
            }
            ServiceKey::Fwmark { family, mark } => {
                let af = match family {
                    Family::Ipv4 => libc::AF_INET,
                    Family::Ipv6 => libc::AF_INET6,
                };
                match probes.watch_fwmark(af as u8, mark, id as u32) {
                    Ok(()) => {
                        marks.insert((family == Family::Ipv6, mark), svc.name.clone());
                    }
                    Err(e) => tracing::warn!(service = %svc.name, "not traced: {e}"),
                }
            }
        }
    }
    if names.is_empty() && marks.is_empty() {
        bail!("no service to trace in {}", args.config.display());
    }

    // SAFETY: installing a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let printer = Printer {
        json: args.json,
        names,
        marks,
        realtime_offset: clock(libc::CLOCK_REALTIME) - clock(libc::CLOCK_MONOTONIC),
    };
    if vipd::dns::wanted(&cfg) {
        let (dir, service, json) = (args.runtime_dir.clone(), args.service.clone(), args.json);
        std::thread::spawn(move || {
            super::trace_dns::follow(dir, service, json, &STOP, |t| {
                let ns = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i128);
                hms(ns)
            })
        });
    }
    let mut correlator = Correlator::new(65536);
    let mut bad = 0u64;
    let mut udp = UdpTally::default();
    let mut next_tally = std::time::Instant::now();
    while !STOP.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: probes.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd. EINTR (a signal) just ends this wait.
        unsafe { libc::poll(&mut pfd, 1, RING_DRAIN.as_millis() as i32) };
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
        if std::time::Instant::now() >= next_tally {
            next_tally += std::time::Duration::from_secs(1);
            udp.print(&printer, &probes.udp_traffic());
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
