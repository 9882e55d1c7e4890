//! The native lab (the demo's, `scripts/demo.sh --native`) on the development host, with
//! vipd's socket data plane: a host-tier test, built only with the `native-lab` feature
//! (scripts/test.sh runs it; the VM runner does not). Every host is a namespace, the
//! client host's firewall is on, vipd runs in the client host's namespace, the clients in
//! a cgroup of the test's. TCP through a v4 VIP must reach both backends across the
//! router, each backend must see the client host's own address, and the client's
//! getpeername must show the VIP.

use std::{
    collections::BTreeSet,
    io::Read,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use vipd_vmtests::{
    daemon::Vipd,
    lab::{Family, Firewall, Lab, FIREWALL_TABLE},
    native::{vipd_on_path, Names, Session},
    sh,
};

const VIP: &str = "198.18.0.10:81";
const PORT: u16 = 9000;

/// One connection through the VIP: what the client's socket says its peer is, and the
/// backend's answer (`peer <address it saw> <its namespace>`).
fn connect(vip: SocketAddr) -> (SocketAddr, SocketAddr, String) {
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("connecting to {vip} from the client host: {e}"));
    let peer = s.peer_addr().expect("getpeername");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("reading the answer");
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(
        words.len() == 3 && words[0] == "peer",
        "not a peer server's answer: {text:?}"
    );
    (peer, words[1].parse().expect("an address"), words[2].into())
}

#[test]
fn socket_plane_balances_the_native_lab() {
    // The only test of this binary: no other thread reads the environment meanwhile.
    vipd_on_path();
    let mut session = Session::start(Names::of("test-native", "vtnl-", 2)).expect("this host");
    let lab = Lab::namespaced(Family::V4, 2, Firewall::On, &session.names.prefix);
    let mut backends = Vec::new();
    for i in 0..2 {
        lab.serve_peer(i, PORT);
        backends.push(format!(
            "  [[service.backend]]\n  address = \"{}:{PORT}\"\n",
            lab.backends[i].addr
        ));
    }
    let config = format!(
        "[[service]]\nname = \"peer\"\nvip = \"{VIP}\"\n\n{}",
        backends.concat()
    );
    let mut vipd = Vipd::new("native-lab");
    vipd.write_config(&session.socket_config(&config));
    session.start_vipd(&mut vipd).expect("starting vipd");
    session.become_client().expect("joining the client host");

    let vip: SocketAddr = VIP.parse().unwrap();
    let mut answered = BTreeSet::new();
    for _ in 0..20 {
        let (peer, seen, backend) = connect(vip);
        assert_eq!(peer, vip, "getpeername must show the VIP, not the backend");
        assert_eq!(
            seen.ip(),
            lab.client_addr(),
            "the backend must see the client host's own address"
        );
        answered.insert(backend);
    }
    let want: BTreeSet<String> = lab.backends.iter().map(|b| b.ns.clone()).collect();
    assert_eq!(answered, want, "20 connections should reach both backends");
    assert_eq!(vipd.status().dataplane, "socket");
    let firewall = sh(&format!(
        "{}nft list table inet {FIREWALL_TABLE}",
        lab.place.on_client()
    ));
    assert!(
        firewall.contains("policy drop"),
        "the client host's firewall is not on:\n{firewall}"
    );
    vipd.stop();
}
