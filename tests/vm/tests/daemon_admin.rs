//! Operating `vipd run` the way a service manager and an operator do, on the real kernel:
//! * readiness: `READY=1` (with a `STATUS=` line) reaches `$NOTIFY_SOCKET` only once the
//!   VIP answers; an invalid config at start-up exits 78 and touches nothing;
//! * `vipd reload` exits 0 for a good config and 1 for a rejected one (errors printed,
//!   the running config kept, `RELOADING=1` then `READY=1` notified);
//! * `vipd apply` beside the daemon refuses and changes nothing;
//! * drain, quarantine, readmit and undrain move the kernel's weights before the command
//!   returns; a drain and a quarantine survive `kill -9` and a restart without a flap;
//! * weight writes the kernel refuses (ENOENT, EEXIST) because someone changed vipd's
//!   service behind its back are logged, counted and repaired by the next full apply.

use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    os::unix::net::UnixDatagram,
    process::{Command, Output},
    time::Duration,
};

use vipd_vmtests::{
    daemon::{tcp_service, udp_service, Vipd},
    lab::{Family, Lab},
    require_vm, sh,
};

fn fresh() {
    require_vm();
    sh("ipvsadm -C; ip link del vipd0 2>/dev/null; true");
}

fn at(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Panics unless `out` exited with `code`; returns stdout and stderr.
fn exited(out: &Output, code: i32, what: &str) -> (String, String) {
    let (o, e) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(code), "{what}:\n{o}{e}");
    (o, e)
}

/// The kernel's weight of `backend` in the TCP service `vip` (`None`: not there).
fn kernel_weight(vip: SocketAddr, backend: SocketAddr) -> Option<u32> {
    kernel_weight_in("-t", vip, backend)
}

/// Like [`kernel_weight`], in the service `vip` of `protocol` (`-t`, `-u`).
fn kernel_weight_in(protocol: &str, vip: SocketAddr, backend: SocketAddr) -> Option<u32> {
    sh(&format!("ipvsadm -Ln {protocol} {vip}"))
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&"->") && w.get(1) == Some(&backend.to_string().as_str()))
        .and_then(|w| w.get(3)?.parse().ok())
}

/// The notifications received, one datagram each, within `timeout` of the first.
fn notifications(socket: &UnixDatagram, timeout: Duration) -> Vec<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(text(&buf[..n]));
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    out
}

/// Which backend namespace answered a connection to `vip`.
fn greeting(vip: SocketAddr) -> String {
    use std::io::Read;
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(3)).expect("connecting");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut g = String::new();
    s.read_to_string(&mut g).expect("reading the greeting");
    g
}

#[test]
fn readiness_reload_and_apply_beside_the_daemon() {
    fresh();
    let lab = Lab::new(Family::V4, 2);
    let web: Vec<SocketAddr> = (0..2).map(|i| lab.serve_greeting(i, 8080)).collect();
    let vip = at(lab.vip, 80);
    let mut vipd = Vipd::new("admin-ready");
    let good = tcp_service("web", vip, &web, 10, "");
    vipd.write_config(&good);

    // An invalid config at start-up: exit 78 (the unit's RestartPreventExitStatus), no
    // kernel state touched.
    let bad_dir = Vipd::new("admin-bad");
    bad_dir.write_config("[[service]]\nname = \"web\"\nvip = \"198.18.0.1:99999\"\n");
    let before = sh("ipvsadm -Ln; ip route show table all proto 118");
    let out = Command::new("vipd")
        .arg("run")
        .arg("--config")
        .arg(&bad_dir.config)
        .arg("--state-file")
        .arg(&bad_dir.state)
        .arg("--runtime-dir")
        .arg(&bad_dir.runtime)
        .output()
        .unwrap();
    let (_, err) = exited(&out, 78, "vipd run with an invalid config");
    assert!(
        err.contains("vipd.toml:3:") && err.contains("nothing was applied"),
        "{err}"
    );
    assert_eq!(sh("ipvsadm -Ln; ip route show table all proto 118"), before);

    let notify_path = vipd.dir.join("notify");
    let manager = UnixDatagram::bind(&notify_path).unwrap();
    vipd.env
        .push(("NOTIFY_SOCKET".into(), notify_path.display().to_string()));
    vipd.start();
    let got = notifications(&manager, Duration::from_secs(30));
    assert!(
        got.first()
            .is_some_and(|m| m.starts_with("READY=1\nSTATUS=ipvs: 1 service, detection ")),
        "{got:?}"
    );
    // Ready means serving: the VIP answers at once.
    assert!(greeting(vip).starts_with("hello from"));

    // A good reload: exit 0, notified as RELOADING then READY.
    vipd.write_config(&good.replace("weight = 10", "weight = 20"));
    let config = vipd.config.display().to_string();
    let (o, _) = exited(
        &vipd.cli(&["reload", "--config", &config]),
        0,
        "vipd reload of a good config",
    );
    assert!(o.contains("reloaded"), "{o}");
    assert_eq!(kernel_weight(vip, web[0]), Some(20));
    let got = notifications(&manager, Duration::from_secs(5));
    let reloading = got
        .iter()
        .position(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC="));
    let ready = got.iter().rposition(|m| m.starts_with("READY=1"));
    assert!(
        matches!((reloading, ready), (Some(r), Some(d)) if r < d),
        "{got:?}"
    );

    // A rejected reload: exit 1 with the errors, the running config kept.
    let ipvs_before = sh("ipvsadm -Ln");
    vipd.write_config(
        &(good.clone() + "[[service]]\nname = \"broken\"\nvip = \"198.18.0.1:99999\"\n"),
    );
    let (_, e) = exited(&vipd.cli(&["reload"]), 1, "vipd reload of a broken config");
    assert!(e.contains("vipd.toml:") && e.contains("99999"), "{e}");
    assert!(
        e.contains("rejected; the running config stays in force"),
        "{e}"
    );
    assert_eq!(sh("ipvsadm -Ln"), ipvs_before);
    assert_eq!(vipd.status().services.len(), 1);
    // Asking to reload another file than the daemon's is refused.
    let (_, e) = exited(
        &vipd.cli(&["reload", "--config", "/etc/other.toml"]),
        1,
        "vipd reload of another file",
    );
    assert!(e.contains("not /etc/other.toml"), "{e}");

    // vipd apply beside the daemon: refused, nothing changed.
    vipd.write_config(&good);
    let (_, e) = exited(
        &vipd.cli(&["apply", "--config", &config]),
        1,
        "vipd apply beside the daemon",
    );
    assert!(e.contains("is running") && e.contains("vipd reload"), "{e}");
    assert!(e.contains(&format!("pid {}", vipd.status().pid)), "{e}");
    assert_eq!(sh("ipvsadm -Ln"), ipvs_before);
    // A dry run writes nothing and is allowed.
    exited(
        &vipd.cli(&["apply", "--dry-run", "--config", &config]),
        0,
        "vipd apply --dry-run beside the daemon",
    );
    // The status source is named, and --service filters.
    let (o, _) = exited(&vipd.cli(&["status", "--service", "web"]), 0, "status");
    assert!(o.starts_with("source: the daemon"), "{o}");
    exited(
        &vipd.cli(&["status", "--service", "nope"]),
        1,
        "status of no service",
    );
    vipd.stop();
    let (o, _) = exited(&vipd.cli(&["status", "--kernel"]), 0, "kernel status");
    assert!(o.starts_with("source: the kernel"), "{o}");
    let (_, e) = exited(
        &vipd.cli(&["status", "--daemon"]),
        1,
        "status --daemon, none",
    );
    assert!(e.contains("not running"), "{e}");
    let got = notifications(&manager, Duration::from_secs(1));
    assert!(got.iter().any(|m| m == "STOPPING=1"), "{got:?}");
}

#[test]
fn drain_quarantine_readmit_and_undrain_hold_across_a_restart() {
    fresh();
    let lab = Lab::new(Family::V4, 3);
    let web: Vec<SocketAddr> = (0..3).map(|i| lab.serve_greeting(i, 8080)).collect();
    let vip = at(lab.vip, 80);
    let mut vipd = Vipd::new("admin-drain");
    vipd.write_config(&tcp_service(
        "web",
        vip,
        &web,
        10,
        "  slow_start = \"1m\"\n",
    ));
    vipd.start();
    let b = |i: usize| web[i].to_string();

    let (o, _) = exited(&vipd.cli(&["drain", "web", &b(0)]), 0, "drain");
    assert!(o.contains("drained"), "{o}");
    // Done when the command returns.
    assert_eq!(kernel_weight(vip, web[0]), Some(0));
    let drained_ns = &lab.backends[0].ns;
    for _ in 0..12 {
        assert!(!greeting(vip).contains(drained_ns.as_str()));
    }
    let (o, _) = exited(&vipd.cli(&["drain", "web", &b(0)]), 0, "drain again");
    assert!(o.contains("drained already"), "{o}");
    assert!(vipd.status_text().contains("healthy, drained"));

    let (o, _) = exited(
        &vipd.cli(&["quarantine", "web", &b(1), "--for", "4m"]),
        0,
        "quarantine",
    );
    assert!(o.contains("quarantined for 4m"), "{o}");
    assert_eq!(kernel_weight(vip, web[1]), Some(0));

    // Unknown names: exit 1, naming what exists.
    let (_, e) = exited(
        &vipd.cli(&["drain", "web", "198.18.9.9:1"]),
        1,
        "unknown backend",
    );
    assert!(
        e.contains("is not a backend of web") && e.contains(&b(2)),
        "{e}"
    );
    let (_, e) = exited(&vipd.cli(&["readmit", "api", &b(1)]), 1, "unknown service");
    assert!(e.contains("no service \"api\""), "{e}");

    // kill -9 and a restart: both stay out, and the restart writes nothing.
    vipd.kill9();
    vipd.start();
    assert_eq!(kernel_weight(vip, web[0]), Some(0));
    assert_eq!(kernel_weight(vip, web[1]), Some(0));
    let v = vipd.status();
    let backend = |i: usize| {
        v.services[0]
            .backends
            .iter()
            .find(|x| x.addr == b(i))
            .unwrap()
            .clone()
    };
    assert!(backend(0).drained);
    assert_eq!(backend(1).state, "quarantined");
    let log = vipd.log(2);
    assert!(
        log.contains("writes=0"),
        "the restart wrote something:\n{log}"
    );

    // readmit ends the quarantine into slow start; undrain puts the drained one back.
    let (o, _) = exited(&vipd.cli(&["readmit", "web", &b(1)]), 0, "readmit");
    assert!(o.contains("re-admitted"), "{o}");
    assert_eq!(
        kernel_weight(vip, web[1]),
        Some(1),
        "slow start's first step"
    );
    let (o, _) = exited(&vipd.cli(&["undrain", "web", &b(0)]), 0, "undrain");
    assert!(o.contains("undrained"), "{o}");
    assert_eq!(kernel_weight(vip, web[0]), Some(10));
    // The drain record is empty again and survives nothing more.
    let record = std::fs::read_to_string(vipd.dir.join("admin.json")).unwrap();
    assert!(!record.contains(&b(0)), "{record}");
    vipd.stop();
}

/// The log line of a refused weight write for `backend` that carries `error`.
fn refusal_logged(log: &str, backend: SocketAddr, error: &str) -> bool {
    log.lines().any(|l| {
        l.contains("setting the weight failed")
            && l.contains(&format!("backend={backend}"))
            && l.contains(error)
    })
}

/// Someone changes vipd's services behind its back, then vipd needs a weight written:
/// a destination deleted by hand (`ipvsadm -d`) answers vipd's weight write with ENOENT;
/// a destination vipd deleted (a quarantined UDP backend) and someone added back by hand
/// answers vipd's re-add with EEXIST. Each refusal is logged naming the backend and the
/// kernel's error and counted in `vipd_weight_write_failures_total`; the next full apply
/// (brought forward to the next second) puts back what vipd owns, at vipd's weight,
/// without deleting the hand-added destination; a service vipd did not create is never
/// touched.
#[test]
fn weight_writes_refused_by_the_kernel_are_logged_counted_and_repaired() {
    fresh();
    let lab = Lab::new(Family::V4, 3);
    let web: Vec<SocketAddr> = (0..3).map(|i| at(lab.backends[i].addr, 8080)).collect();
    let dns: Vec<SocketAddr> = (0..2).map(|i| at(lab.backends[i].addr, 53)).collect();
    let (web_vip, dns_vip) = (at(lab.vip, 80), at(lab.vip, 53));
    let mut vipd = Vipd::new("admin-refused");
    vipd.write_config(&format!(
        "{}{}",
        tcp_service("web", web_vip, &web, 10, ""),
        udp_service("dns", dns_vip, &dns, 10, "  slow_start = \"1m\"\n")
    ));
    vipd.start();
    // Someone else's service: vipd must never touch it.
    let foreign = format!("198.18.0.99:9 -r {} -m -w 3", at(lab.backends[2].addr, 9));
    sh(&format!(
        "ipvsadm -A -t 198.18.0.99:9 -s rr && ipvsadm -a -t {foreign}"
    ));
    let foreign_table = || sh("ipvsadm -Ln -t 198.18.0.99:9");
    let foreign_before = foreign_table();
    let failures = || vipd.metric_sum("vipd_weight_write_failures_total");
    assert_eq!(failures(), 0.0);

    // ENOENT: web's first backend deleted by hand, then vipd quarantines it.
    sh(&format!("ipvsadm -d -t {web_vip} -r {}", web[0]));
    assert_eq!(kernel_weight(web_vip, web[0]), None);
    exited(
        &vipd.cli(&["quarantine", "web", &web[0].to_string(), "--for", "4m"]),
        0,
        "quarantine",
    );
    vipd.wait_for(
        "web's backend back in IPVS at weight 0",
        Duration::from_secs(5),
        |_| kernel_weight(web_vip, web[0]) == Some(0),
    );
    let log = vipd.log(1);
    assert!(
        refusal_logged(&log, web[0], "No such file or directory"),
        "no ENOENT line naming {}:\n{log}",
        web[0]
    );
    let after_enoent = failures();
    assert!(after_enoent >= 1.0, "{after_enoent}");
    for b in &web[1..] {
        assert_eq!(kernel_weight(web_vip, *b), Some(10), "{b}");
    }

    // EEXIST: dns's first backend quarantined (deleted from IPVS, the UDP rule), added
    // back by hand, then vipd re-admits it and adds it.
    exited(
        &vipd.cli(&["quarantine", "dns", &dns[0].to_string(), "--for", "4m"]),
        0,
        "quarantine dns",
    );
    assert_eq!(kernel_weight_in("-u", dns_vip, dns[0]), None);
    sh(&format!("ipvsadm -a -u {dns_vip} -r {} -m -w 7", dns[0]));
    exited(
        &vipd.cli(&["readmit", "dns", &dns[0].to_string()]),
        0,
        "readmit dns",
    );
    // The hand-added destination is never deleted; the next full apply sets vipd's
    // weight on it (slow start's first steps).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let w = kernel_weight_in("-u", dns_vip, dns[0]);
        assert!(w.is_some(), "the hand-added destination was deleted");
        if w.is_some_and(|w| w <= 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "weight {w:?}, not vipd's:\n{}",
            vipd.log(1)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = vipd.log(1);
    assert!(
        refusal_logged(&log, dns[0], "File exists"),
        "no EEXIST line naming {}:\n{log}",
        dns[0]
    );
    assert!(failures() > after_enoent, "{}", failures());
    assert_eq!(kernel_weight_in("-u", dns_vip, dns[1]), Some(10));
    assert_eq!(foreign_table(), foreign_before);
    vipd.stop();
    assert_eq!(foreign_table(), foreign_before);
    sh("ipvsadm -D -t 198.18.0.99:9");
}
