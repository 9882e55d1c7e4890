//! Benchmark (prints figures, asserts nothing about them): `bench_socket`'s measurement
//! ([`vipd_vmtests::socket_bench`]) natively, on a host with the socket plane's
//! features, in the native lab (every host a namespace, the client host's firewall on).
//! Targets: straight to the two backends, the socket plane's VIP (`vipd run`, `dataplane
//! = "socket"`, in the client host's namespace), and the backends straight from inside
//! the plane's cgroup. No IPVS: the VM run compares with it.
//!
//! Built only with the `native-lab` feature and `#[ignore]`d; as root:
//! `cargo test --release -p vipd-vmtests --features native-lab --test bench_socket_native
//! -- --ignored --nocapture`.

use std::net::SocketAddr;

use vipd_vmtests::{
    daemon::Vipd,
    lab::{Family, Firewall, Lab},
    native::{vipd_on_path, Names, Session},
    sh,
    socket_bench::{socket_services, socket_vip, Bench, Target, GREET, SINK, VPORT},
};

/// How long the client host's connection tracking keeps a closed connection (TIME_WAIT;
/// the kernel's default is 2 min). Natively the clients make about 30,000 connections
/// a second, and the table's limit is the host's (a global setting this benchmark leaves
/// alone): with the default the lab's entries would fill it within a family's rounds.
/// The client host is a namespace of the lab's own, so its timeout is the lab's to set.
const TIME_WAIT_S: u32 = 5;

fn bench(family: Family) {
    let mut session = Session::start(Names::of("bench-socket", "vtsb-", 2)).expect("this host");
    let lab = Lab::namespaced(family, 2, Firewall::On, &session.names.prefix);
    sh(&format!(
        "{}sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait={TIME_WAIT_S}",
        lab.place.on_client()
    ));
    let greet: Vec<[SocketAddr; 2]> = GREET
        .iter()
        .map(|p| [lab.serve_greeting(0, *p), lab.serve_greeting(1, *p)])
        .collect();
    let sink = [lab.serve_sink(0, SINK), lab.serve_sink(1, SINK)];
    let mut vipd = Vipd::new(&format!("bench-socket-native-{family:?}"));
    vipd.write_config(&session.socket_config(&format!(
        "[daemon]\nmetrics_address = \"off\"\n\n{}",
        socket_services(family, &greet[2], &sink)
    )));
    session.start_vipd(&mut vipd).expect("starting vipd");
    session.become_client().expect("joining the client host");
    Bench {
        title: format!("bench_socket_native {family:?}"),
        setups: vec![
            Target::new("straight", &greet[0], false),
            Target::new("socket plane VIP", &[socket_vip(family, VPORT)], true),
            Target::new("straight, plane attached", &greet[3], true),
        ],
        bulks: vec![
            Target::new("straight", &[sink[0]], false),
            Target::new("socket plane VIP", &[socket_vip(family, SINK)], true),
        ],
        cgroup: &mut session.cgroup,
        daemons: vec![("socket vipd", &vipd)],
    }
    .run();
    vipd.stop();
}

/// Both families, one after the other, each on a thread of its own (joining the client
/// host's namespace is the calling thread's).
#[test]
#[ignore = "benchmark: run explicitly, as root"]
fn bench_socket_native() {
    vipd_on_path();
    for family in [Family::V4, Family::V6] {
        std::thread::spawn(move || bench(family))
            .join()
            .expect("the benchmark");
    }
}
