//! Host tier: `vipd apply` with `dataplane = "xdp"` in the namespace lab. The command
//! exits and the balancer keeps working (pinned link and maps); applying the same config
//! again writes nothing; a weight change writes only Maglev entries; the flow table
//! survives the re-apply. Needs root.

mod xdp_common;

use std::process::Command;

use xdp_common::lab::{udp_echo, Lab, Procs, VIP};

fn config(w1: u32, w2: u32) -> String {
    format!(
        r#"dataplane = "xdp"
[xdp]
interface = "eth0"

[[service]]
name = "dns"
vip = "{VIP}:53"
protocol = "udp"
  [[service.backend]]
  address = "198.18.2.11:5353"
  weight = {w1}
  [[service.backend]]
  address = "198.18.2.12:5353"
  weight = {w2}
"#
    )
}

/// Runs `vipd apply` in the balancer's network namespace (nsenter: same mounts, so
/// pins land in the host's bpffs) with pins under `pins`; returns its stdout.
fn apply(lab: &Lab, pins: &str, cfg: &str) -> String {
    let path = std::env::temp_dir().join(format!("vipd-xdp-apply-{}.toml", std::process::id()));
    std::fs::write(&path, cfg).unwrap();
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", lab.lb.name))
        .arg(env!("CARGO_BIN_EXE_vipd"))
        .args(["apply", "--config"])
        .arg(&path)
        // A record of its own, not the host's.
        .arg("--state-file")
        .arg(
            std::env::temp_dir()
                .join(format!("vipd-xdp-apply-{}", std::process::id()))
                .join("state.json"),
        )
        .env("VIPD_XDP_PIN_DIR", pins)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vipd apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the pins (which detaches the program) even if the test fails.
struct Pins(String);
impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn apply_programs_a_persistent_balancer_and_reapplies_only_differences() {
    let lab = Lab::new();
    let pins = Pins(format!("/sys/fs/bpf/vipd-test-{}", std::process::id()));
    let mut procs = Procs::default();
    for (ns, _, name) in lab.backends() {
        procs.spawn(ns, &udp_echo(name, 5353));
    }
    let first = apply(&lab, &pins.0, &config(1, 1));
    assert!(first.contains("1 services, 2 backends"), "{first}");
    assert!(first.contains("65537 Maglev entries"), "{first}");
    // The command has exited; the program stays attached.
    lab.sw.run("true");
    let ask = format!(
        "python3 -c \"\nimport socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(1); s.bind((\\\"0.0.0.0\\\",45455))\nfor i in range(10):\n  try:\n    s.sendto(b\\\"x\\\",(\\\"{VIP}\\\",53)); print(s.recv(100).decode().split(\\\":\\\")[0]); break\n  except OSError: time.sleep(0.2)\""
    );
    // The balancer's veth peer needs a receiver for XDP_TX frames (see xdp_lb.rs); the
    // test keeps `vipd_xdp_pass` attached there.
    let _peer = lab.pass_on_peer();
    let served = lab.cl.run(&ask);
    assert!(
        served == "b1\n" || served == "b2\n",
        "no answer through the VIP: {served:?}\n{}",
        lab.lb.run("ip -d -s link show eth0"),
    );

    let again = apply(&lab, &pins.0, &config(1, 1));
    assert!(again.contains("; 0 map writes"), "{again}");
    let changed = apply(&lab, &pins.0, &config(1, 0));
    assert!(
        changed.contains("0 services, 0 removed; 0 backends, 0 freed"),
        "{changed}"
    );
    // The flow keeps its backend through the flow table, even one now at weight 0.
    assert_eq!(lab.cl.run(&ask), served);
    drop(procs);
}
