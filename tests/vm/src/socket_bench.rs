//! The socket plane benchmark's measurement, shared by its VM run (`bench_socket`, with
//! IPVS beside it) and its native run (`bench_socket_native`, on the development host's
//! namespace lab): each target's rate and latency against straight in short paired
//! slices, the kernel programs' time per connection, the daemons' CPU, and bulk
//! uploads. It prints figures and asserts nothing about them.
//!
//! * Connection setup: [`CLIENTS`] closed-loop clients, each connecting, reading a
//!   greeting and closing, again and again; connections per second and the latency of
//!   each (connect to the greeting's end), p50 and p99.
//! * Bulk: one upload stream into a sink for [`BULK`]; bytes per second.
//!
//! The host's speed wanders by more than the plane costs, and neighbouring seconds
//! wander alike. So each round runs straight, then one target, then straight again,
//! and so on through the targets (each round in another order), in slices of
//! [`SLICE`]; a target's slice is compared with the straight slices just before and
//! after it (their geometric mean), so that a drift slower than a slice cancels. A
//! target's ratio to straight is the median of its [`ROUNDS`] paired ratios, printed
//! with the sign test's 95 % confidence interval for that median. BPF statistics are
//! off in the rounds (they cost each program run two clock reads, which would weigh on
//! the targets that run more programs). Then one longer window per target with BPF
//! statistics on gives the kernel programs' time per connection and the daemons' CPU.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use crate::{
    bpf_stats,
    conn_bench::{setup, upload, Setup},
    daemon::{each_at, weighted_service, Vipd},
    lab::Family,
    native::ClientCgroup,
    sh,
    stats::{median, median_ci95, range},
};

pub const CLIENTS: usize = 4;
/// A paired slice: warm-up, then the window whose connections count.
pub const SLICE_WARMUP: Duration = Duration::from_millis(50);
pub const SLICE: Duration = Duration::from_millis(300);
/// Paired rounds: each gives every target one ratio to straight.
pub const ROUNDS: usize = 40;
/// The profiled window (BPF statistics on; daemons' CPU): long enough to take in a few
/// of a daemon's drains of its ring.
pub const PROFILE_WARMUP: Duration = Duration::from_millis(500);
pub const PROFILE_WINDOW: Duration = Duration::from_millis(1500);
pub const BULK: Duration = Duration::from_secs(3);
pub const BULK_ROUNDS: usize = 3;

/// Connection tracking entries the client's firewall may hold. Every connection leaves
/// one for the TIME_WAIT timeout (2 min): at these rates a default table (64 Ki in the
/// VM, 256 Ki on the development host) fills within one family's rounds, and then new
/// connections are dropped. A client that opens thousands of connections a second
/// raises it as this does.
pub const CONNTRACK_MAX: u32 = 1 << 20;

/// One thing to connect to: the first setup target is the baseline (straight).
pub struct Target {
    pub label: &'static str,
    /// Each connection goes to one of these at random.
    pub to: Vec<SocketAddr>,
    /// Run from inside the socket plane's cgroup.
    pub in_plane: bool,
}

impl Target {
    pub fn new(label: &'static str, to: &[SocketAddr], in_plane: bool) -> Target {
        Target {
            label,
            to: to.to_vec(),
            in_plane,
        }
    }
}

/// What one profiled run of a target measured: each program's runs and run time
/// (seconds), the connections attempted, and each daemon's CPU (seconds) over the
/// window's wall time (seconds).
#[derive(Clone, Default)]
struct Profile {
    programs: BTreeMap<String, (u64, f64)>,
    connections: f64,
    cpu: Vec<f64>,
    wall: f64,
}

/// One target's paired rounds: each round's slice, and its ratios to the straight
/// slices around it (rate: straight over the target, so above 1 is slower; p50 latency:
/// the target over straight).
#[derive(Default)]
struct Paired {
    slices: Vec<Setup>,
    rate: Vec<f64>,
    p50: Vec<f64>,
    /// The p50 of the time in connect(), the target over straight.
    connect_p50: Vec<f64>,
}

/// What the benchmark runs and where: the setup targets (straight first), the bulk
/// targets (straight first), the socket plane's cgroup that the benchmark moves in and
/// out of, and the daemons whose CPU it reads (a label each).
pub struct Bench<'a> {
    pub title: String,
    pub setups: Vec<Target>,
    pub bulks: Vec<Target>,
    pub cgroup: &'a mut ClientCgroup,
    pub daemons: Vec<(&'static str, &'a Vipd)>,
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl Bench<'_> {
    /// Puts this process inside the socket plane's cgroup, or back where it was.
    fn place(&mut self, in_plane: bool) {
        let moved = if in_plane {
            self.cgroup.join()
        } else {
            self.cgroup.leave()
        };
        moved.unwrap_or_else(|e| panic!("{e:#}"));
    }

    fn daemon_cpu(&self) -> Vec<f64> {
        self.daemons
            .iter()
            .map(|(_, d)| d.cpu_time().as_secs_f64())
            .collect()
    }

    /// Runs one slice of target `k`, from inside the plane's cgroup or not as the
    /// target says.
    fn slice(&mut self, k: usize) -> Setup {
        self.place(self.setups[k].in_plane);
        setup(&self.setups[k].to, CLIENTS, SLICE_WARMUP, SLICE)
    }

    /// Runs every round, the profiled windows and the bulk uploads, and prints them and
    /// the summary. Leaves this process outside the plane's cgroup.
    pub fn run(mut self) {
        println!(
            "== {}: {CLIENTS} closed-loop clients, {ROUNDS} paired rounds of {} ms slices ({} ms warm-up each); bulk {} s; kernel {}, clock source {}",
            self.title,
            SLICE.as_millis(),
            SLICE_WARMUP.as_millis(),
            BULK.as_secs(),
            sh("uname -r").trim(),
            sh("cat /sys/devices/system/clocksource/clocksource0/current_clocksource").trim()
        );
        let n = self.setups.len();
        let mut paired: Vec<Paired> = (0..n).map(|_| Paired::default()).collect();
        let mut before = self.slice(0);
        for round in 0..ROUNDS {
            let mut line = format!("round {:2}", round + 1);
            for i in 0..n - 1 {
                let k = 1 + (round + i) % (n - 1);
                let s = self.slice(k);
                let after = self.slice(0);
                let base_rate = (before.rate() * after.rate()).sqrt();
                let base = |q: &dyn Fn(&Setup) -> Duration| (us(q(&before)) * us(q(&after))).sqrt();
                let p50 = |s: &Setup| s.quantile(0.5);
                let connect_p50 = |s: &Setup| s.connect_quantile(0.5);
                let rate = base_rate / s.rate();
                let p = &mut paired[k];
                p.rate.push(rate);
                p.p50.push(us(p50(&s)) / base(&p50));
                p.connect_p50.push(us(connect_p50(&s)) / base(&connect_p50));
                line += &format!("  {} {rate:.3}", self.setups[k].label);
                p.slices.push(s);
                paired[0].slices.push(std::mem::replace(&mut before, after));
            }
            println!("{line}");
        }
        paired[0].slices.push(before);
        let programs = self.profile();
        let rates = self.bulk();
        self.place(false);

        println!("== {} over {ROUNDS} paired rounds", self.title);
        for (k, t) in self.setups.iter().enumerate() {
            let slices = &paired[k].slices;
            let each = |f: &dyn Fn(&Setup) -> f64| mean(&slices.iter().map(f).collect::<Vec<_>>());
            let failed: usize = slices.iter().map(|s| s.failed).sum();
            println!(
                "  setup {:26} {:8.0} conn/s  p50 {:6.0} us (in connect() {:6.0} us)  p99 {:6.0} us  failed {failed}",
                t.label,
                each(&Setup::rate),
                each(&|s| us(s.quantile(0.5))),
                each(&|s| us(s.connect_quantile(0.5))),
                each(&|s| us(s.quantile(0.99)))
            );
        }
        for (k, t) in self.setups.iter().enumerate().skip(1) {
            let p = &paired[k];
            let (lo, hi) = median_ci95(&p.rate);
            let (min, max) = range(&p.rate);
            let (llo, lhi) = median_ci95(&p.p50);
            let (clo, chi) = median_ci95(&p.connect_p50);
            println!(
                "  ratio straight / {:26} rate: median {:.3} (95 % CI {lo:.3}-{hi:.3}; rounds {min:.3}-{max:.3})  p50 latency: median {:.3} (95 % CI {llo:.3}-{lhi:.3})  p50 in connect(): median {:.3} (95 % CI {clo:.3}-{chi:.3})",
                t.label,
                median(&p.rate),
                median(&p.p50),
                median(&p.connect_p50)
            );
        }
        for (k, t) in self.setups.iter().enumerate() {
            print_programs(t.label, &programs[k]);
        }
        for (k, t) in self.setups.iter().enumerate() {
            let shares: Vec<String> = self
                .daemons
                .iter()
                .enumerate()
                .map(|(d, (label, _))| {
                    format!(
                        "{label} {:5.1} %",
                        100.0 * programs[k].cpu[d] / programs[k].wall.max(1e-9)
                    )
                })
                .collect();
            println!(
                "  daemon CPU during {:26} {} of a core",
                t.label,
                shares.join("  ")
            );
        }
        for (k, t) in self.bulks.iter().enumerate() {
            if rates[k].is_empty() {
                continue;
            }
            println!(
                "  bulk {:21} {:8.1} MB/s  ratio to straight {:.3}",
                t.label,
                mean(&rates[k]) / 1e6,
                mean(&rates[k]) / mean(&rates[0])
            );
        }
    }

    /// One profiled window per target, BPF statistics on: the kernel programs' runs and
    /// run time per connection, and each daemon's CPU.
    fn profile(&mut self) -> Vec<Profile> {
        let mut programs = vec![Profile::default(); self.setups.len()];
        let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling BPF stats");
        for (k, profile) in programs.iter_mut().enumerate() {
            self.place(self.setups[k].in_plane);
            let (p0, c0, started) = (bpf_stats::snapshot(), self.daemon_cpu(), Instant::now());
            let s = setup(&self.setups[k].to, CLIENTS, PROFILE_WARMUP, PROFILE_WINDOW);
            profile.wall = started.elapsed().as_secs_f64();
            bpf_stats::add_delta(&mut profile.programs, &p0, &bpf_stats::snapshot());
            profile.connections = s.attempts as f64;
            profile.cpu = self
                .daemon_cpu()
                .iter()
                .zip(c0)
                .map(|(c, c0)| c - c0)
                .collect();
        }
        programs
    }

    /// Bulk upload rounds: each bulk target's bytes per second.
    fn bulk(&mut self) -> Vec<Vec<f64>> {
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); self.bulks.len()];
        for round in 1..=BULK_ROUNDS {
            for (k, rate) in rates.iter_mut().enumerate() {
                self.place(self.bulks[k].in_plane);
                let t = &self.bulks[k];
                match upload(t.to[0], BULK) {
                    Ok(r) => {
                        println!("round {round} bulk {:21} {:8.1} MB/s", t.label, r / 1e6);
                        rate.push(r);
                    }
                    Err(e) => println!("round {round} bulk {:21} failed: {e}", t.label),
                }
            }
        }
        rates
    }
}

/// The kernel programs' time during one target's profiled window, per connection, and
/// each program that ran at least once for every other connection.
fn print_programs(label: &str, profile: &Profile) {
    let (progs, conns) = (&profile.programs, profile.connections.max(1.0));
    let (runs, busy) = progs
        .values()
        .fold((0, 0.0), |(r, b), (runs, busy)| (r + runs, b + busy));
    println!(
        "  kernel programs during {label:26} {:7.0} ns a connection, {:6.0} ns a run, {:4.1} runs a connection",
        1e9 * busy / conns,
        1e9 * busy / (runs.max(1) as f64),
        runs as f64 / conns
    );
    for (name, (runs, busy)) in progs {
        if *runs as f64 >= conns / 2.0 {
            println!(
                "    {name:16} {:4.1} runs a connection, {:6.0} ns a run",
                *runs as f64 / conns,
                1e9 * busy / (*runs as f64)
            );
        }
    }
}

/// Each target's greeting port (on every backend): a target's connections never share a
/// 4-tuple with another's, whose TIME_WAIT and conntrack entries would otherwise take
/// over a new connection that happens to reuse their client port. In target order:
/// straight, IPVS, the socket plane's VIP, straight with the plane attached.
pub const GREET: [u16; 4] = [8080, 8081, 8082, 8083];
/// The VIPs' port.
pub const VPORT: u16 = 80;
/// The bulk sinks' port (on every backend and every VIP).
pub const SINK: u16 = 9100;

/// The socket plane's VIP at `port`: another address of the VIP range than IPVS's.
pub fn socket_vip(family: Family, port: u16) -> SocketAddr {
    let ip: IpAddr = match family {
        Family::V4 => "198.18.0.20".parse().unwrap(),
        Family::V6 => "fd00:18::20".parse().unwrap(),
    };
    SocketAddr::new(ip, port)
}

/// The socket plane's services (without the `dataplane` and `[socket]` lines): the
/// greeting VIP over `greet`, the sink VIP over `sink`, every backend at weight 1.
pub fn socket_services(family: Family, greet: &[SocketAddr], sink: &[SocketAddr]) -> String {
    format!(
        "{}\n{}",
        weighted_service(
            "greet",
            "tcp",
            socket_vip(family, VPORT),
            &each_at(greet, 1),
            ""
        ),
        weighted_service(
            "sink",
            "tcp",
            socket_vip(family, SINK),
            &each_at(sink, 1),
            ""
        )
    )
}

/// Sets the host's connection tracking limit to [`CONNTRACK_MAX`] while it lives (if it
/// was lower), and puts the old value back when dropped.
pub struct ConntrackMax(Option<String>);

impl ConntrackMax {
    const SYSCTL: &'static str = "net.netfilter.nf_conntrack_max";

    pub fn raise() -> ConntrackMax {
        let old = sh(&format!("sysctl -n {}", Self::SYSCTL)).trim().to_owned();
        if old
            .parse::<u64>()
            .is_ok_and(|v| v >= u64::from(CONNTRACK_MAX))
        {
            return ConntrackMax(None);
        }
        sh(&format!("sysctl -qw {}={CONNTRACK_MAX}", Self::SYSCTL));
        ConntrackMax(Some(old))
    }
}

impl Drop for ConntrackMax {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            sh(&format!("sysctl -qw {}={old}", Self::SYSCTL));
        }
    }
}
