//! An upgrade from a vipd whose plane had no `sock_release` program (and so no
//! `SOCK_UDP_SENT` map): the new plane takes over the links the old one pinned, attaches
//! and pins the program that was missing, creates the map, writes nothing for the same
//! config, and from then on a closed UDP socket's records go with it.

use vipd::{
    config::Config,
    plane::DataPlane,
    sockplane::{
        loader::{program_names, RELEASE_PROGRAM},
        maps::Records,
        pins::link_pin,
    },
};

use crate::{
    socket_common::{
        addr, backend_netns, procs::client, Cgroup, Pins, Servers, BACKENDS4, UDP_PORT, VIP4,
    },
    start, tally, weights,
};

#[test]
fn an_upgrade_adds_the_release_hook_beside_the_links_it_takes_over() {
    let backends = BACKENDS4;
    let ns = backend_netns();
    let _servers = Servers::start(&ns, &backends);
    let cg = Cgroup::new("sock-upgrade");
    let pins = Pins::new("sock-upgrade");
    let w = weights(VIP4, &backends, &[1, 1, 1]);

    let mut old = start(&cg.0, &pins.0);
    old.apply(&Config::default(), &w).unwrap();
    drop(old);
    // What the older vipd left: every pin but these two.
    std::fs::remove_file(link_pin(&pins.0, RELEASE_PROGRAM)).unwrap();
    std::fs::remove_file(pins.0.join("SOCK_UDP_SENT")).unwrap();

    let mut new = start(&cg.0, &pins.0);
    let status = new.status();
    let taken = program_names().count() - 1;
    assert!(
        status.hooks.contains(&format!("{taken} taken over")),
        "{}",
        status.hooks
    );
    assert!(link_pin(&pins.0, RELEASE_PROGRAM).exists());
    assert!(pins.0.join("SOCK_UDP_SENT").exists());
    let applied = new.apply(&Config::default(), &w).unwrap();
    assert_eq!(applied.writes, 0, "the upgrade wrote: {applied:?}");

    let seen = client(&ns, &cg.0, VIP4, UDP_PORT, 20, "udp-unconnected");
    assert_eq!(
        tally(&seen, addr(VIP4, UDP_PORT)).values().sum::<usize>(),
        20
    );
    assert_eq!(
        new.records(),
        Records::default(),
        "records of closed sockets"
    );
}
