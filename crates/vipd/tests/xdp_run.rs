//! Host tier: `vipd run` with `dataplane = "xdp"` in the namespace lab. A backend whose
//! server dies answers SYNs with RSTs; the XDP program reports the refusal, the health
//! machine quarantines the backend (the same one the IPVS data plane uses), and new
//! connections go to the other backend within a connection or two. Needs root.

mod xdp_common;

use std::{
    io::Read,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use vipd::xdp::{Sizes, XdpProgram};
use xdp_common::lab::{wait_tcp, Lab, Procs, VIP};

struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(lab: &Lab) -> Option<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.cl.name,
            "curl",
            "-s",
            "--max-time",
            "3",
        ])
        .arg(format!("http://{VIP}/id"))
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn a_refusing_backend_is_quarantined_and_traffic_moves() {
    let lab = Lab::new();
    let dir = std::env::temp_dir().join(format!("vipd-xdp-run-{}", std::process::id()));
    let mut servers = Vec::new();
    for (ns, addr, name) in lab.backends() {
        let www = dir.join(name);
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("id"), format!("{name}\n")).unwrap();
        let mut p = Procs::default();
        p.spawn(
            ns,
            &format!(
                "python3 -m http.server 8080 --bind {addr} --directory {}",
                www.display()
            ),
        );
        servers.push(p);
        wait_tcp(&lab.lb, addr, 8080);
    }
    let cfg = dir.join("vipd.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"dataplane = "xdp"
[xdp]
interface = "eth0"
pin_maps = false

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
    let mut peer = XdpProgram::load(
        Sizes {
            services: 1,
            backends: 2,
            flows: 16,
            events_bytes: 4096,
        },
        None,
    )
    .unwrap();
    lab.sw.enter(|| peer.attach_pass("p-lb")).unwrap();
    let log = dir.join("vipd.log");
    let daemon = Daemon(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", lab.lb.name))
            .arg(env!("CARGO_BIN_EXE_vipd"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(&lab).is_none() {
        assert!(Instant::now() < deadline, "the VIP never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    // b1's server dies: its stack answers SYNs with RSTs.
    drop(servers.remove(0));
    let mut answers = Vec::new();
    for _ in 0..20 {
        answers.push(curl(&lab));
    }
    let failed = answers.iter().filter(|a| a.is_none()).count();
    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        failed <= 2,
        "{failed} of 20 connections failed: {answers:?}\n{text}"
    );
    assert!(
        answers[answers.len() - 10..]
            .iter()
            .all(|a| a.as_deref() == Some("b2")),
        "{answers:?}\n{text}"
    );
    assert!(
        text.contains("Quarantined"),
        "no quarantine in vipd's log:\n{text}"
    );
    assert!(text.contains("cause: Refused"), "{text}");
    drop(daemon);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `vipd run` with pinned maps killed (SIGKILL) and started again while a TCP
/// connection through the VIP carries traffic: the connection never notices, and the
/// restarted vipd writes nothing for the unchanged config.
#[test]
fn a_restart_with_pinned_maps_keeps_connections() {
    let lab = Lab::new();
    let dir = std::env::temp_dir().join(format!("vipd-xdp-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pins = format!("/sys/fs/bpf/vipd-restart-{}", std::process::id());
    struct Pins(String);
    impl Drop for Pins {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _pins = Pins(pins.clone());
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
    let mut peer = XdpProgram::load(
        Sizes {
            services: 1,
            backends: 2,
            flows: 16,
            events_bytes: 4096,
        },
        None,
    )
    .unwrap();
    lab.sw.enter(|| peer.attach_pass("p-lb")).unwrap();
    let start = |log: &std::path::Path| {
        Daemon(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", lab.lb.name))
                .arg(env!("CARGO_BIN_EXE_vipd"))
                .args(["run", "--config"])
                .arg(&cfg)
                .env("VIPD_XDP_PIN_DIR", &pins)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    };
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
    let mut first = first;
    kill(&mut first.0);
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
    drop(first);
    drop(servers);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGKILL: no chance to clean up, like a crash.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
