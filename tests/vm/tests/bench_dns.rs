//! Benchmark (prints figures; fails only far off them): 1,000 services with one DNS
//! backend each, resolved by `vipd run` through a dnsmasq in the lab (TTL 5 s,
//! `min_refresh = "1s"`), for 20 s: the first round's time, resolutions per second,
//! the daemon's CPU time (from /proc), and the busiest second of queries at the server
//! (from its query log): refreshes are jittered, so no second should hold a burst.
//! An `#[ignore]`d test (about a minute): `cargo xtask vm-bench bench_dns`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    process::Child,
    time::{Duration, Instant},
};

use vipd_vmtests::{
    daemon::Vipd,
    dns::server::lab_zone,
    lab::{Family, Lab},
    require_vm, sh,
};

const SERVICES: usize = 1000;
const TTL_S: u64 = 5;
const DNS_SERVER: &str = "198.18.1.1";
const DIR: &str = "/tmp/vipd-dns-bench";
const WINDOW: Duration = Duration::from_secs(20);

fn start_dns() -> Child {
    let mut hosts = String::new();
    for i in 0..SERVICES {
        writeln!(hosts, "198.18.{}.2 s{i}.lab", 1 + i % 2).unwrap();
    }
    std::fs::write(format!("{DIR}/hosts"), hosts).unwrap();
    lab_zone(
        DNS_SERVER,
        &format!("{DIR}/hosts"),
        TTL_S,
        &["--log-queries"],
        &format!("{DIR}/queries.log"),
        ("s0.lab", "198.18.1.2"),
    )
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name's closing parenthesis: fields 3.. ; utime and stime are
    // fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Queries per second of the log (dnsmasq stamps each line to the second).
fn per_second(log: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in log.lines().filter(|l| l.contains(" query[A] ")) {
        // "Dec  6 08:30:01 dnsmasq[123]: query[A] s1.lab from ...": the time is the
        // third field.
        if let Some(t) = line.split_whitespace().nth(2) {
            *out.entry(t.to_owned()).or_default() += 1;
        }
    }
    out
}

#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_dns"]
fn bench_dns_1000_names_refreshing() {
    require_vm();
    sh("ipvsadm -C; ip link del vipd0 2>/dev/null; true");
    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(DIR).unwrap();
    let _lab = Lab::new(Family::V4, 2);
    let mut server = start_dns();

    let mut config = format!(
        "[dns]\nserver = \"{DNS_SERVER}\"\nmin_refresh = \"1s\"\nmax_refresh = \"60s\"\ntimeout = \"1s\"\n"
    );
    for i in 0..SERVICES {
        writeln!(
            config,
            "[[service]]\nname = \"s{i}\"\nvip = \"198.18.150.1:{}\"\nbackend = [{{ dns = \"s{i}.lab\", port = 8080 }}]",
            10_000 + i
        )
        .unwrap();
    }
    let mut vipd = Vipd::new("dns-bench");
    vipd.write_config(&config);
    let started = Instant::now();
    vipd.start();
    vipd.wait_for("every service resolved", Duration::from_secs(60), |v| {
        v.services.len() == SERVICES && v.services.iter().all(|s| !s.backends.is_empty())
    });
    let first_round = started.elapsed();
    let ipvs_reals = sh("ipvsadm -Ln | grep -c -- '-> 198.18.'");

    let pid = vipd.pid();
    let (t0, cpu0) = (Instant::now(), cpu_ticks(pid));
    let r0 = vipd.metric_sum("vipd_dns_resolutions_total");
    let log_start = std::fs::read_to_string(format!("{DIR}/queries.log"))
        .unwrap_or_default()
        .len();
    std::thread::sleep(WINDOW);
    let cpu = cpu_ticks(pid) - cpu0;
    let elapsed = t0.elapsed();
    let resolutions = vipd.metric_sum("vipd_dns_resolutions_total") - r0;
    // From one scrape: every result, and those that were not ok.
    let not_ok: f64 = vipd
        .metrics()
        .lines()
        .filter(|l| l.starts_with("vipd_dns_resolutions_total{") && !l.contains("result=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let log = std::fs::read_to_string(format!("{DIR}/queries.log")).unwrap_or_default();
    let seconds = per_second(&log[log_start.min(log.len())..]);
    // Whole seconds only: the first and last of the window are partial.
    let full: Vec<usize> = seconds
        .values()
        .copied()
        .skip(1)
        .take(seconds.len().saturating_sub(2))
        .collect();
    let busiest = full.iter().copied().max().unwrap_or(0);
    let ticks = 100.0; // USER_HZ
    let cpu_share = cpu as f64 / ticks / elapsed.as_secs_f64();
    let rate = resolutions / elapsed.as_secs_f64();
    println!(
        "1,000 DNS services, TTL {TTL_S} s: first round (start to every service in IPVS, {} \
         real servers) {} ms; then {rate:.0} resolutions/s ({not_ok} not ok since start), vipd CPU \
         {:.1}% of one core over {} s; queries at the server per second: busiest {busiest}, \
         even {}; per second: {full:?}",
        ipvs_reals.trim(),
        first_round.as_millis(),
        100.0 * cpu_share,
        elapsed.as_secs(),
        SERVICES as u64 / TTL_S,
    );
    let even = SERVICES as f64 / TTL_S as f64;
    assert!(
        rate > 0.7 * even,
        "{rate:.0} resolutions/s, want about {even}"
    );
    assert!(
        (busiest as f64) < 2.5 * even,
        "a burst: {busiest} queries in one second (even: {even})"
    );
    assert!(
        cpu_share < 1.0,
        "vipd used {:.0}% of a core",
        100.0 * cpu_share
    );
    let _ = server.kill();
    let _ = server.wait();
    vipd.stop();
}
