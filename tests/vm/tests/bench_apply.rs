//! Benchmark (prints figures, asserts no timing): 1,000 services x 10 backends applied from
//! empty by `vipd apply`, against `ipvsadm --restore` of the same rules in the same VM
//! run; then one backend's weight changed; and vipd's peak memory. Both ways must end with
//! identical `ipvsadm -Sn`.

use std::{
    fmt::Write as _,
    process::Command,
    time::{Duration, Instant},
};

use vipd::reconcile::ApplySummary;
use vipd_vmtests::{require_vm, sh, vipd_cli::VipdRun};

const SERVICES: usize = 1000;
const BACKENDS: usize = 10;

fn backend(s: usize, b: usize) -> String {
    let n = s * BACKENDS + b;
    format!("198.18.{}.{}", 160 + n / 250, n % 250 + 1)
}

fn config(bump: bool) -> String {
    let mut t = String::from("[daemon]\nvip_interface = \"vipdbench\"\n");
    for s in 0..SERVICES {
        let port = 10_000 + s;
        writeln!(
            t,
            "[[service]]\nname = \"s{s}\"\nvip = \"198.18.150.1:{port}\"\nscheduler = \"wrr\""
        )
        .unwrap();
        for b in 0..BACKENDS {
            let w = if bump && s == 500 && b == 5 { 2 } else { 1 };
            writeln!(
                t,
                "  [[service.backend]]\n  address = \"{}:8080\"\n  weight = {w}",
                backend(s, b)
            )
            .unwrap();
        }
    }
    t
}

fn restore_script() -> String {
    let mut t = String::new();
    for s in 0..SERVICES {
        let vip = format!("198.18.150.1:{}", 10_000 + s);
        writeln!(t, "-A -t {vip} -s wrr").unwrap();
        for b in 0..BACKENDS {
            writeln!(t, "-a -t {vip} -r {}:8080 -m -w 1", backend(s, b)).unwrap();
        }
    }
    t
}

fn rules() -> Vec<String> {
    let mut v: Vec<String> = sh("ipvsadm -Sn")
        .lines()
        .filter(|l| l.contains("198.18.150.1:"))
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

fn timed_apply(run: &VipdRun, text: &str) -> (Duration, ApplySummary) {
    std::fs::write(&run.config, text).unwrap();
    let started = Instant::now();
    let out = Command::new("vipd")
        .args(["apply", "--json", "--config"])
        .arg(&run.config)
        .arg("--state-file")
        .arg(&run.state)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        took,
        ApplySummary::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap(),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
fn bench_apply_1000x10() {
    require_vm();
    let run = VipdRun::new("bench");
    let script = run.dir.join("rules.ipvsadm");
    std::fs::write(&script, restore_script()).unwrap();
    let deletions: String = (0..SERVICES)
        .map(|s| format!("-D -t 198.18.150.1:{}\n", 10_000 + s))
        .collect();
    let del_script = run.dir.join("delete.ipvsadm");
    std::fs::write(&del_script, deletions).unwrap();

    // ipvsadm --restore: one netlink request and ack at a time.
    let started = Instant::now();
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("ipvsadm --restore < {}", script.display()))
        .status()
        .unwrap();
    let ipvsadm = started.elapsed();
    assert!(status.success());
    let by_ipvsadm = rules();
    assert_eq!(by_ipvsadm.len(), SERVICES * (1 + BACKENDS));
    sh(&format!("ipvsadm --restore < {}", del_script.display()));
    assert!(rules().is_empty());

    // vipd apply from empty (process wall time: config parse and validation included).
    let (vipd_total, s) = timed_apply(&run, &config(false));
    assert_eq!(s.ipvs_writes, SERVICES * (1 + BACKENDS));
    assert_eq!(rules(), by_ipvsadm, "vipd and ipvsadm made different rules");

    // One backend changed.
    let (one_total, one) = timed_apply(&run, &config(true));
    assert_eq!(one.ipvs_writes, 1);
    let (noop_total, noop) = timed_apply(&run, &config(true));
    assert_eq!(noop.netlink_writes, 0);

    println!("BENCH {SERVICES} services x {BACKENDS} backends, from empty (vipd as the runner installs it: a debug build):");
    println!("BENCH   ipvsadm --restore        {:9.1} ms", ms(ipvsadm));
    println!(
        "BENCH   vipd apply (process)     {:9.1} ms  ratio {:.2}x",
        ms(vipd_total),
        vipd_total.as_secs_f64() / ipvsadm.as_secs_f64()
    );
    println!(
        "BENCH     of which reconcile {:9.1} ms (dump {:.1}, plan+encode {:.1}, send {:.1}, {} writes, {} rtnetlink)",
        s.elapsed_us as f64 / 1e3,
        s.snapshot_us as f64 / 1e3,
        s.plan_us as f64 / 1e3,
        s.send_us as f64 / 1e3,
        s.ipvs_writes,
        s.rtnetlink_writes
    );
    println!(
        "BENCH   one weight change: process {:.1} ms, reconcile {:.1} ms (dump {:.1}, plan {:.3}), the write itself {:.3} ms",
        ms(one_total),
        one.elapsed_us as f64 / 1e3,
        one.snapshot_us as f64 / 1e3,
        one.plan_us as f64 / 1e3,
        one.send_us as f64 / 1e3
    );
    println!(
        "BENCH   no-op apply: process {:.1} ms, reconcile {:.1} ms",
        ms(noop_total),
        noop.elapsed_us as f64 / 1e3
    );
    println!(
        "BENCH   vipd peak RSS: {} KiB (from empty), {} KiB (one change)",
        s.max_rss_kib, one.max_rss_kib
    );

    let (_, gone) = timed_apply(&run, "[daemon]\nvip_interface = \"vipdbench\"\n");
    assert_eq!(gone.ipvs_writes, SERVICES);
    assert!(rules().is_empty());
}
