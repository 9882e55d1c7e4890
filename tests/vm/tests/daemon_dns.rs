//! `vipd run` with backends from DNS, on the real kernel: a dnsmasq in the lab's router
//! namespace serves A, AAAA and SRV records for the lab's backends, and vipd resolves
//! through it (`[dns] server`).
//! * the first answers put the backends in IPVS (A for an IPv4 VIP, AAAA for an IPv6
//!   one, SRV with the record's port and weight);
//! * rewriting the hosts file and SIGHUP-ing dnsmasq changes IPVS within the TTL plus
//!   one refresh (measured and printed); an established connection to a kept backend is
//!   untouched, a quarantine in progress is kept, the new backend ramps up, the removed
//!   one drains;
//! * `vipd trace` beside the daemon notes the set change;
//! * with the DNS server stopped the set is kept (status and metrics say so), also
//!   across a restart of vipd (the DNS record);
//! * NXDOMAIN keeps the set too (the default `on_empty = "keep"`).

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use vipd_vmtests::{
    daemon::Vipd,
    dns::server::lab_zone,
    lab::{Family, Lab},
    load::hold_connection,
    require_vm, sh,
};

/// Where dnsmasq listens: the router's address on backend 1's link, reached from the
/// client host through its default route.
const DNS_SERVER: &str = "198.18.1.1";
/// The records' TTL, and the refresh bounds vipd is given.
const TTL_S: u64 = 2;
const DIR: &str = "/tmp/vipd-dns-lab";

/// dnsmasq answering for `lab.` only (NXDOMAIN for unknown names there), hosts from
/// `DIR/hosts` (re-read on SIGHUP), one SRV record, no cache.
fn start_dns() -> Child {
    lab_zone(
        DNS_SERVER,
        &format!("{DIR}/hosts"),
        TTL_S,
        &["--srv-host=_echo._tcp.api.lab,b4.lab,9000,0,5"],
        &format!("{DIR}/dnsmasq.log"),
        ("b4.lab", "198.18.4.2"),
    )
}

/// The hosts file: `web.lab` for backends `web` (1-based, both families), and `b4.lab`
/// (the SRV record's target).
fn write_hosts(web: &[u8]) {
    let mut text = String::from("198.18.4.2 b4.lab\n");
    for i in web {
        text.push_str(&format!("198.18.{i}.2 web.lab\nfd00:18:{i}::2 web.lab\n"));
    }
    let tmp = format!("{DIR}/hosts.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, format!("{DIR}/hosts")).unwrap();
}

fn hup(c: &Child) {
    // SAFETY: kill with a valid pid and signal.
    assert_eq!(
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGHUP) },
        0
    );
}

/// The real servers of `vip` in `ipvsadm -Ln`, with their weights.
fn reals(vip: SocketAddr) -> Vec<(String, u32)> {
    let table = sh("ipvsadm -Ln");
    let mut out = Vec::new();
    let mut inside = false;
    for line in table.lines() {
        if line.starts_with("TCP") || line.starts_with("UDP") || line.starts_with("FWM") {
            inside = line.contains(&vip.to_string());
            continue;
        }
        if let (true, Some(rest)) = (inside, line.trim().strip_prefix("-> ")) {
            let cols: Vec<&str> = rest.split_whitespace().collect();
            if cols.len() >= 3 && cols[0] != "RemoteAddress:Port" {
                out.push((cols[0].to_owned(), cols[2].parse().unwrap_or(0)));
            }
        }
    }
    out.sort();
    out
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Whether the file at `path` holds `text` within 10 s.
fn wait_for_text(path: &str, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if read(path).contains(text) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn addrs(r: &[(String, u32)]) -> Vec<&str> {
    r.iter().map(|(a, _)| a.as_str()).collect()
}

#[test]
fn dns_backends_follow_the_records_and_keep_the_set_when_dns_fails() {
    require_vm();
    sh("ipvsadm -C; ip link del vipd0 2>/dev/null; true");
    let _ = std::fs::remove_dir_all(DIR);
    std::fs::create_dir_all(DIR).unwrap();
    let lab = Lab::new(Family::V4, 4);
    for i in 0..4 {
        lab.serve_echo(i, 9000);
    }
    write_hosts(&[1, 2, 3]);
    let mut server = start_dns();

    let web = SocketAddr::new(lab.vip, 80);
    let web6: SocketAddr = "[fd00:18::10]:80".parse().unwrap();
    let api = SocketAddr::new(lab.vip, 81);
    let mut vipd = Vipd::new("dns");
    vipd.write_config(&format!(
        r#"[dns]
server = "{DNS_SERVER}"
min_refresh = "1s"
max_refresh = "5s"
timeout = "500ms"

[[service]]
name = "web"
vip = "{web}"
scheduler = "rr"
backend = [{{ dns = "web.lab", port = 9000 }}]
  [service.health]
  slow_start = "20s"
  max_ejection_percent = 50

[[service]]
name = "web6"
vip = "{web6}"
backend = [{{ dns = "web.lab", port = 9000 }}]

[[service]]
name = "api"
vip = "{api}"
backend = [{{ srv = "_echo._tcp.api.lab" }}]
"#
    ));
    vipd.start();

    // The first answers.
    let v = vipd.wait_for("the first answers", Duration::from_secs(10), |v| {
        v.services.len() == 3 && v.services.iter().all(|s| !s.backends.is_empty())
    });
    assert_eq!(
        reals(web),
        [
            ("198.18.1.2:9000".to_owned(), 1),
            ("198.18.2.2:9000".to_owned(), 1),
            ("198.18.3.2:9000".to_owned(), 1)
        ],
        "{v:#?}"
    );
    assert_eq!(
        addrs(&reals(web6)),
        [
            "[fd00:18:1::2]:9000",
            "[fd00:18:2::2]:9000",
            "[fd00:18:3::2]:9000"
        ]
    );
    assert_eq!(
        reals(api),
        [("198.18.4.2:9000".to_owned(), 5)],
        "SRV port and weight"
    );
    let text = vipd.status_text();
    assert!(text.contains("dns web.lab: ok, 3 backends"), "{text}");
    assert!(
        text.contains("srv _echo._tcp.api.lab: ok, 1 backend"),
        "{text}"
    );
    println!("vipd status with DNS backends:\n{text}");

    // A connection to one backend (X), a quarantine of another (Y); the third (Z) is
    // the one the records drop, b4 the one they add.
    let mut held = hold_connection(web, Duration::from_secs(5)).expect("connecting to web");
    let x: u8 = held.backend.trim_start_matches("vb").parse().unwrap();
    let others: Vec<u8> = [1, 2, 3].into_iter().filter(|i| *i != x).collect();
    let (y, z) = (others[0], others[1]);
    let y_addr = format!("198.18.{y}.2:9000");
    let out = vipd.cli(&["quarantine", "web", &y_addr, "--for", "4m"]);
    assert!(out.status.success(), "{out:?}");
    let before = held.round_trip().expect("round trip");

    // `vipd trace` beside the daemon notes the set change.
    let trace_out = format!("{DIR}/trace.out");
    let mut trace = Command::new("vipd")
        .args(["trace", "--service", "web", "--config"])
        .arg(&vipd.config)
        .arg("--runtime-dir")
        .arg(&vipd.runtime)
        .stdout(std::fs::File::create(&trace_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting vipd trace");
    let traced_first = wait_for_text(&trace_out, "dns web.lab: 3 backends");
    assert!(
        traced_first,
        "trace printed no first set:\n{}",
        read(&trace_out)
    );

    write_hosts(&[x, y, 4]);
    let changed = Instant::now();
    hup(&server);
    let deadline = changed + Duration::from_secs(10);
    let new_set = loop {
        let r = reals(web);
        if addrs(&r).contains(&"198.18.4.2:9000") || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = changed.elapsed();
    println!(
        "DNS record change to IPVS: {} ms (TTL {TTL_S} s, min_refresh 1 s)",
        took.as_millis()
    );
    assert!(
        addrs(&new_set).contains(&"198.18.4.2:9000"),
        "b4 never came: {new_set:?}\n{}",
        vipd.log(1)
    );
    // Within the TTL plus one refresh (the next refresh is at most a TTL away).
    assert!(
        took <= Duration::from_secs(2 * TTL_S),
        "{took:?} is over the TTL plus one refresh"
    );
    let v = vipd.status();
    let web_view = v.services.iter().find(|s| s.name == "web").unwrap();
    let state = |addr: &str| {
        web_view
            .backends
            .iter()
            .find(|b| b.addr == addr)
            .map(|b| b.state.clone())
    };
    assert_eq!(state(&y_addr).as_deref(), Some("quarantined"), "{v:#?}");
    assert_eq!(
        state("198.18.4.2:9000").as_deref(),
        Some("slow-start"),
        "{v:#?}"
    );
    let z_addr = format!("198.18.{z}.2:9000");
    let z_weight = new_set.iter().find(|(a, _)| *a == z_addr).map(|(_, w)| *w);
    assert!(
        matches!(z_weight, None | Some(0)),
        "the dropped backend drains: {new_set:?}"
    );
    assert_eq!(
        held.round_trip().expect("round trip after the change"),
        before
    );
    assert!(
        vipd.log(1).contains("DNS backends changed"),
        "{}",
        vipd.log(1)
    );
    let noted = wait_for_text(&trace_out, "(+198.18.4.2:9000 (weight 1) -");
    let _ = trace.kill();
    let _ = trace.wait();
    assert!(noted, "trace noted no set change:\n{}", read(&trace_out));
    println!("vipd trace:\n{}", read(&trace_out));

    // The DNS server stops: resolutions fail, the set stays.
    let kept = reals(web);
    let _ = server.kill();
    let _ = server.wait();
    vipd.wait_for("a failed resolution", Duration::from_secs(10), |v| {
        v.dns
            .iter()
            .any(|n| n.service == "web" && n.result.as_deref() == Some("failed"))
    });
    assert_eq!(addrs(&reals(web)), addrs(&kept), "the set is kept");
    assert!(
        vipd.metric_sum(
            "vipd_dns_resolutions_total{service=\"web\",name=\"web.lab\",result=\"failed\"}"
        ) >= 1.0
    );
    assert_eq!(
        vipd.metric_sum("vipd_dns_stale{service=\"web\",name=\"web.lab\"}"),
        1.0
    );

    // vipd restarts while DNS is still down: the sets of the last run (its DNS record)
    // stand, nothing drains, and the restart drops no connection.
    vipd.stop();
    vipd.start();
    let v = vipd.wait_for(
        "a failed resolution after the restart",
        Duration::from_secs(10),
        |v| {
            v.dns
                .iter()
                .any(|n| n.service == "web" && n.result.as_deref() == Some("failed"))
        },
    );
    let n = v.dns.iter().find(|n| n.service == "web").unwrap();
    assert!(n.note.contains("kept the last 3"), "{n:?}");
    let after = reals(web);
    let live = |r: &[(String, u32)]| -> Vec<String> {
        r.iter()
            .filter(|(_, w)| *w > 0)
            .map(|(a, _)| a.clone())
            .collect()
    };
    assert_eq!(
        live(&after),
        live(&kept),
        "backends with weight before the restart: {kept:?}, after: {after:?}\n{}",
        vipd.log(2)
    );
    assert!(
        addrs(&after).contains(&y_addr.as_str()),
        "the quarantined backend is kept: {after:?}"
    );
    assert_eq!(
        held.round_trip().expect("round trip after the restart"),
        before
    );

    // Back, without web.lab: NXDOMAIN, and the default rule keeps the set.
    write_hosts(&[]);
    server = start_dns();
    let v = vipd.wait_for("NXDOMAIN", Duration::from_secs(10), |v| {
        v.dns
            .iter()
            .any(|n| n.service == "web" && n.result.as_deref() == Some("nxdomain"))
    });
    let n = v.dns.iter().find(|n| n.service == "web").unwrap();
    assert!(n.note.contains("kept the last"), "{n:?}");
    assert_eq!(addrs(&reals(web)), addrs(&kept));
    assert_eq!(held.round_trip().expect("round trip at the end"), before);
    let _ = server.kill();
    let _ = server.wait();
    vipd.stop();
}
