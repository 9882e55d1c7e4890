//! Benchmark (not a test; `#[ignore]`, run with `cargo test -p vipd --test socket_bench
//! -- --ignored --nocapture` as root): exchanges through the socket plane against the
//! same exchanges made straight to the backend, from the same client in the same cgroup,
//! and from a cgroup without the plane's programs. TCP: a connect, a read of the
//! server's line and a close. UDP: a new unconnected socket per exchange, a datagram
//! each way and a close (a socket per query: the plane records and, at the close, removes
//! each socket's translation). The three alternate, `ROUNDS` times each, so that
//! load from elsewhere on the host falls on all alike; the medians are compared. Each
//! client is python3: the figures include the interpreter, the same on every side.
//!
//! Prints the figures and the ratios; asserts only that every exchange was carried.

mod socket_common;
mod xdp_common;

use socket_common::{
    backend_netns, procs::timed_exchanges, start_plane, Cgroup, Pins, Servers, BACKENDS4, TCP_PORT,
    UDP_PORT, VIP4, VIP_PORT,
};
use vipd::{
    config::{Config, Protocol},
    model::{BackendId, ServiceKey, Vip},
    plane::{DataPlane, Held, Weights},
};

const ROUNDS: usize = 7;
const EXCHANGES: usize = 2000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(protocol: Protocol, tag: &str) {
    let (mode, port) = match protocol {
        Protocol::Tcp => ("tcp", TCP_PORT),
        Protocol::Udp => ("udp", UDP_PORT),
    };
    let backend = BACKENDS4[0];
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &[backend]);
    let cg = Cgroup::new(tag);
    let bare = Cgroup::new(&format!("{tag}-bare"));
    let pins = Pins::new(tag);
    let mut plane = start_plane(&cg, &pins);
    let mut w = Weights::default();
    let vip = socket_common::addr(VIP4, VIP_PORT);
    w.insert(
        ServiceKey::Addr(Vip::new(protocol, vip)),
        BackendId::new(backend.parse().unwrap(), port),
        Held {
            configured: 1,
            weight: Some(1),
        },
    );
    plane.apply(&Config::default(), &w).expect("apply");
    let (mut none, mut direct, mut through) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        none.push(timed_exchanges(
            &ns, &bare.0, backend, port, EXCHANGES, mode,
        ));
        direct.push(timed_exchanges(&ns, &cg.0, backend, port, EXCHANGES, mode));
        through.push(timed_exchanges(&ns, &cg.0, VIP4, VIP_PORT, EXCHANGES, mode));
    }
    let per = |s: f64| s / EXCHANGES as f64 * 1e6;
    let (n, d, t) = (median(none), median(direct), median(through));
    println!(
        "{mode}: {EXCHANGES} exchanges x {ROUNDS} rounds, medians per exchange: \
         direct without programs {:.1} us, direct with the plane's programs {:.1} us, \
         through the socket plane {:.1} us; through/without {:.3}, through/with {:.3}",
        per(n),
        per(d),
        per(t),
        t / n,
        t / d
    );
}

#[test]
#[ignore = "benchmark: run explicitly, as root"]
fn bench_connection_setup_through_the_socket_plane() {
    bench(Protocol::Tcp, "sock-bench");
}

#[test]
#[ignore = "benchmark: run explicitly, as root"]
fn bench_udp_exchanges_through_the_socket_plane() {
    bench(Protocol::Udp, "sock-bench-udp");
}
