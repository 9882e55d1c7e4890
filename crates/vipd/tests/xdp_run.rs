//! Host tier: `vipd run` with `dataplane = "xdp"` in the namespace lab: the same daemon
//! as with IPVS, driving the XDP balancer. A backend whose server dies answers SYNs with
//! RSTs; the XDP program reports the refusal, the health machine quarantines the
//! backend, and new connections go to the other backend within a connection or two;
//! `vipd status`, the metrics and the health record (across a kill -9) show it. Active
//! checks and reloads work as with IPVS; a pinned restart keeps a busy connection.
//! Needs root.

mod xdp_common;

use std::{
    io::Read,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use vipd::daemon::control;
use xdp_common::{
    daemon::{backend, curl, http_servers, Daemon, Scratch},
    lab::{udp_echo, wait_tcp, Lab, Procs, VIP},
};

const METRICS: &str = "127.0.0.1:9464";

/// A refusing backend is quarantined, and `vipd status`, the metrics and the health
/// record say so: what the IPVS data plane's daemon offers, with XDP.
#[test]
fn a_refusing_backend_is_quarantined_and_traffic_moves() {
    let lab = Lab::new();
    let scratch = Scratch::new("run");
    let dir = &scratch.0;
    let mut servers = http_servers(&lab, dir, &[0, 1]);
    let cfg = dir.join("vipd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"dataplane = "xdp"
[xdp]
interface = "eth0"
pin_maps = false

[daemon]
metrics_address = "{METRICS}"

[[service]]
name = "web"
vip = "{VIP}:80"
  [[service.backend]]
  address = "198.18.2.11:8080"
  [[service.backend]]
  address = "198.18.2.12:8080"
  [service.health]
  base_ejection = "60s"
"#
        ),
    )
    .unwrap();
    let _peer = lab.pass_on_peer();
    let runtime = dir.join("run");
    let daemon = Daemon::start(&lab, &cfg, &runtime, &dir.join("vipd.log"), &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(&lab).is_none() {
        assert!(
            Instant::now() < deadline,
            "the VIP never answered\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let v = daemon.status();
    assert_eq!(v.dataplane, "xdp");
    assert!(
        v.watcher.hooks.contains("vipd_xdp_lb on eth0"),
        "{:?}",
        v.watcher
    );
    assert_eq!(v.services[0].scheduler, "maglev");
    // b1's server dies: its stack answers SYNs with RSTs.
    drop(servers.remove(0));
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(curl(&lab));
    }
    let failed = answers.iter().filter(|a| a.is_none()).count();
    assert!(
        failed <= 2,
        "{failed} of 20 connections failed: {answers:?}\n{}",
        daemon.log()
    );
    assert!(
        answers[answers.len() - 10..]
            .iter()
            .all(|a| a.as_deref() == Some("b2")),
        "{answers:?}\n{}",
        daemon.log()
    );
    // The view is republished at once on a health change, else every second.
    let v = daemon.wait_status(
        "b1 quarantined, b2's SYN-ACKs counted",
        Duration::from_secs(5),
        |v| {
            backend(v, "198.18.2.11:8080").state == "quarantined"
                && backend(v, "198.18.2.12:8080").outcomes.established >= 10
        },
    );
    let b1 = backend(&v, "198.18.2.11:8080");
    assert_eq!(b1.weight, 0, "{b1:?}");
    assert!(b1.outcomes.refused >= 1, "{b1:?}");
    assert!(b1.recent.iter().any(|r| r.outcome == "refused"), "{b1:?}");
    let b2 = backend(&v, "198.18.2.12:8080");
    assert_eq!((b2.state.as_str(), b2.weight), ("healthy", 1), "{b2:?}");
    let metrics = lab.lb.run(&format!("curl -s http://{METRICS}/metrics"));
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        value("vipd_fault_to_quarantine_seconds_count{cause=\"refused\"}") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        value("vipd_backend_weight{service=\"web\",backend=\"198.18.2.11:8080\"}"),
        0.0,
        "{metrics}"
    );
    assert!(
        value("vipd_reconcile_operations_total{kind=\"xdp\"}") > 0.0,
        "{metrics}"
    );

    // Killed and started again: the health record keeps b1 out, so no client meets it.
    drop(daemon);
    let daemon = Daemon::start(&lab, &cfg, &runtime, &dir.join("again.log"), &[]);
    let v = daemon.status();
    let b1 = backend(&v, "198.18.2.11:8080");
    assert_eq!((b1.state.as_str(), b1.weight), ("quarantined", 0), "{b1:?}");
    assert!(
        b1.quarantine_left_ms.is_some_and(|ms| ms > 30_000),
        "{b1:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(&lab).is_none() {
        assert!(
            Instant::now() < deadline,
            "the VIP never answered after the restart\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let answers: Vec<Option<String>> = (0..10).map(|_| curl(&lab)).collect();
    assert!(
        answers.iter().all(|a| a.as_deref() == Some("b2")),
        "{answers:?}\n{}",
        daemon.log()
    );
    assert!(daemon.log().contains("restored"), "{}", daemon.log());
    drop(daemon);
    drop(servers);
}

/// Active checks run with XDP too: a backend with no server is quarantined by its
/// failed checks with no client traffic at all, and config reloads are applied (a
/// weight) or rejected whole (a change of interface needs a restart).
#[test]
fn active_checks_and_reloads_with_xdp() {
    let lab = Lab::new();
    let scratch = Scratch::new("checks");
    let dir = &scratch.0;
    let servers = http_servers(&lab, dir, &[1]);
    let cfg = dir.join("vipd.toml");
    let config = |interface: &str, b2_weight: u32| {
        format!(
            r#"dataplane = "xdp"
[xdp]
interface = "{interface}"
pin_maps = false

[[service]]
name = "web"
vip = "{VIP}:80"
  [[service.backend]]
  address = "198.18.2.11:8080"
  [[service.backend]]
  address = "198.18.2.12:8080"
  weight = {b2_weight}
  [service.health]
  base_ejection = "60s"
  check = {{ interval = "300ms", timeout = "200ms", fall = 2, rise = 1 }}
"#
        )
    };
    std::fs::write(&cfg, config("eth0", 1)).unwrap();
    let _peer = lab.pass_on_peer();
    let daemon = Daemon::start(&lab, &cfg, &dir.join("run"), &dir.join("vipd.log"), &[]);
    let v = daemon.wait_status(
        "b1 quarantined by its checks",
        Duration::from_secs(10),
        |v| backend(v, "198.18.2.11:8080").state == "quarantined",
    );
    let b1 = backend(&v, "198.18.2.11:8080");
    assert!(
        b1.recent
            .iter()
            .any(|r| r.outcome.starts_with("check failed")),
        "{b1:?}"
    );
    assert_eq!(b1.outcomes.refused, 0, "no client traffic was sent: {b1:?}");
    let b2 = backend(&v, "198.18.2.12:8080");
    assert_eq!(b2.state, "healthy", "{b2:?}");
    // Clients reach b2 only.
    let answers: Vec<Option<String>> = (0..5).map(|_| curl(&lab)).collect();
    assert!(
        answers.iter().all(|a| a.as_deref() == Some("b2")),
        "{answers:?}\n{}",
        daemon.log()
    );

    // A weight change is reloaded from the file.
    std::fs::write(&cfg, config("eth0", 3)).unwrap();
    let v = daemon.wait_status("the reload", Duration::from_secs(5), |v| {
        backend(v, "198.18.2.12:8080").config_weight == 3
    });
    let r = v.last_reload.clone().unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(backend(&v, "198.18.2.12:8080").weight, 3);
    assert_eq!(
        backend(&v, "198.18.2.11:8080").state,
        "quarantined",
        "a reload keeps health state"
    );
    // A drop-in file added beside the config is a change of the config: its service
    // is added, and the running ones keep their state.
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::write(
        dir.join("conf.d/api.toml"),
        format!(
            "[[service]]\nname = \"api\"\nvip = \"{VIP}:81\"\nbackend = [{{ address = \"198.18.2.12:8080\" }}]\n"
        ),
    )
    .unwrap();
    let v = daemon.wait_status("the drop-in's reload", Duration::from_secs(5), |v| {
        v.services.len() == 2
    });
    assert!(v.last_reload.as_ref().is_some_and(|r| r.ok), "{v:#?}");
    assert_eq!(v.services[1].name, "api");
    assert_eq!(
        backend(&v, "198.18.2.11:8080").state,
        "quarantined",
        "a reload that adds a drop-in keeps health state"
    );
    // Another interface needs a restart: rejected whole, the running config stays.
    std::fs::write(&cfg, config("eth9", 5)).unwrap();
    let v = daemon.wait_status("the rejection", Duration::from_secs(5), |v| {
        v.last_reload.as_ref().is_some_and(|r| !r.ok)
    });
    let r = v.last_reload.clone().unwrap();
    assert!(r.message.contains("needs a restart"), "{r:?}");
    assert_eq!(backend(&v, "198.18.2.12:8080").config_weight, 3);
    assert_eq!(curl(&lab).as_deref(), Some("b2"));
    drop(daemon);
    drop(servers);
}

/// Sends `n` datagrams to the VIP's port 53 from the client's fixed port 45454, one at a
/// time; returns who answered each (`b1`, `b2`) or `-` (no answer within 300 ms).
fn udp_from_fixed_port(lab: &Lab, n: usize) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.cl.name, "python3", "-c"])
        .arg(format!(
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(0.3)\n\
             s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1); s.bind((\"0.0.0.0\",45454))\n\
             for i in range({n}):\n \
               s.sendto(b\"x\",(\"{VIP}\",53))\n \
               try: print(s.recv(100).decode().split(\":\")[0])\n \
               except OSError: print(\"-\")\n"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// UDP: the backend a fixed-port client is on stops listening (its stack answers with
/// ICMP port unreachable); vipd quarantines it and takes it out of the service's table,
/// so the client's flow moves to the other backend at its next datagram instead of
/// staying on a dead one (IPVS's `udp_stale_flows = "expire"`).
#[test]
fn a_udp_flow_moves_off_a_quarantined_backend() {
    let lab = Lab::new();
    let scratch = Scratch::new("udp");
    let dir = &scratch.0;
    let mut servers: Vec<Procs> = lab
        .backends()
        .into_iter()
        .map(|(ns, _, name)| {
            let mut p = Procs::default();
            p.spawn(ns, &udp_echo(name, 5353));
            p
        })
        .collect();
    let cfg = dir.join("vipd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"dataplane = "xdp"
[xdp]
interface = "eth0"
pin_maps = false

[[service]]
name = "dns"
vip = "{VIP}:53"
protocol = "udp"
backend = [{{ address = "198.18.2.11:5353" }}, {{ address = "198.18.2.12:5353" }}]
  [service.health]
  base_ejection = "60s"
"#
        ),
    )
    .unwrap();
    let _peer = lab.pass_on_peer();
    let daemon = Daemon::start(&lab, &cfg, &dir.join("run"), &dir.join("vipd.log"), &[]);
    daemon.status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let a = udp_from_fixed_port(&lab, 3);
        if a.iter().all(|x| x != "-") {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the UDP VIP never answered: {a:?}\n{}",
            daemon.log()
        );
    };
    assert!(
        first.iter().all(|x| *x == first[0]),
        "the flow sticks: {first:?}"
    );
    let (victim, other, victim_addr) = if first[0] == "b1" {
        (0, "b2", "198.18.2.11:5353")
    } else {
        (1, "b1", "198.18.2.12:5353")
    };
    drop(servers.remove(victim));
    let after = udp_from_fixed_port(&lab, 12);
    let lost = after.iter().filter(|x| *x == "-").count();
    assert!(
        lost <= 2 && after[after.len() - 8..].iter().all(|x| x == other),
        "the fixed-port flow did not move to {other}: {after:?}\n{}",
        daemon.log()
    );
    let v = daemon.wait_status("the quarantine", Duration::from_secs(3), |v| {
        backend(v, victim_addr).state == "quarantined"
    });
    let b = backend(&v, victim_addr);
    assert!(b.outcomes.unreachable >= 1, "{b:?}");
    assert!(
        b.recent
            .iter()
            .any(|r| r.outcome == "unreachable (port unreachable)"),
        "{b:?}"
    );
    drop(daemon);
    drop(servers);
}

/// `vipd run` with pinned maps killed (SIGKILL) and started again while a TCP
/// connection through the VIP carries traffic: the connection never notices, and the
/// restarted vipd writes nothing for the unchanged config.
#[test]
fn a_restart_with_pinned_maps_keeps_connections() {
    let lab = Lab::new();
    let scratch = Scratch::new("restart");
    let dir = &scratch.0;
    let pins = Pins::new("restart");
    let mut servers = Procs::default();
    for (ns, addr, _) in lab.backends() {
        servers.spawn(ns, "socat TCP6-LISTEN:7000,fork,reuseaddr EXEC:cat");
        wait_tcp(&lab.lb, addr, 7000);
    }
    let cfg = dir.join("vipd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"dataplane = "xdp"
[xdp]
interface = "eth0"

[[service]]
name = "echo"
vip = "{VIP}:7000"
backend = [{{ address = "198.18.2.11:7000" }}, {{ address = "198.18.2.12:7000" }}]
"#
        ),
    )
    .unwrap();
    let _peer = lab.pass_on_peer();
    let runtime = dir.join("run");
    let start =
        |log: &Path| Daemon::start(&lab, &cfg, &runtime, log, &[("VIPD_XDP_PIN_DIR", &pins.0)]);
    let first = start(&dir.join("first.log"));
    // A client that keeps one connection busy for 4 s, one line every 50 ms, each of
    // which must come back.
    let client = Command::new("ip")
        .args(["netns", "exec", &lab.cl.name, "python3", "-c"])
        .arg(format!(
            "import socket,time,sys\n\
             for i in range(50):\n  \
               try:\n    s=socket.create_connection((\"{VIP}\",7000),1); break\n  \
               except OSError: time.sleep(0.1)\n\
             s.settimeout(2)\n\
             for i in range(80):\n  \
               s.sendall(b\"%d\\n\" % i)\n  \
               d=b\"\"\n  \
               while not d.endswith(b\"\\n\"): d+=s.recv(100)\n  \
               assert d==b\"%d\\n\" % i, d\n  \
               time.sleep(0.05)\n\
             print(\"ok\")"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(first);
    // With vipd gone, the balancer stays attached through its pinned link.
    let link = lab.lb.run("ip link show eth0");
    assert!(
        link.contains("prog/xdp"),
        "no XDP program after the kill:\n{link}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let second_log = dir.join("second.log");
    let second = start(&second_log);
    let out = client.wait_with_output().unwrap();
    let mut text = String::new();
    std::fs::File::open(&second_log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "the connection broke across the restart: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("writes=0"),
        "the restart wrote to the maps:\n{text}"
    );
    drop(second);
    drop(servers);
}

/// A directory for pinned maps under /sys/fs/bpf, removed when the test ends.
struct Pins(String);

impl Pins {
    fn new(tag: &str) -> Pins {
        Pins(format!("/sys/fs/bpf/vipd-{tag}-{}", std::process::id()))
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A SIGHUP sent while the daemon starts (a `systemctl reload` racing the start, a
/// config tool) waits for the daemon's loop: vipd does not die of it.
#[test]
fn sighup_during_start_up_does_not_kill_the_daemon() {
    let lab = Lab::new();
    let scratch = Scratch::new("sighup");
    let dir = &scratch.0;
    let cfg = dir.join("vipd.toml");
    std::fs::write(
        &cfg,
        format!(
            "dataplane = \"xdp\"\n[xdp]\ninterface = \"eth0\"\npin_maps = false\n\n\
             [[service]]\nname = \"web\"\nvip = \"{VIP}:80\"\n  [[service.backend]]\n  \
             address = \"198.18.2.11:8080\"\n"
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&lab, &cfg, &dir.join("run"), &dir.join("vipd.log"), &[]);
    let pid = daemon.child.id();
    // nsenter execs vipd, whose `main` holds SIGHUP first thing: from then on (the
    // process's SigBlk has SIGHUP, bit 0) nothing may kill it. Before its `main` runs
    // (the dynamic loader) no program can catch a signal.
    let status = format!("/proc/{pid}/status");
    let holds_sighup = || {
        std::fs::read_to_string(&status)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & 1 == 1)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !holds_sighup() {
        assert!(Instant::now() < deadline, "vipd never held SIGHUP");
        std::thread::sleep(Duration::from_micros(100));
    }
    let socket = control::socket_path(&daemon.runtime);
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while control::query_status(&socket, Duration::from_millis(200)).is_err() {
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "vipd died during start-up after {sent} SIGHUPs:\n{}",
            daemon.log()
        );
        assert!(Instant::now() < deadline, "no status:\n{}", daemon.log());
        // SAFETY: kill with a valid pid and signal.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGHUP) }, 0);
        sent += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(sent > 0, "the daemon answered before any SIGHUP was sent");
    let v = daemon.wait_status("a reload after start-up", Duration::from_secs(5), |v| {
        v.last_reload.is_some()
    });
    assert!(v.last_reload.unwrap().ok);
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "vipd is running"
    );
}

/// A panic in a spawned task (injected into the control socket's client task, debug
/// builds only) ends the whole daemon by SIGABRT (`panic = "abort"`), the panic printed
/// once, instead of leaving it running without that task; started again, as the
/// service manager does, it adopts the pinned balancer with zero writes.
#[test]
fn a_panic_in_a_task_aborts_the_daemon_and_a_restart_adopts() {
    use std::os::unix::process::ExitStatusExt;

    let lab = Lab::new();
    let scratch = Scratch::new("panic");
    let dir = &scratch.0;
    let pins = Pins::new("panic");
    let cfg = dir.join("vipd.toml");
    std::fs::write(
        &cfg,
        format!(
            "dataplane = \"xdp\"\n[xdp]\ninterface = \"eth0\"\n\n\
             [[service]]\nname = \"web\"\nvip = \"{VIP}:80\"\nbackend = [\
             {{ address = \"198.18.2.11:8080\" }}, {{ address = \"198.18.2.12:8080\" }}]\n"
        ),
    )
    .unwrap();
    let runtime = dir.join("run");
    let log = dir.join("first.log");
    let env = [("VIPD_XDP_PIN_DIR", pins.0.as_str())];
    let faulty = [env[0], ("VIPD_FAULT", "panic-in-control-task")];
    let mut daemon = Daemon::start(&lab, &cfg, &runtime, &log, &faulty);
    // Started: the control socket is there. The first client's task panics.
    let socket = control::socket_path(&runtime);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() || !daemon.log().contains("vipd running") {
        assert!(
            Instant::now() < deadline,
            "never started:\n{}",
            daemon.log()
        );
        assert!(
            daemon.child.try_wait().unwrap().is_none(),
            "{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let asked = control::query_status(&socket, Duration::from_secs(2));
    assert!(asked.is_err(), "the client's task answered: {asked:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "vipd still runs:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = daemon.log();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}\n{text}");
    assert_eq!(
        text.matches("injected fault (VIPD_FAULT=panic-in-control-task)")
            .count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("panicked at").count(), 1, "{text}");

    // Restarted without the fault: the pinned balancer is adopted as it is.
    let again = Daemon::start(&lab, &cfg, &runtime, &dir.join("again.log"), &env);
    let v = again.status();
    assert_eq!(v.services[0].backends.len(), 2, "{v:#?}");
    let text = again.log();
    assert!(text.contains("writes=0"), "the restart wrote:\n{text}");
}
