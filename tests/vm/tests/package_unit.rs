//! `vipd run` inside the sandbox of the packaged systemd unit (`dist/vipd.service`), as
//! far as the VM (which has no systemd) allows: its CapabilityBoundingSet (through
//! setpriv, with NoNewPrivileges), its UMask and its LimitMEMLOCK, read from the unit
//! itself. In that sandbox vipd
//! * with the packaged config (`dist/vipd.toml`, no service) touches nothing: no IPVS
//!   service, no VIP interface, no sysctl;
//! * attaches every watcher hook the same way as with all of root's capabilities;
//! * serves a VIP once a service is added, and quarantines a backend that refuses;
//! * writes its records readable by root alone.
//!
//! And without CAP_SYS_ADMIN, the kprobes attach only once kernel.perf_event_paranoid is
//! lowered from Debian's 3 to 2, as the unit's comments tell operators.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    os::unix::fs::PermissionsExt,
    path::Path,
    time::{Duration, Instant},
};

use vipd::daemon::view::WatcherView;
use vipd_ipvs::ServiceKey;
use vipd_vmtests::{
    daemon::{tcp_service, Vipd},
    lab::{Family, Lab},
    load::Load,
    require_vm, sh,
    weights::{quarantined, WeightWatcher},
};

const UNIT: &str = include_str!("../../../dist/vipd.service");
const PACKAGED_CONFIG: &str = include_str!("../../../dist/vipd.toml");

/// The capabilities a unit may name, with their numbers (linux/capability.h). A name
/// missing here fails the test: add it.
const CAPABILITIES: &[(&str, u32)] = &[
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYSLOG", 34),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];

/// The value of `key` in the unit's [Service] section (the last one given wins, as
/// with systemd); panics if it is not set.
fn service_setting(key: &str) -> &'static str {
    let mut section = "";
    let mut value = None;
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[Service]" {
            if let Some(v) = line.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                value = Some(v.trim());
            }
        }
    }
    value.unwrap_or_else(|| panic!("dist/vipd.service sets no {key}="))
}

fn capability_names() -> Vec<&'static str> {
    service_setting("CapabilityBoundingSet")
        .split_whitespace()
        .collect()
}

/// A bounding set as a mask, as /proc/<pid>/status shows it.
fn capability_mask(caps: &[&str]) -> u64 {
    caps.iter()
        .map(|name| {
            let n = CAPABILITIES
                .iter()
                .find(|(c, _)| c == name)
                .unwrap_or_else(|| panic!("unknown capability {name} in dist/vipd.service"))
                .1;
            1u64 << n
        })
        .fold(0, |a, b| a | b)
}

/// bash sets the unit's UMask and LimitMEMLOCK, then setpriv drops every capability
/// `caps` does not name and sets no_new_privs before it execs vipd.
fn launcher(caps: &[&str]) -> Vec<String> {
    let umask = service_setting("UMask");
    let memlock = match service_setting("LimitMEMLOCK") {
        "infinity" => "unlimited".to_owned(),
        n => n.to_owned(),
    };
    let caps = caps
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    [
        "bash",
        "-c",
        &format!("ulimit -l {memlock} && umask {umask} && exec \"$@\""),
        "vipd-unit",
        "setpriv",
        "--bounding-set",
        &format!("-all,{caps}"),
        "--no-new-privs",
        "--",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// A line of /proc/<pid>/status, e.g. `CapBnd`.
fn proc_status(pid: u32, field: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// The IPVS sysctls vipd may set that are not at the kernel's default (0); none while
/// ip_vs is not loaded.
fn changed_ipvs_sysctls() -> Vec<String> {
    [
        "conntrack",
        "expire_nodest_conn",
        "expire_quiescent_template",
    ]
    .iter()
    .filter_map(|s| {
        let value = std::fs::read_to_string(format!("/proc/sys/net/ipv4/vs/{s}")).ok()?;
        (value.trim() != "0").then(|| format!("{s}={}", value.trim()))
    })
    .collect()
}

/// The modes of the files vipd made in `dir`, not the test's.
fn modes_in(dir: &Path) -> Vec<(String, u32)> {
    std::fs::read_dir(dir)
        .expect("reading the directory")
        .map(|e| {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            (e.path().display().to_string(), mode)
        })
        .filter(|(p, _)| !p.ends_with(".log") && !p.contains("vipd.toml"))
        .collect()
}

/// How the watcher attaches with all of root's capabilities, for comparison.
fn reference_watcher() -> WatcherView {
    let mut plain = Vipd::new("unit-reference");
    plain.write_config(PACKAGED_CONFIG);
    plain.start();
    let reference = plain.status().watcher;
    plain.stop();
    assert_eq!(reference.mode, "full", "{}", plain.log(1));
    reference
}

/// `vipd run` on the packaged config in the unit's sandbox, but with the bounding set
/// `caps`; checks the sandbox is in force.
fn start_sandboxed(name: &str, caps: &[&str]) -> Vipd {
    let mut vipd = Vipd::new(name);
    vipd.write_config(PACKAGED_CONFIG);
    vipd.start_under(&launcher(caps));
    let pid = vipd.status().pid;
    let mask = format!("{:016x}", capability_mask(caps));
    assert_eq!(proc_status(pid, "CapBnd"), mask, "the bounding set");
    assert_eq!(proc_status(pid, "CapEff"), mask, "the effective set");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let umask = u32::from_str_radix(service_setting("UMask"), 8).unwrap();
    assert_eq!(proc_status(pid, "Umask"), format!("{umask:04o}"));
    vipd
}

const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

/// Sets kernel.perf_event_paranoid, and puts the old value back when dropped.
struct Paranoid(String);

impl Paranoid {
    fn set(value: &str) -> Paranoid {
        let old = std::fs::read_to_string(PARANOID).expect("reading perf_event_paranoid");
        std::fs::write(PARANOID, value).expect("writing perf_event_paranoid");
        Paranoid(old.trim().to_owned())
    }
}

impl Drop for Paranoid {
    fn drop(&mut self) {
        let _ = std::fs::write(PARANOID, &self.0);
    }
}

#[test]
fn the_units_sandbox_serves_a_vip_and_quarantines_a_refusing_backend() {
    require_vm();
    sh("ipvsadm -C; ip link del vipd0 2>/dev/null; true");
    assert_eq!(service_setting("NoNewPrivileges"), "yes");
    let reference = reference_watcher();
    // The lab before vipd: making it unloads ip_vs, which must not happen under a running
    // vipd (its hooks in ip_vs would go with the module).
    let lab = Lab::new(Family::V4, 3);
    let backends: Vec<SocketAddr> = (0..3).map(|i| lab.serve_greeting(i, 8080)).collect();
    let vip = SocketAddr::new(lab.vip, 80);

    let mut vipd = start_sandboxed("unit", &capability_names());
    let v = vipd.status();
    assert_eq!(
        v.watcher.mode,
        "full",
        "the watcher in the sandbox:\n{}",
        vipd.log(1)
    );
    assert_eq!(
        v.watcher.hooks,
        reference.hooks,
        "hooks attach differently in the sandbox:\n{}",
        vipd.log(1)
    );

    // The packaged config balances nothing and touches nothing.
    assert!(v.services.is_empty(), "{v:#?}");
    let ipvs = sh("ipvsadm -Ln");
    assert!(
        !ipvs
            .lines()
            .any(|l| l.starts_with("TCP") || l.starts_with("UDP") || l.starts_with("FWM")),
        "IPVS services with the packaged config:\n{ipvs}"
    );
    assert_eq!(
        sh("ip link show vipd0 >/dev/null 2>&1 && echo present || echo absent").trim(),
        "absent"
    );
    assert_eq!(
        changed_ipvs_sysctls(),
        Vec::<String>::new(),
        "vipd changed a sysctl with no service"
    );

    // A service: vipd applies the changed file by itself and the VIP serves.
    vipd.write_config(&tcp_service(
        "web",
        vip,
        &backends,
        10,
        "  base_ejection = \"30s\"\n  retransmit_threshold = 3\n",
    ));
    vipd.wait_for("the service", Duration::from_secs(10), |v| {
        v.services.len() == 1 && v.last_reload.as_ref().is_some_and(|r| r.ok)
    });
    let watcher = WeightWatcher::start(ServiceKey::tcp(vip.ip(), 80), Duration::from_millis(2));
    let load = Load::start(vip, 50.0, Duration::from_secs(3));
    std::thread::sleep(Duration::from_secs(2));
    let r = load.report();
    assert!(r.failures().is_empty(), "{}", r.summary());
    let serving: BTreeSet<String> = r.per_backend().into_keys().collect();
    assert_eq!(serving.len(), 3, "every backend serves: {}", r.summary());

    // A backend whose server is gone refuses: quarantined (IPVS weight 0).
    let fault = Instant::now();
    lab.kill_server(0);
    watcher
        .wait_for(backends[0], fault, Duration::from_secs(5), quarantined)
        .unwrap_or_else(|| panic!("backend 1 not quarantined:\n{}", vipd.log(1)));
    vipd.wait_for_backend(backends[0], "quarantined", Duration::from_secs(5));
    load.stop();

    // UMask: the ownership record and the runtime files are root's alone.
    let mut made = modes_in(&vipd.dir);
    made.extend(modes_in(&vipd.runtime));
    assert!(
        made.iter().any(|(p, _)| p.ends_with("state.json")),
        "no ownership record among {made:?}"
    );
    for (path, mode) in &made {
        assert_eq!(mode & 0o077, 0, "{path} has mode {mode:o}");
    }
    vipd.stop();
}

/// Why the unit keeps CAP_SYS_ADMIN, and when a drop-in may remove it: Debian's kernels
/// default to kernel.perf_event_paranoid=3, where perf_event_open(2) (the kprobe on
/// ip_vs_conn_new) wants CAP_SYS_ADMIN; at 2, the unit's other capabilities attach every
/// hook as root does.
#[test]
fn cap_sys_admin_is_needed_only_while_perf_event_paranoid_is_3() {
    require_vm();
    sh("ipvsadm -C; ip link del vipd0 2>/dev/null; true");
    let without: Vec<&str> = capability_names()
        .into_iter()
        .filter(|c| *c != "CAP_SYS_ADMIN")
        .collect();
    assert_ne!(without, capability_names(), "the unit keeps CAP_SYS_ADMIN");
    let reference = reference_watcher();

    let strict = Paranoid::set("3");
    let mut vipd = start_sandboxed("unit-paranoid-3", &without);
    let mode = vipd.status().watcher.mode;
    assert!(
        mode.starts_with("degraded") && mode.contains("perf_event_open"),
        "at perf_event_paranoid 3 without CAP_SYS_ADMIN: {mode}\n{}",
        vipd.log(1)
    );
    vipd.stop();
    drop(strict);

    let _relaxed = Paranoid::set("2");
    let mut vipd = start_sandboxed("unit-paranoid-2", &without);
    let v = vipd.status();
    assert_eq!(v.watcher.mode, "full", "{}", vipd.log(1));
    assert_eq!(v.watcher.hooks, reference.hooks, "{}", vipd.log(1));
    vipd.stop();
}
