//! The lab demo (`scripts/demo.sh`, the README's main job), run inside the VM: a client
//! host with a stateful firewall, three backends in network namespaces behind a router,
//! `ip_vs` not loaded (as at a host's boot), `vipd run` with examples/lab.toml (and a
//! second service, `whoami`, whose backend tells the client the address it sees), a
//! steady client load of 50 new connections/s through the VIP. First the demo shows what
//! a backend sees of the client: the client host's own address, not the VIP. Then
//! backend vb1's server dies (its namespace then refuses connections with RST), is
//! restarted; then vb2 drops every SYN (a blackhole), and recovers. A live view prints
//! once a second; the demo ends with a summary: connections attempted and failed, and
//! fault-to-quarantine time per backend.
//!
//! With `--native` it runs on this host instead, with vipd's socket data plane (no IPVS
//! needed): every host of the lab is a namespace, the clients run in the client host's
//! namespace and in a cgroup of the demo's, and nothing of the host's own networking
//! changes ([`vipd_vmtests::native`]). `--cleanup` removes what an interrupted native
//! run left.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;
use clap::Parser;
use vipd::daemon::{control, view::DaemonView};
use vipd_ipvs::ServiceKey;
use vipd_vmtests::{
    daemon::Vipd,
    failover::{Failover, Fault, FaultReport, Timing},
    lab::{unload_ipvs, Family, Firewall, Lab},
    native::{status_weights, Names, Session},
    require_vm,
    servers::whoami_tcp,
    sh,
    weights::WeightWatcher,
};

/// The lab demo: in the VM with IPVS (no option), or on this host with the socket plane.
#[derive(Parser)]
struct Args {
    /// Run on this host with vipd's socket data plane, in namespaces and a cgroup of
    /// the demo's own (needs root and a kernel with cgroup v2 BPF hooks; no IPVS).
    #[arg(long)]
    native: bool,
    /// Remove what an interrupted native run left (namespaces, cgroup, pins, daemon),
    /// and exit.
    #[arg(long, conflicts_with = "native")]
    cleanup: bool,
}

/// The native run's names: namespaces vdemo-c (the client host), vdemo-r, vdemo-b1...
fn native_names() -> Names {
    Names::of("demo", "vdemo-", 3)
}

const CONFIG: &str = include_str!("../../../examples/lab.toml");
const VIP: &str = "198.18.0.10:80";
const RPORT: u16 = 8080;
/// The demo's second service: vb1 answers each connection with the address it sees.
const WHOAMI: &str = "198.18.0.10:81";
const WHOAMI_PORT: u16 = 9000;
const WHOAMI_CONFIG: &str = r#"
[[service]]
name = "whoami"
vip = "198.18.0.10:81"
scheduler = "rr"

  [[service.backend]]
  address = "198.18.1.2:9000"
"#;
const RATE: f64 = 50.0;

fn live_line(t: Duration, v: &DaemonView, attempts: usize, failed: usize) -> String {
    let mut line = format!(
        "[{:5.1}s] clients: {attempts:5} connections, {failed:3} failed |",
        t.as_secs_f64()
    );
    for s in v.services.iter().filter(|s| s.name == "web") {
        if s.panic {
            line.push_str(" PANIC |");
        }
        for b in &s.backends {
            let left = b
                .quarantine_left_ms
                .map(|ms| format!(" {:.1}s left", ms as f64 / 1e3))
                .unwrap_or_default();
            line.push_str(&format!(
                " {} {}{left} w={}/{} |",
                b.addr, b.state, b.weight, b.config_weight
            ));
        }
    }
    line
}

fn describe(r: &FaultReport) -> String {
    let ms = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.1} ms"));
    let what = match r.fault {
        Fault::Refuse => "server killed (RST): first refused connect",
        Fault::DropSyns => "SYNs dropped (blackhole): first SYN it received",
    };
    format!(
        "  {} ({}): {what} -> weight 0 in {}; {} of {} client connections failed meanwhile;\n    \
         re-admitted {} after recovery, slow start {}",
        r.ns,
        r.dest,
        ms(r.detect_ms()),
        r.failures.len(),
        r.attempts,
        ms(r.readmit_ms()),
        r.weights_after_undo()
    )
}

/// The data plane side of a run: IPVS in the VM, or the socket plane natively.
enum Plane {
    Vm,
    Native(Session),
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.cleanup {
        native_names().cleanup();
        return Ok(());
    }
    let mut plane = if args.native {
        Plane::Native(Session::start(native_names())?)
    } else {
        require_vm();
        sh("ip link del vipd0 2>/dev/null; true");
        Plane::Vm
    };
    let lab = match &plane {
        Plane::Vm => Lab::new(Family::V4, 3),
        Plane::Native(s) => Lab::namespaced(Family::V4, 3, Firewall::On, &s.names.prefix),
    };
    let on = match &plane {
        Plane::Vm => "",
        Plane::Native(_) => ", natively: socket data plane, the client host a namespace",
    };
    println!("== vipd lab demo on {}{on}", sh("uname -r").trim());
    for i in 0..3 {
        lab.serve_greeting(i, RPORT);
    }
    lab.serve_peer(0, WHOAMI_PORT);
    let mut vipd = Vipd::new(if args.native { "demo-native" } else { "demo" });
    let config = format!("{CONFIG}{WHOAMI_CONFIG}");
    match &mut plane {
        Plane::Vm => {
            vipd.write_config(&config);
            println!("== config (examples/lab.toml):\n{CONFIG}");
            println!("== and a second service, whose backend answers with the client address it sees:{WHOAMI_CONFIG}");
            unload_ipvs();
            println!(
                "== the client host: {} on its uplink to the router, a stateful firewall, ip_vs not \
                 loaded (as at boot: vipd loads what it needs)",
                lab.client_addr()
            );
            vipd.start();
            println!("== vipd run is up; IPVS now holds:\n{}", sh("ipvsadm -Ln"));
        }
        Plane::Native(session) => {
            let text = session.socket_config(&config);
            vipd.write_config(&text);
            println!(
                "== config (examples/lab.toml for the socket data plane, and a second service, \
                 whose backend answers with the client address it sees):\n{text}"
            );
            println!(
                "== the client host: namespace {}, {} on its uplink to the router, a stateful \
                 firewall; clients in cgroup {}",
                session.names.client_ns(),
                lab.client_addr(),
                session.cgroup.path.display()
            );
            session.start_vipd(&mut vipd)?;
            session.become_client()?;
            println!(
                "== vipd run is up in the client host's namespace (pins in {}):\n{}",
                session.pins.0.display(),
                vipd.status_text()
            );
        }
    }
    let whoami: SocketAddr = WHOAMI.parse().unwrap();
    match whoami_tcp(whoami, Duration::from_secs(5)) {
        Ok(v) => println!(
            "== the backend's view: {} sees the client as {} ({}, not the VIP {})",
            v.backend,
            v.seen,
            if v.seen.ip() == lab.client_addr() {
                "the client host's address"
            } else {
                "NOT the client host's address"
            },
            whoami.ip()
        ),
        Err(e) => println!("== the backend's view: connecting to {whoami} failed: {e}"),
    }
    let vip: SocketAddr = VIP.parse().unwrap();
    let service = ServiceKey::tcp(vip.ip(), vip.port());
    let weights = match &plane {
        Plane::Vm => WeightWatcher::start(service, Duration::from_millis(2)),
        Plane::Native(_) => WeightWatcher::start_with(
            Duration::from_millis(5),
            status_weights(vipd.runtime.clone(), "web"),
        ),
    };
    let f = Failover::start_watching(&lab, service, RPORT, RATE, Duration::from_secs(2), weights);
    let started = Instant::now();
    let stop = AtomicBool::new(false);
    let socket = control::socket_path(&vipd.runtime);
    let timing = Timing {
        detect_timeout: Duration::from_secs(10),
        hold: Duration::from_secs(3),
        readmit_timeout: Duration::from_secs(30),
        settle: Duration::from_secs(2),
        full_weight: 10,
    };
    let reports = thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(v) = control::query_status(&socket, Duration::from_secs(2)) {
                    let r = f.load.report();
                    println!(
                        "{}",
                        live_line(started.elapsed(), &v, r.len(), r.failures().len())
                    );
                }
                thread::sleep(Duration::from_secs(1));
            }
        });
        f.settle(Duration::from_secs(4));
        println!(
            "== fault 1: kill {}'s server (connections to it are refused)",
            lab.backends[0].ns
        );
        let a = f.fault(Fault::Refuse, 0, &timing);
        println!(
            "== fault 2: {} drops every SYN (blackhole)",
            lab.backends[1].ns
        );
        let b = f.fault(Fault::DropSyns, 1, &timing);
        stop.store(true, Ordering::Relaxed);
        (a, b)
    });
    let logs = f.finish();
    let status = vipd.status_text();
    let hist = vipd.metrics();
    vipd.stop();
    println!("== vipd status at the end:\n{status}");
    println!("== vipd's log (warnings and state changes):");
    for l in vipd.log(1).lines().filter(|l| {
        [
            "WARN",
            "quarantin",
            "re-admitted",
            "full weight",
            "probing",
            "PANIC",
            "panic over",
        ]
        .iter()
        .any(|k| l.contains(k))
    }) {
        println!("  {l}");
    }
    println!("== summary");
    println!(
        "  client connections attempted: {}, failed: {} ({})",
        logs.load.len(),
        logs.load.failures().len(),
        logs.load.summary()
    );
    println!("{}", describe(&reports.0));
    println!("{}", describe(&reports.1));
    println!("  vipd's own measurement (kernel event timestamp to weight 0 written):");
    for l in hist.lines().filter(|l| {
        l.starts_with("vipd_fault_to_quarantine_seconds_sum")
            || l.starts_with("vipd_fault_to_quarantine_seconds_count")
    }) {
        println!("    {l}");
    }
    match &plane {
        Plane::Vm => println!(
            "  vipd stopped with SIGTERM; IPVS keeps forwarding:\n{}",
            sh("ipvsadm -Ln")
        ),
        Plane::Native(session) => {
            println!(
                "  vipd stopped with SIGTERM; its programs stay attached to {} (pinned), \
                 so clients keep connecting through the VIP:",
                session.cgroup.path.display()
            );
            match whoami_tcp(whoami, Duration::from_secs(5)) {
                Ok(v) => println!("    {whoami} -> {} answered", v.backend),
                Err(e) => println!("    connecting to {whoami} failed: {e}"),
            }
            println!("== removing the lab (namespaces, cgroup, pins)");
        }
    }
    drop(lab);
    drop(plane);
    Ok(())
}
