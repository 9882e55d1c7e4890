//! Benchmark of the connection watcher (not a test: it prints figures, asserts nothing).
//!
//! For 1, 2 and 4 client threads it makes short TCP connections as fast as it can, first
//! with no probes (the baseline, same run), then with vipd's probes attached and a reader
//! draining the ring buffer: once with the classic socket hooks (tracepoints, kprobe on
//! tcp_connect) and once with the BTF ones (tp_btf, fentry), each with the target
//! watched, unwatched (no VIP on its port) and beside a VIP on its port (another
//! address). It prints connections/s,
//! events received and lost, and the extra CPU per connection, expressed as CPU cost
//! per 1,000 connections/s, for each form.
//!
//! The whole-process CPU difference is noisy on a shared host (the client and the
//! server both run in this process); the programs' own CPU, from the kernel's BPF
//! stats, and the reader thread's CPU, from its thread clock, are printed beside it
//! per connection and as a share of a core per 1,000 connections/s.
//!
//! `--mode host`: loopback, the socket tracepoints only (the host tier). Both ends of
//! each connection are this kernel's sockets, so the hooks run for both.
//! `--mode remote`: the host tier, with the server a userspace responder in a network
//! namespace of its own ([`RemoteServer`]): the hooks run for the client's end only, as
//! on a client whose servers are other hosts.
//! `--mode vip`: inside the VM, through an IPVS VIP to a backend in a network namespace,
//! every hook attached.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use vipd::watcher::{Flavour, Hooks, Probes};
use vipd_common::IPPROTO_TCP;
use vipd_vmtests::{
    lab::{Family, Lab},
    remote_server::RemoteServer,
};

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn cpu_seconds() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid rusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

struct Run {
    rate: f64,
    cpu_per_conn: f64,
    events: u64,
    lost: u64,
    /// Nanoseconds per run of each program that ran, by program name.
    ns_per_run: Vec<(String, f64)>,
    /// The programs' run time per connection, all programs together (BPF stats).
    programs_per_conn: f64,
    /// The reader thread's CPU per connection.
    reader_per_conn: f64,
}

/// How the probes are set up for one run.
#[derive(Clone, Copy)]
struct Setup {
    hooks: Hooks,
    target: Target,
}

/// What is watched in one run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The target is a VIP: events flow.
    Watched,
    /// No VIP uses the target's port: every hook runs and filters the connection out
    /// at the port (the cost on a client's other traffic).
    Unwatched,
    /// A VIP on the target's port but another address: the hooks filter the connection
    /// out at the address lookup (the cost on other traffic to a VIP's port).
    SamePort,
}

impl Target {
    const ALL: [Self; 3] = [Self::Watched, Self::Unwatched, Self::SamePort];

    fn name(self) -> &'static str {
        match self {
            Self::Watched => "watched",
            Self::Unwatched => "unwatched",
            Self::SamePort => "same port",
        }
    }
}

/// An address no test host has, with the target's port: a VIP that is never connected to.
fn decoy(target: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = if target.is_ipv4() {
        "198.51.100.1".parse().unwrap()
    } else {
        "2001:db8::1".parse().unwrap()
    };
    SocketAddr::new(ip, target.port())
}

/// Where connections go: the target, and the network namespace the clients run in
/// (None: this process's).
#[derive(Clone)]
struct Dest {
    target: SocketAddr,
    netns: Option<String>,
}

fn connect_loop(dest: &Dest, threads: usize, per_thread: u64) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let Dest { target, netns } = dest.clone();
            thread::spawn(move || {
                if let Some(ns) = netns {
                    vipd_vmtests::enter_netns(&ns).expect("entering the client namespace");
                }
                let mut buf = Vec::new();
                for _ in 0..per_thread {
                    let mut s = TcpStream::connect(target).expect("connect");
                    buf.clear();
                    let _ = s.read_to_end(&mut buf);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    started.elapsed().as_secs_f64()
}

fn run(dest: &Dest, threads: usize, per_thread: u64, setup: Option<Setup>) -> Run {
    let target = dest.target;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = setup.map(|setup| {
        let mut probes = Probes::load(setup.hooks).expect("loading probes");
        match setup.target {
            Target::Watched => probes.watch(target, IPPROTO_TCP as u8, 1).unwrap(),
            Target::SamePort => probes.watch(decoy(target), IPPROTO_TCP as u8, 1).unwrap(),
            Target::Unwatched => {}
        }
        let stop = stop.clone();
        thread::spawn(move || {
            let cpu0 = thread_cpu_seconds();
            let mut events = 0u64;
            loop {
                let mut drained = false;
                while let Some(e) = probes.next_event() {
                    e.expect("decodable event");
                    events += 1;
                    drained = true;
                }
                if stop.load(Ordering::Relaxed) && !drained {
                    break;
                }
                if !drained {
                    // Wait for the ring buffer to signal data, as vipd does.
                    let mut pfd = libc::pollfd {
                        fd: std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&probes)),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 50) };
                }
            }
            let reader_cpu = thread_cpu_seconds() - cpu0;
            let stats: Vec<_> = probes
                .program_stats()
                .into_iter()
                .filter(|p| p.runs > 0)
                .collect();
            let programs = stats.iter().map(|p| p.run_time.as_secs_f64()).sum::<f64>();
            let ns_per_run = stats
                .into_iter()
                .map(|p| (p.program, p.run_time.as_nanos() as f64 / p.runs as f64))
                .collect();
            Reader {
                events,
                lost: probes.lost_events().unwrap(),
                ns_per_run,
                programs,
                cpu: reader_cpu,
            }
        })
    });
    thread::sleep(Duration::from_millis(100));
    let cpu0 = cpu_seconds();
    let secs = connect_loop(dest, threads, per_thread);
    let cpu = cpu_seconds() - cpu0;
    stop.store(true, Ordering::Relaxed);
    let r = reader.map_or_else(Reader::default, |r| r.join().unwrap());
    let n = (threads as u64 * per_thread) as f64;
    Run {
        rate: n / secs,
        cpu_per_conn: cpu / n,
        events: r.events,
        lost: r.lost,
        ns_per_run: r.ns_per_run,
        programs_per_conn: r.programs / n,
        reader_per_conn: r.cpu / n,
    }
}

/// What the reader thread saw while the probes were attached.
#[derive(Default)]
struct Reader {
    events: u64,
    lost: u64,
    ns_per_run: Vec<(String, f64)>,
    /// Seconds of run time of all programs together.
    programs: f64,
    /// Seconds of the reader thread's CPU.
    cpu: f64,
}

/// Seconds of CPU per connection as a percentage of a core per 1,000 connections/s.
fn per_thousand(seconds_per_conn: f64) -> f64 {
    seconds_per_conn * 1000.0 * 100.0
}

fn serve(listener: TcpListener) {
    thread::spawn(move || {
        for c in listener.incoming().flatten() {
            drop(c);
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args
        .iter()
        .position(|a| a == "--mode")
        .and_then(|i| args.get(i + 1))
        .map_or("host", String::as_str);
    let per_thread: u64 = args
        .iter()
        .position(|a| a == "--connections")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(if mode == "vip" { 5_000 } else { 20_000 });
    let mut remote = None;
    let (_lab, target, hooks) = match mode {
        "host" => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = l.local_addr().unwrap();
            serve(l);
            (None, a, Hooks::TRACEPOINTS)
        }
        "remote" => {
            let server = RemoteServer::start("vipd-wbench", 8080);
            let a = server.addr;
            remote = Some(server);
            (None, a, Hooks::TRACEPOINTS)
        }
        "vip" => {
            vipd_vmtests::require_vm();
            let lab = Lab::new(Family::V4, 1);
            let backend = SocketAddr::new(lab.backends[0].addr, 8080);
            let l = vipd_vmtests::in_netns(&lab.backends[0].ns, move || {
                TcpListener::bind(backend).unwrap()
            });
            serve(l);
            let vip = lab.ipvsadm_service(80, 0, 8080);
            (Some(lab), vip, Hooks::ALL)
        }
        other => panic!("--mode host|remote|vip, not {other}"),
    };
    let dest = Dest {
        target,
        netns: remote.as_ref().map(|r| r.client_ns.clone()),
    };
    println!(
        "watcher benchmark, mode {mode}, {per_thread} connections per thread, target {target}"
    );
    // The kernel counts each program's runs and run time while this is held.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling BPF stats");
    // Warm-up, not counted: the first run of a fresh process is slower.
    run(&dest, 1, per_thread / 4, None);
    println!("hooks    target     threads  conn/s off  conn/s on  rate on/off  events  lost  CPU us/conn off  on  extra CPU per 1,000 conn/s  programs ns/conn  reader ns/conn");
    let flavours = [("classic", Flavour::Classic), ("btf", Flavour::Btf)];
    // Per flavour: the best zero-loss rate watched, and the highest watched rate with
    // the events lost at it.
    let mut best_zero_loss = [0.0f64; 2];
    let mut fastest = [(0.0f64, 0u64); 2];
    // Per flavour and target: summed extra CPU (whole process), programs' and reader's
    // CPU per connection.
    let mut extra_sum = [[0.0f64; 3]; 2];
    let mut programs_sum = [[0.0f64; 3]; 2];
    let mut reader_sum = [[0.0f64; 3]; 2];
    // (program, target) -> summed ns per run, number of runs summed.
    let mut per_program: Vec<(String, usize, f64, u32)> = Vec::new();
    let thread_counts = [1, 2, 4];
    for threads in thread_counts {
        let off = run(&dest, threads, per_thread, None);
        for (i, &(name, flavour)) in flavours.iter().enumerate() {
            for (w, goal) in Target::ALL.into_iter().enumerate() {
                let setup = Setup {
                    hooks: hooks.with_flavour(flavour),
                    target: goal,
                };
                let on = run(&dest, threads, per_thread, Some(setup));
                let extra = (on.cpu_per_conn - off.cpu_per_conn) * 1000.0;
                extra_sum[i][w] += extra;
                programs_sum[i][w] += on.programs_per_conn;
                reader_sum[i][w] += on.reader_per_conn;
                if goal == Target::Watched && on.lost == 0 {
                    best_zero_loss[i] = best_zero_loss[i].max(on.rate);
                }
                if goal == Target::Watched && on.rate > fastest[i].0 {
                    fastest[i] = (on.rate, on.lost);
                }
                for (program, ns) in on.ns_per_run {
                    match per_program.iter_mut().find(|p| p.0 == program && p.1 == w) {
                        Some(p) => {
                            p.2 += ns;
                            p.3 += 1;
                        }
                        None => per_program.push((program, w, ns, 1)),
                    };
                }
                println!(
                    "{name:<7}  {:<9}  {threads:>7}  {:>10.0}  {:>9.0}  {:>11.3}  {:>6}  {:>4}  {:>15.1}  {:>3.1}  {:>6.1} % of a core  {:>16.0}  {:>14.0}",
                    goal.name(),
                    off.rate,
                    on.rate,
                    on.rate / off.rate,
                    on.events,
                    on.lost,
                    off.cpu_per_conn * 1e6,
                    on.cpu_per_conn * 1e6,
                    extra * 100.0,
                    on.programs_per_conn * 1e9,
                    on.reader_per_conn * 1e9
                );
            }
        }
    }
    let n = thread_counts.len() as f64;
    for (i, (name, _)) in flavours.iter().enumerate() {
        println!(
            "{name}: highest connection rate with 0 lost events {:.0} conn/s; highest watched rate {:.0} conn/s, {} events lost at it",
            best_zero_loss[i], fastest[i].0, fastest[i].1,
        );
        for (w, goal) in Target::ALL.into_iter().enumerate() {
            let programs = programs_sum[i][w] / n;
            let reader = reader_sum[i][w] / n;
            println!(
                "{name} {}: programs {:.0} ns + reader {:.0} ns per connection = {:.3} % of a core per 1,000 conn/s (whole process, noisy: {:.1} %)",
                goal.name(),
                programs * 1e9,
                reader * 1e9,
                per_thousand(programs + reader),
                extra_sum[i][w] / n * 100.0
            );
        }
    }
    // The kernel times the program itself: for a classic tracepoint that leaves out
    // the record the kernel formats before running it, so the CPU columns above are the
    // whole-cost comparison and these the programs' own.
    println!("mean ns per program run (the kernel's BPF stats):   watched  unwatched  same port");
    per_program.sort_by(|a, b| a.0.cmp(&b.0));
    let ns = |p: &str, w: usize| {
        per_program
            .iter()
            .find(|x| x.0 == p && x.1 == w)
            .map(|x| x.2 / f64::from(x.3))
    };
    let mut names: Vec<&str> = per_program.iter().map(|p| p.0.as_str()).collect();
    names.dedup();
    for program in names {
        let cell = |w| ns(program, w).map_or("-".to_owned(), |v| format!("{v:.0} ns"));
        println!(
            "  {program:<46} {:>9}  {:>9}  {:>9}",
            cell(0),
            cell(1),
            cell(2)
        );
    }
}
