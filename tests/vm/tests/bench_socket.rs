//! Benchmark (prints figures, asserts nothing about them): TCP through the socket data
//! plane against the same client going straight to a backend and through IPVS, in the
//! same VM run, on the real-network lab (firewall on), IPv4 and IPv6. The measurement
//! is [`vipd_vmtests::socket_bench`]'s; `bench_socket_native` runs the same without
//! IPVS on the development host.
//!
//! Targets: straight to the two backends; a VIP of IPVS (`vipd run`, two backends); a
//! VIP of the socket plane (another `vipd run`, `dataplane = "socket"`, two backends);
//! and the backends straight from inside the socket plane's cgroup. The socket plane is
//! attached to a cgroup of the benchmark's own, and the benchmark moves itself in and
//! out of it, so the other targets run with no program at all. The straight targets
//! pick one of both backends at random for each connection, as the VIPs do.
//!
//! `#[ignore]`d, so `cargo xtask vm-test` skips it;
//! `cargo xtask vm-bench --kernel 6.12 bench_socket` runs it (release build).

use std::net::SocketAddr;

use vipd::config::SocketSettings;
use vipd_vmtests::{
    daemon::{tcp_service, Vipd},
    lab::{Family, Lab},
    native::ClientCgroup,
    require_vm, sh,
    socket_bench::{socket_services, socket_vip, Bench, ConntrackMax, Target, GREET, SINK, VPORT},
};

/// The socket plane's cgroup, a child of the cgroup v2 root.
const CGROUP: &str = "vipd-bench";

fn bench(family: Family) {
    require_vm();
    sh("ipvsadm -C");
    let lab = Lab::new(family, 2);
    // After the lab: its firewall is what loads connection tracking.
    let _conntrack = ConntrackMax::raise();
    let greet: Vec<[SocketAddr; 2]> = GREET
        .iter()
        .map(|p| [lab.serve_greeting(0, *p), lab.serve_greeting(1, *p)])
        .collect();
    let sink = [lab.serve_sink(0, SINK), lab.serve_sink(1, SINK)];
    let ipvs_vip = lab.vip;
    let at = |port: u16| SocketAddr::new(ipvs_vip, port);

    // Both planes under `vipd run`, each with its passive health on, as an operator runs
    // them. The socket plane first: a first start unloads ip_vs, as at a host's boot.
    let root = SocketSettings::default_cgroup();
    let mut cgroup = ClientCgroup::create(&root, CGROUP).expect("the socket plane's cgroup");
    let mut socket = Vipd::new(&format!("bench-socket-{family:?}"));
    // Pins of its own: the IPVS daemon's start removes a socket plane's default pins.
    socket.env.push((
        "VIPD_SOCKET_PIN_DIR".to_owned(),
        "/sys/fs/bpf/vipd-bench".to_owned(),
    ));
    socket.write_config(&format!(
        "dataplane = \"socket\"\n\n[daemon]\nmetrics_address = \"off\"\n\n[socket]\ncgroup = \"{}\"\n\n{}",
        cgroup.path.display(),
        socket_services(family, &greet[2], &sink)
    ));
    socket.start();
    let mut ipvs = Vipd::new(&format!("bench-socket-ipvs-{family:?}"));
    ipvs.write_config(&format!(
        "{}\n{}",
        tcp_service("greet", at(VPORT), &greet[1], 1, ""),
        tcp_service("sink", at(SINK), &sink, 1, "")
    ));
    ipvs.start();

    Bench {
        title: format!("bench_socket {family:?}"),
        setups: vec![
            Target::new("straight", &greet[0], false),
            Target::new("IPVS VIP", &[at(VPORT)], false),
            Target::new("socket plane VIP", &[socket_vip(family, VPORT)], true),
            Target::new("straight, plane attached", &greet[3], true),
        ],
        bulks: vec![
            Target::new("straight", &[sink[0]], false),
            Target::new("IPVS VIP", &[at(SINK)], false),
            Target::new("socket plane VIP", &[socket_vip(family, SINK)], true),
        ],
        cgroup: &mut cgroup,
        daemons: vec![("socket vipd", &socket), ("IPVS vipd", &ipvs)],
    }
    .run();
    socket.stop();
    ipvs.stop();
    // Its pins go before the cgroup they are attached to.
    drop(socket);
    drop(cgroup);
}

#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_socket"]
fn bench_socket_v4() {
    bench(Family::V4);
}

#[test]
#[ignore = "benchmark: cargo xtask vm-bench bench_socket"]
fn bench_socket_v6() {
    bench(Family::V6);
}
