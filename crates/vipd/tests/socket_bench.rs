//! Benchmark (not a test; `#[ignore]`, run with `cargo test -p vipd --test socket_bench
//! -- --ignored --nocapture` as root): TCP connection setup through the socket plane
//! against the same connections made straight to the backend, from the same client in
//! the same cgroup. The two alternate, `ROUNDS` times each, so that load from elsewhere
//! on the host falls on both alike; the medians are compared. Each connection is a
//! connect, a read of the server's line and a close, from python3: the figures include
//! the interpreter, the same on both sides.
//!
//! Prints the figures and the ratio; asserts only that both carried every connection.

mod socket_common;
mod xdp_common;

use socket_common::{
    backend_netns, procs::timed_connects, start_plane, Cgroup, Pins, Servers, BACKENDS4, TCP_PORT,
    VIP4, VIP_PORT,
};
use vipd::{
    config::{Config, Protocol},
    model::{BackendId, ServiceKey, Vip},
    plane::{DataPlane, Held, Weights},
};

const ROUNDS: usize = 7;
const CONNECTS: usize = 2000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run explicitly, as root"]
fn bench_connection_setup_through_the_socket_plane() {
    let backend = BACKENDS4[0];
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &[backend]);
    let cg = Cgroup::new("sock-bench");
    let bare = Cgroup::new("sock-bench-bare");
    let pins = Pins::new("sock-bench");
    let mut plane = start_plane(&cg, &pins);
    let mut w = Weights::default();
    let vip = socket_common::addr(VIP4, VIP_PORT);
    w.insert(
        ServiceKey::Addr(Vip::new(Protocol::Tcp, vip)),
        BackendId::new(backend.parse().unwrap(), TCP_PORT),
        Held {
            configured: 1,
            weight: Some(1),
        },
    );
    plane.apply(&Config::default(), &w).expect("apply");
    let (mut none, mut direct, mut through) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        none.push(timed_connects(&ns, &bare.0, backend, TCP_PORT, CONNECTS));
        direct.push(timed_connects(&ns, &cg.0, backend, TCP_PORT, CONNECTS));
        through.push(timed_connects(&ns, &cg.0, VIP4, VIP_PORT, CONNECTS));
    }
    let per = |s: f64| s / CONNECTS as f64 * 1e6;
    let (n, d, t) = (median(none), median(direct), median(through));
    println!(
        "connection setup, {CONNECTS} connects x {ROUNDS} rounds, medians per connection: \
         direct without programs {:.1} us, direct with the plane's programs {:.1} us, \
         through the socket plane {:.1} us; through/without {:.3}, through/with {:.3}",
        per(n),
        per(d),
        per(t),
        t / n,
        t / d
    );
}
