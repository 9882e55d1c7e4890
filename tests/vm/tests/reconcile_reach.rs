//! Reachability on the real kernel (the VM has no network device and so no default
//! route): vipd's dummy interface holds the VIPs and local clients reach backends in
//! network namespaces through them; it is idempotent; a VIP that is already local is
//! left alone; an interface of the same name that is not a dummy is refused; sysctls are
//! set only as the config needs them.

use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use vipd_vmtests::{
    lab::{Family, Lab},
    require_vm, sh,
    vipd_cli::{sysctl, VipdRun},
};

fn config(vip: SocketAddr, backend: SocketAddr, persistent: bool) -> String {
    let p = if persistent {
        "persistence = { timeout = \"60s\" }\n"
    } else {
        ""
    };
    format!(
        "[[service]]\nname = \"web\"\nvip = \"{vip}\"\n{p}  [[service.backend]]\n  address = \"{backend}\"\n"
    )
}

fn greeting(vip: SocketAddr) -> String {
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to VIP {vip}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn reach(family: Family) {
    require_vm();
    assert_eq!(
        sh("ip route show default; ip -6 route show default").trim(),
        "",
        "the VM has no default route"
    );
    let lab = Lab::new(family, 1);
    let backend = lab.serve_greeting(0, 8080);
    let (vip, shown) = match family {
        Family::V4 => ("198.18.0.80".parse().unwrap(), "198.18.0.80/32 scope host"),
        Family::V6 => (
            "fd00:18::80".parse().unwrap(),
            "fd00:18::80/128 scope global",
        ),
    };
    let vip = SocketAddr::new(vip, 80);
    let _ = sh("ip link del vipd0 2>/dev/null; true");
    let run = VipdRun::new(&format!("reach-{family:?}"));

    let s = run.apply(&config(vip, backend, false));
    assert_eq!(s.rtnetlink_writes, 2, "{:?}", s.reach);
    let link = sh("ip -d -o link show vipd0");
    assert!(link.contains("dummy") && link.contains(",UP"), "{link}");
    let addrs = sh("ip -o addr show dev vipd0");
    assert!(addrs.contains(shown), "{addrs}");
    assert!(!addrs.contains("tentative"), "{addrs}");
    assert_eq!(greeting(vip), "hello from vb1");

    // Idempotent: nothing to do.
    assert_eq!(run.apply(&config(vip, backend, false)).netlink_writes, 0);
    // Set down by someone: set up again (IPv6 drops the addresses of a down interface, so
    // the VIP is added again too).
    sh("ip link set vipd0 down");
    let s = run.apply(&config(vip, backend, false));
    let writes = if family == Family::V6 { 2 } else { 1 };
    assert_eq!(s.rtnetlink_writes, writes, "{:?}", s.reach);
    assert_eq!(greeting(vip), "hello from vb1");

    // The lab's own VIP (on its own interface) is local already: vipd neither adds it nor,
    // later, removes it.
    let lab_vip = SocketAddr::new(lab.vip, 80);
    let s = run.apply(&config(lab_vip, backend, false));
    assert!(
        s.reach.iter().all(|r| !r.contains("add VIP")),
        "{:?}",
        s.reach
    );
    assert_eq!(greeting(lab_vip), "hello from vb1");
    assert!(
        !sh("ip -o link show").contains("vipd0"),
        "vipd0 emptied and deleted"
    );
    run.apply("");
    assert!(sh("ip -o addr show dev vipdtest0").contains(&lab.vip.to_string()));
}

#[test]
fn local_clients_reach_vips_on_vipds_dummy_without_default_route_v4() {
    reach(Family::V4);
}

#[test]
fn local_clients_reach_vips_on_vipds_dummy_without_default_route_v6() {
    reach(Family::V6);
}

#[test]
fn an_interface_of_another_kind_is_refused_and_nothing_changes() {
    require_vm();
    let _ = sh("ip link del vipdbad 2>/dev/null; true");
    sh("ip link add vipdbad type veth peer name vipdbad-peer");
    let run = VipdRun::new("not-dummy");
    let before = sh("ipvsadm -Sn");
    let out = run.apply_output(
        "[daemon]\nvip_interface = \"vipdbad\"\n[[service]]\nname = \"a\"\nvip = \"198.18.0.81:80\"\n",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"vipdbad\"") && err.contains("not a dummy"),
        "{err}"
    );
    assert_eq!(sh("ipvsadm -Sn"), before);
    assert!(!sh("ip -o addr show").contains("198.18.0.81"));
    sh("ip link del vipdbad");
}

#[test]
fn sysctls_are_set_as_the_config_needs_them() {
    require_vm();
    sh("sysctl -qw net.ipv4.vs.expire_nodest_conn=0 net.ipv4.vs.expire_quiescent_template=0");
    let _ = sh("ip link del vipd0 2>/dev/null; true");
    let run = VipdRun::new("sysctl");
    let vip: SocketAddr = "198.18.0.82:80".parse().unwrap();
    let backend: SocketAddr = "198.18.1.2:8080".parse().unwrap();
    // Nothing owned: nothing set.
    assert_eq!(run.apply("").sysctl_writes, 0);
    assert_eq!(sysctl("net.ipv4.vs.expire_nodest_conn"), "0");
    let s = run.apply(&config(vip, backend, false));
    assert_eq!(s.sysctl_writes, 1);
    assert_eq!(sysctl("net.ipv4.vs.expire_nodest_conn"), "1");
    assert_eq!(sysctl("net.ipv4.vs.expire_quiescent_template"), "0");
    let s = run.apply(&config(vip, backend, true));
    assert_eq!((s.sysctl_writes, s.ipvs_writes), (1, 1));
    assert_eq!(sysctl("net.ipv4.vs.expire_quiescent_template"), "1");
    assert_eq!(run.apply(&config(vip, backend, true)).sysctl_writes, 0);
    run.apply("");
}
