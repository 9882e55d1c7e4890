//! `vipd run` with a fwmark service: the kernel follows the connections the service's
//! mark sends through IPVS (their destination is no VIP), and a backend that refuses
//! them is quarantined like any other.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use vipd_vmtests::{
    daemon::{backend_in, Vipd},
    lab::{Family, Lab},
    require_vm, sh,
};

#[test]
fn refusing_backend_of_a_fwmark_service_is_quarantined() {
    require_vm();
    sh("ipvsadm -C; ip link del vipd0 2>/dev/null; true");
    let lab = Lab::new(Family::V4, 2);
    // Backend 0 has no server: it refuses. Backend 1 answers.
    let refusing = SocketAddr::new(lab.backends[0].addr, 8080);
    let serving = lab.serve_greeting(1, 8080);
    let dst = lab.mark_tcp(7, 80);
    let mut vipd = Vipd::new("fwmark");
    vipd.write_config(&format!(
        "[[service]]\nname = \"marked\"\nfwmark = 7\nfamily = \"ipv4\"\nscheduler = \"rr\"\n\n\
         \x20 [[service.backend]]\n  address = \"{refusing}\"\n\n\
         \x20 [[service.backend]]\n  address = \"{serving}\"\n"
    ));
    vipd.start();
    // The watch is in place once the daemon answers; rr sends one of the first two
    // connections to the refusing backend.
    let outcomes: Vec<bool> = (0..4)
        .map(|_| TcpStream::connect_timeout(&dst, Duration::from_secs(3)).is_ok())
        .collect();
    assert!(
        outcomes.contains(&false),
        "no connection was refused: {outcomes:?}"
    );
    let v = vipd.wait_for("the quarantine", Duration::from_secs(5), |v| {
        v.services[0]
            .backends
            .iter()
            .any(|b| b.addr == refusing.to_string() && b.state == "quarantined")
    });
    let b = backend_in(&v.services[0], refusing);
    assert_eq!(b.weight, 0, "{b:?}");
    assert!(vipd.log(1).contains("cause=\"refused\""), "{}", vipd.log(1));
    // Every later connection goes to the backend that answers.
    for _ in 0..6 {
        TcpStream::connect_timeout(&dst, Duration::from_secs(3))
            .expect("a connection after the quarantine");
    }
    vipd.stop();
}
