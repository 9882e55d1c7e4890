//! Ownership on the real kernel: a service made with ipvsadm survives vipd's apply, the
//! removal of everything from the config and the end of the vipd process; a config that
//! declares it is refused whole; an invalid config changes nothing; ownership lives in the
//! state file, so it survives a restart, and without the file vipd adopts nothing.

use std::process::Output;

use vipd_vmtests::{require_vm, sh, vipd_cli::VipdRun};

/// ipvsadm's rules (`-Sn`) and listing (`-Ln`), the addresses of every interface and
/// every route: what must not change.
fn dumps() -> (String, String, String) {
    (
        sh("ipvsadm -Sn"),
        sh("ipvsadm -Ln"),
        sh("ip -o addr show | awk '{print $2, $3, $4}' | sort; ip route show table all"),
    )
}

fn rules_of(vip: &str) -> Vec<String> {
    sh("ipvsadm -Sn")
        .lines()
        .filter(|l| l.contains(vip))
        .map(str::to_owned)
        .collect()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "vipd apply should have failed");
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Removes what an earlier, failed run of these tests may have left.
fn clean() {
    for svc in [
        "-t 198.18.70.1:443",
        "-u 198.18.70.2:53",
        "-t 198.18.70.3:80",
        "-t 198.18.70.4:80",
        "-t 198.18.70.1:80",
        "-u 198.18.70.9:53",
    ] {
        let _ = sh(&format!("ipvsadm -D {svc} 2>/dev/null; true"));
    }
    let _ = sh("ip link del vipd70 2>/dev/null; true");
}

const DAEMON: &str = "[daemon]\nvip_interface = \"vipd70\"\n";

fn config(extra: &str) -> String {
    format!(
        "{DAEMON}
[[service]]
name = \"web\"
vip = \"198.18.70.1:443\"
scheduler = \"wrr\"
  [[service.backend]]
  address = \"198.18.71.2:443\"
  weight = 4

[[service]]
name = \"dns\"
vip = \"198.18.70.2:53\"
protocol = \"udp\"
  [[service.backend]]
  address = \"198.18.71.3:53\"
{extra}"
    )
}

#[test]
fn ipvsadm_service_survives_apply_removal_and_shutdown() {
    require_vm();
    clean();
    sh("ipvsadm -A -t 198.18.70.1:80 -s rr -p 120 && ipvsadm -a -t 198.18.70.1:80 -r 198.18.71.1:80 -m -w 3");
    sh("ipvsadm -A -u 198.18.70.9:53 -s wlc");
    let foreign = || [rules_of("198.18.70.1:80"), rules_of("198.18.70.9:53")].concat();
    let before = foreign();
    assert_eq!(before.len(), 3, "{before:?}");

    let run = VipdRun::new("foreign");
    let s = run.apply(&config(""));
    assert!(s.foreign_services >= 2, "{s:?}");
    assert_eq!(
        foreign(),
        before,
        "apply changed a service it did not create"
    );

    // Declaring the foreign service is a conflict: the whole apply is refused, before any
    // write (the new service in the same config is not created either).
    let dumped = dumps();
    let record = run.state_text();
    let clash = "[[service]]\nname = \"clash\"\nvip = \"198.18.70.1:80\"\n\n[[service]]\nname = \"new\"\nvip = \"198.18.70.3:80\"\n";
    let err = failed(&run.apply_output(&config(clash)));
    assert!(
        err.contains("tcp 198.18.70.1:80 (service \"clash\")") && err.contains("did not create"),
        "{err}"
    );
    assert_eq!(dumps(), dumped);
    assert_eq!(run.state_text(), record);

    // Everything out of the config: vipd's services go, the foreign ones stay, and so does
    // the VIP route vipd added that the foreign service uses.
    let s = run.apply(DAEMON);
    assert_eq!(s.ipvs_writes, 2, "{:?}", s.ops);
    assert_eq!(foreign(), before);
    let routes = sh("ip -o route show dev vipd70 proto 118");
    assert!(routes.contains("198.18.70.1 "), "{routes}");
    assert!(!routes.contains("198.18.70.2 "), "{routes}");
    assert!(s.foreign_services >= 2);

    // "Shutdown": vipd apply is one shot and has exited; nothing ran that removes anything.
    assert_eq!(foreign(), before);
    let listing = sh("ipvsadm -Ln -t 198.18.70.1:80");
    assert!(listing.contains("198.18.71.1:80"), "{listing}");

    // Once the foreign service is gone, vipd's last route and its interface go too.
    sh("ipvsadm -D -t 198.18.70.1:80 && ipvsadm -D -u 198.18.70.9:53");
    let s = run.apply(DAEMON);
    assert_eq!((s.ipvs_writes, s.rtnetlink_writes), (0, 2), "{:?}", s.reach);
    assert!(!sh("ip -o link show").contains("vipd70"));
}

#[test]
fn ownership_survives_a_restart_and_lives_in_the_state_file() {
    require_vm();
    clean();
    let run = VipdRun::new("restart");
    run.apply(&config(""));
    let record = run.state_text();
    assert!(record.contains(r#""tcp": "198.18.70.1:443""#), "{record}");
    assert!(record.contains(r#""udp": "198.18.70.2:53""#), "{record}");
    assert!(record.contains(r#""interface": "vipd70""#), "{record}");

    // A new vipd process (a restart) with the same record removes what the first made.
    let s = run.apply(&format!(
        "{DAEMON}\n[[service]]\nname = \"web\"\nvip = \"198.18.70.1:443\"\nscheduler = \"wrr\"\n  [[service.backend]]\n  address = \"198.18.71.2:443\"\n  weight = 4\n"
    ));
    assert_eq!(s.ops, ["delete service udp 198.18.70.2:53"]);

    // Without its record vipd does not know the service is its own: it refuses, and
    // changes nothing.
    std::fs::remove_file(&run.state).unwrap();
    let dumped = dumps();
    let err = failed(&run.apply_output(&config("")));
    assert!(
        err.contains("tcp 198.18.70.1:443 (service \"web\")"),
        "{err}"
    );
    assert_eq!(dumps(), dumped);

    sh("ipvsadm -D -t 198.18.70.1:443 && ip link del vipd70");
}

#[test]
fn invalid_config_changes_nothing() {
    require_vm();
    clean();
    let run = VipdRun::new("invalid");
    run.apply(&config(""));
    let dumped = dumps();
    let record = run.state_text();

    // Errors anywhere in the file: nothing applied, not even the valid parts (here the
    // removal of "dns" and a new service).
    let bad = format!(
        "{DAEMON}
[[service]]
name = \"web\"
vip = \"198.18.70.1:443\"
scheduler = \"wrrr\"
  [[service.backend]]
  address = \"198.18.71.2:443\"
  weight = 4

[[service]]
name = \"new\"
vip = \"198.18.70.4:80\"
  [[service.backend]]
  address = \"198.18.71.300:80\"
"
    );
    let err = failed(&run.apply_output(&bad));
    assert!(
        err.contains("wrrr") && err.contains("198.18.71.300"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    assert_eq!(dumps(), dumped);
    assert_eq!(run.state_text(), record);

    // A dry run shows the plan and writes nothing, not even the record.
    let out = run.apply_with(DAEMON, &["--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("would make 2 IPVS writes and 3 rtnetlink writes"),
        "{text}"
    );
    assert!(text.contains("delete service udp 198.18.70.2:53"), "{text}");
    assert!(text.contains("delete interface vipd70"), "{text}");
    assert_eq!(dumps(), dumped);
    assert_eq!(run.state_text(), record);

    // An unreadable file is no different.
    let out = std::process::Command::new("vipd")
        .args([
            "apply",
            "--config",
            "/nonexistent/vipd.toml",
            "--state-file",
        ])
        .arg(&run.state)
        .output()
        .unwrap();
    let err = failed(&out);
    assert!(err.contains("cannot read the config"), "{err}");
    assert_eq!(dumps(), dumped);

    run.apply(DAEMON);
}
