//! Benchmark of the connection watcher (not a test: it prints figures, asserts nothing).
//!
//! For 1, 2 and 4 client threads it makes short TCP connections as fast as it can, first
//! with no probes (the baseline, same run), then with vipd's probes attached and a reader
//! draining the ring buffer. It prints connections/s, events received and lost, and the
//! extra CPU per connection, expressed as CPU cost per 1,000 connections/s.
//!
//! `--mode host`: loopback, tracepoints only (the host tier).
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

use vipd::watcher::{Hooks, Probes};
use vipd_common::IPPROTO_TCP;
use vipd_vmtests::lab::{Family, Lab};

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
}

fn connect_loop(target: SocketAddr, threads: usize, per_thread: u64) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            thread::spawn(move || {
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

fn run(target: SocketAddr, threads: usize, per_thread: u64, hooks: Option<Hooks>) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let reader = hooks.map(|hooks| {
        let mut probes = Probes::load(hooks).expect("loading probes");
        probes.watch(target, IPPROTO_TCP as u8, 1).unwrap();
        let stop = stop.clone();
        thread::spawn(move || {
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
            (events, probes.lost_events().unwrap())
        })
    });
    thread::sleep(Duration::from_millis(100));
    let cpu0 = cpu_seconds();
    let secs = connect_loop(target, threads, per_thread);
    let cpu = cpu_seconds() - cpu0;
    stop.store(true, Ordering::Relaxed);
    let (events, lost) = reader.map(|r| r.join().unwrap()).unwrap_or((0, 0));
    let n = threads as u64 * per_thread;
    Run {
        rate: n as f64 / secs,
        cpu_per_conn: cpu / n as f64,
        events,
        lost,
    }
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
    let (_lab, target, hooks) = match mode {
        "host" => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = l.local_addr().unwrap();
            serve(l);
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
        other => panic!("--mode host|vip, not {other}"),
    };
    println!(
        "watcher benchmark, mode {mode}, {per_thread} connections per thread, target {target}"
    );
    println!("threads  conn/s off  conn/s on  rate on/off  events  lost  CPU us/conn off  on  extra CPU per 1,000 conn/s");
    let mut best_zero_loss = 0.0f64;
    for threads in [1, 2, 4] {
        let off = run(target, threads, per_thread, None);
        let on = run(target, threads, per_thread, Some(hooks));
        let extra = (on.cpu_per_conn - off.cpu_per_conn) * 1000.0;
        if on.lost == 0 {
            best_zero_loss = best_zero_loss.max(on.rate);
        }
        println!(
            "{threads:>7}  {:>11.0}  {:>9.0}  {:>11.3}  {:>6}  {:>4}  {:>15.1}  {:>3.1}  {:>6.1} % of a core",
            off.rate,
            on.rate,
            on.rate / off.rate,
            on.events,
            on.lost,
            off.cpu_per_conn * 1e6,
            on.cpu_per_conn * 1e6,
            extra * 100.0
        );
    }
    println!("highest connection rate with 0 lost events: {best_zero_loss:.0} conn/s");
}
