//! Benchmark (prints figures, asserts no timing): how fast a failing backend leaves
//! rotation, and how many client connections fail meanwhile, under a steady 50 new
//! connections/s through a VIP with 3 backends.
//!
//! Fault A (`refuse`): backend vb1's server is killed, its SYNs get RST. Fault B
//! (`drop_syns`): backend vb2 drops every SYN. Each is undone after the quarantine and
//! the backend must come back to weight 1; each runs `REPS` times. Per run the figures
//! are the time to weight 0 from the fault's first effect at the backend (the first SYN
//! it refused or dropped, anyone's: a client's or a health checker's), from the first
//! client failure (a refused connect, or a client SYN dropped; none when the checker
//! won the race), and from the fault being in place; and the client connections that
//! failed. See `vipd_vmtests::failover`.
//!
//! keepalived (Debian 2.2.7, TCP_CHECK, `inhibit_on_failure`, at its tightest practical
//! delay_loop) runs first, then `vipd run` (the debug build the runner installs) in
//! charge of the same service, both through the same [`Failover`] scenario; the last
//! lines are the ratios keepalived / vipd.
//!
//! These are `#[ignore]`d tests, so `cargo xtask vm-test` skips them;
//! `cargo xtask vm-bench bench_failover [filter]` runs them (release build).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use vipd_ipvs::ServiceKey;
use vipd_vmtests::{
    daemon::{tcp_service, Vipd},
    failover::{ratio_lines, Failover, Fault, Figures, Timing},
    keepalived::{Keepalived, KeepalivedConfig},
    lab::{Family, Lab},
    require_vm,
    weights::{WeightLog, WeightWatcher},
};

const VPORT: u16 = 80;
const RPORT: u16 = 8080;
const RATE: f64 = 50.0;
/// Runs of each fault per system.
const REPS: usize = 5;
/// Client connect (and greeting read) timeout.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// keepalived's tightest practical TCP_CHECK (see `keepalived_delay_loop_sweep`). Its
/// parser takes any delay_loop down to 1 us, and in the sweep even 1 ms made no false
/// quarantine in steady load, so the limit is cost, not correctness: 100 ms is the
/// smallest delay_loop at which the checker's own probes (one connection per backend
/// per delay_loop: 30/s here) stay below the client load they protect (50/s), with
/// keepalived under 10 % of one emulated CPU. Tighter settings trade more probe traffic
/// than real traffic for speed (50 ms: 60 probes/s; 10 ms: 300/s and 40 % of a CPU),
/// and scale with services x backends. connect_timeout = delay_loop, retry 0.
const KEEPALIVED_DELAY_LOOP: Duration = Duration::from_millis(100);
const KEEPALIVED_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

fn lab() -> (Lab, Vec<SocketAddr>) {
    require_vm();
    let lab = Lab::new(Family::V4, 3);
    let backends = (0..3).map(|i| lab.serve_greeting(i, RPORT)).collect();
    (lab, backends)
}

/// Fault A at vb1 then fault B at vb2, `REPS` times, with whatever system manages
/// `service` (already set up).
fn scenario(system: &str, lab: &Lab, service: ServiceKey, timing: &Timing) -> Figures {
    let f = Failover::start(lab, service, RPORT, RATE, CLIENT_TIMEOUT);
    f.settle(Duration::from_secs(3));
    let mut figures = Figures {
        system: system.to_string(),
        refuse: Vec::new(),
        drop_syns: Vec::new(),
    };
    for _ in 0..REPS {
        figures.refuse.push(f.fault(Fault::Refuse, 0, timing));
        figures.drop_syns.push(f.fault(Fault::DropSyns, 1, timing));
    }
    let logs = f.finish();
    println!(
        "BENCH failover system={system} load {}",
        logs.load.summary()
    );
    println!(
        "BENCH failover system={system} watcher polls={} max_gap_ms={:.1}",
        logs.weights.polls,
        logs.weights.max_gap.as_secs_f64() * 1e3
    );
    figures
}

fn keepalived_config(
    vip: SocketAddr,
    backends: &[SocketAddr],
    dl: Duration,
    ct: Duration,
) -> KeepalivedConfig {
    KeepalivedConfig::tcp_check(vip, backends.to_vec(), dl, ct)
}

/// keepalived with its tightest practical TCP_CHECK.
fn run_keepalived(lab: &Lab, backends: &[SocketAddr]) -> Figures {
    let vip = SocketAddr::new(lab.vip, VPORT);
    let config = keepalived_config(
        vip,
        backends,
        KEEPALIVED_DELAY_LOOP,
        KEEPALIVED_CONNECT_TIMEOUT,
    );
    let mut k = Keepalived::start("bench", &config);
    k.wait_ready(Duration::from_secs(15));
    let cpu0 = k.cpu_time();
    let started = Instant::now();
    let figures = scenario("keepalived", lab, config.service(), &Timing::default());
    let cpu = (k.cpu_time() - cpu0).as_secs_f64() / started.elapsed().as_secs_f64();
    println!(
        "BENCH failover system=keepalived delay_loop_s={:.3} connect_timeout_s={:.3} retry=0 cpu_share={cpu:.3}",
        KEEPALIVED_DELAY_LOOP.as_secs_f64(),
        KEEPALIVED_CONNECT_TIMEOUT.as_secs_f64()
    );
    k.stop();
    figures
}

/// vipd's weight for each backend (rr ignores it; slow start shows in it).
const VIPD_WEIGHT: u32 = 10;

/// `vipd run` with its default detection, and quarantines kept short (1 s, no growth)
/// so that the repeated faults recover quickly and alike.
/// `vipd run` in charge of the service; `health` adds to its `[service.health]`, and
/// `system` names the figures.
fn run_vipd(lab: &Lab, backends: &[SocketAddr], system: &str, health: &str) -> Figures {
    let vip = SocketAddr::new(lab.vip, VPORT);
    let t = tcp_service(
        "web",
        vip,
        backends,
        VIPD_WEIGHT,
        &format!(
            "  base_ejection = \"1s\"\n  max_ejection = \"1s\"\n  slow_start = \"1s\"\n{health}"
        ),
    );
    let mut vipd = Vipd::new("bench-failover");
    vipd.write_config(&t);
    vipd.start();
    let service = ServiceKey::tcp(vip.ip(), VPORT);
    let w = WeightWatcher::start(service, Duration::from_millis(5));
    for b in backends {
        assert!(
            w.wait_state(*b, Duration::from_secs(15), |w| w == Some(VIPD_WEIGHT)),
            "vipd did not program {b}:\n{}",
            vipd.log(1)
        );
    }
    drop(w);
    let cpu0 = cpu_of("vipd");
    let started = Instant::now();
    let timing = Timing {
        full_weight: VIPD_WEIGHT,
        ..Timing::default()
    };
    let figures = scenario(system, lab, service, &timing);
    let cpu = (cpu_of("vipd") - cpu0).as_secs_f64() / started.elapsed().as_secs_f64();
    println!("BENCH failover system={system} build=release cpu_share={cpu:.3}");
    for line in vipd.log(1).lines().filter(|l| l.contains("SYN timeout")) {
        println!("BENCH failover system={system} log {line}");
    }
    vipd.stop();
    figures
}

/// CPU time (user + system) used so far by the processes named `comm`.
fn cpu_of(comm: &str) -> Duration {
    let tick = 1.0 / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64);
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if head.split_once('(').map(|h| h.1) != Some(comm) {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total += (ticks(11) + ticks(12)) * tick;
    }
    Duration::from_secs_f64(total)
}

#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_failover"]
fn bench_failover() {
    let (lab, backends) = lab();
    let keepalived = run_keepalived(&lab, &backends);
    let vipd = run_vipd(&lab, &backends, "vipd", "");
    let fast = run_vipd(&lab, &backends, SYN_RTO_SYSTEM, SYN_RTO_HEALTH);
    println!("BENCH failover begin");
    println!("{}", keepalived.lines());
    println!("{}", vipd.lines());
    println!("{}", fast.lines());
    println!("{}", ratio_lines(&vipd, &keepalived));
    println!("{}", ratio_lines(&fast, &keepalived));
    println!("BENCH failover end");
}

/// vipd with a 200 ms initial SYN timeout on the VIP (see docs/watcher.md).
const SYN_RTO_SYSTEM: &str = "vipd-syn_rto_200ms";
const SYN_RTO_HEALTH: &str = "  syn_rto = \"200ms\"\n";

/// vipd with `syn_rto = "auto"` (see docs/watcher.md).
const SYN_RTO_AUTO_SYSTEM: &str = "vipd-syn_rto_auto";
const SYN_RTO_AUTO_HEALTH: &str = "  syn_rto = \"auto\"\n";

/// keepalived and vipd with `syn_rto = "auto"`, in the same VM run.
#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_failover bench_failover_auto"]
fn bench_failover_auto() {
    let (lab, backends) = lab();
    let keepalived = run_keepalived(&lab, &backends);
    let auto = run_vipd(&lab, &backends, SYN_RTO_AUTO_SYSTEM, SYN_RTO_AUTO_HEALTH);
    println!("BENCH failover begin");
    println!("{}", keepalived.lines());
    println!("{}", auto.lines());
    println!("{}", ratio_lines(&auto, &keepalived));
    println!("BENCH failover end");
}

/// vipd with `syn_rto` alone, to compare with a full run's figures.
#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_failover bench_failover_syn_rto"]
fn bench_failover_syn_rto() {
    let (lab, backends) = lab();
    let fast = run_vipd(&lab, &backends, SYN_RTO_SYSTEM, SYN_RTO_HEALTH);
    println!("BENCH failover begin");
    println!("{}", fast.lines());
    println!("BENCH failover end");
}

/// False quarantines of healthy backends: weight changes seen in a steady period.
fn flaps(log: &WeightLog, from: Instant) -> usize {
    log.events.iter().filter(|e| e.at >= from).count()
}

/// For each (delay_loop, connect_timeout): 10 s of steady load with healthy backends
/// (any weight change is a false quarantine), keepalived's CPU share, then both faults.
#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_failover keepalived_delay_loop_sweep"]
fn keepalived_delay_loop_sweep() {
    let (lab, backends) = lab();
    let vip = SocketAddr::new(lab.vip, VPORT);
    let settings_ms: &[(u64, u64)] = &[
        (1000, 1000),
        (200, 200),
        (100, 100),
        (50, 50),
        (20, 20),
        (10, 10),
        (5, 5),
        (1, 1),
    ];
    println!("BENCH sweep begin");
    for &(dl, ct) in settings_ms {
        let (dl, ct) = (Duration::from_millis(dl), Duration::from_millis(ct));
        let config = keepalived_config(vip, &backends, dl, ct);
        let mut k = Keepalived::start(&format!("sweep-{}", dl.as_millis()), &config);
        k.wait_ready(Duration::from_secs(15));
        let f = Failover::start(&lab, config.service(), RPORT, RATE, CLIENT_TIMEOUT);
        std::thread::sleep(Duration::from_secs(1));
        let cpu0 = k.cpu_time();
        let steady = Instant::now();
        std::thread::sleep(Duration::from_secs(10));
        let cpu = (k.cpu_time() - cpu0).as_secs_f64() / steady.elapsed().as_secs_f64();
        let false_quarantines = flaps(&f.weights.snapshot(), steady);
        let steady_failures = f.load.report().failures_in(steady, Instant::now()).len();
        let timing = Timing {
            detect_timeout: Duration::from_secs(10),
            hold: Duration::from_millis(500),
            ..Timing::default()
        };
        let refuse = f.fault(Fault::Refuse, 0, &timing);
        let drop_syns = f.fault(Fault::DropSyns, 1, &timing);
        let logs = f.finish();
        k.stop();
        let opt = |v: Option<f64>| v.map_or("none".to_string(), |v| format!("{v:.1}"));
        println!(
            "BENCH sweep delay_loop_ms={} connect_timeout_ms={} false_quarantines={false_quarantines} \
             steady_client_failures={steady_failures} cpu_share={cpu:.3} \
             refuse_detect_ms={} refuse_client_detect_ms={} refuse_failures={} \
             drop_detect_ms={} drop_client_detect_ms={} drop_failures={} load_max_start_lag_ms={:.1}",
            dl.as_millis(),
            ct.as_millis(),
            opt(refuse.detect_ms()),
            opt(refuse.client_detect_ms()),
            refuse.failures.len(),
            opt(drop_syns.detect_ms()),
            opt(drop_syns.client_detect_ms()),
            drop_syns.failures.len(),
            logs.load.max_start_lag().as_secs_f64() * 1e3
        );
    }
    println!("BENCH sweep end");
}
