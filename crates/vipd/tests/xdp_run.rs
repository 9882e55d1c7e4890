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
