//! vipd-ipvs against the real IPVS netlink family: what the library writes, ipvsadm
//! reads back (and the other way round), for every service and destination option.

use std::net::{IpAddr, Ipv4Addr};

use vipd_ipvs::{
    AddressFamily, Batch, Client, Destination, Error, ForwardMethod, Netmask, Service,
    ServiceFlags, ServiceKey, Timeouts, TunnelFlags, TunnelKind,
};
use vipd_vmtests::{require_vm, sh};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// ipvsadm's lines with runs of white space folded.
fn normalised(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn client() -> Client {
    require_vm();
    Client::connect().expect("IPVS netlink family")
}

/// Removes the services a test made, whatever happened.
struct Cleanup(Vec<ServiceKey>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect() {
            for k in &self.0 {
                let _ = c.del_service(k);
            }
        }
    }
}

#[test]
fn info_reports_version_and_table_size() {
    let info = client().info().unwrap();
    assert!(
        info.version_triplet() >= (1, 2, 1),
        "{:?}",
        info.version_triplet()
    );
    // ip_vs's default connection table: 2^12 buckets (CONFIG_IP_VS_TAB_BITS=12).
    assert_eq!(info.conn_table_size, 4096);
}

#[test]
fn every_option_round_trips_through_the_kernel_and_ipvsadm() {
    let mut c = client();
    let tcp4 = ServiceKey::tcp(ip("198.18.200.1"), 80);
    let udp6 = ServiceKey::udp(ip("fd00:18:200::1"), 53);
    let fw = ServiceKey::fwmark(AddressFamily::Inet, 42);
    let _cleanup = Cleanup(vec![tcp4, udp6, fw]);

    let mut s1 = Service::new(tcp4, "sh");
    s1.flags = ServiceFlags::SH_FALLBACK;
    s1.flags.set(ServiceFlags::SH_PORT, true);
    let mut s2 = Service::new(udp6, "wrr");
    s2.flags = ServiceFlags::PERSISTENT;
    s2.timeout = 300;
    s2.netmask = Netmask::V6Prefix(64);
    s2.flags.set(ServiceFlags::ONE_PACKET, true);
    let mut s3 = Service::new(fw, "mh");
    s3.flags = ServiceFlags::MH_PORT;

    let mut d1 = Destination::new(ip("198.18.201.1"), 8080, ForwardMethod::Masquerade);
    d1.weight = 5;
    d1.upper_threshold = 100;
    d1.lower_threshold = 10;
    let d2 = Destination::new(ip("198.18.201.2"), 80, ForwardMethod::DirectRoute);
    let d3 = Destination::new(ip("198.18.201.3"), 80, ForwardMethod::ipip());
    let mut d4 = Destination::new(
        ip("198.18.201.4"),
        80,
        ForwardMethod::Tunnel {
            kind: TunnelKind::Gue,
            port: 6080,
            flags: TunnelFlags::CSUM,
        },
    );
    d4.weight = 0;
    let d6 = Destination::new(ip("fd00:18:201::6"), 53, ForwardMethod::Masquerade);

    let mut b = Batch::new();
    b.new_service(&s1).unwrap();
    b.new_service(&s2).unwrap();
    b.new_service(&s3).unwrap();
    for d in [&d1, &d2, &d3, &d4] {
        b.new_destination(&tcp4, d).unwrap();
    }
    b.new_destination(&udp6, &d6).unwrap();
    b.new_destination(&fw, &d1).unwrap();
    let report = c.apply(&b).unwrap();
    assert!(
        report.is_success(),
        "{:?}",
        report.failures().collect::<Vec<_>>()
    );

    // The library's own dump.
    let services = c.services().unwrap();
    for want in [&s1, &s2, &s3] {
        let got = services
            .iter()
            .find(|s| s.key == want.key)
            .expect("service dumped");
        assert_eq!(got.scheduler, want.scheduler);
        assert_eq!(
            got.flags.bits() & !ServiceFlags::HASHED.bits(),
            want.flags.bits(),
            "{:?}",
            want.key
        );
        assert_eq!(
            (got.timeout, got.netmask),
            (want.timeout, want.netmask),
            "{:?}",
            want.key
        );
    }
    let dests = c.destinations(&tcp4).unwrap();
    assert_eq!(dests.len(), 4);
    for want in [&d1, &d2, &d3, &d4] {
        let got = dests
            .iter()
            .find(|d| d.addr == want.addr)
            .expect("destination dumped");
        assert_eq!(
            (got.port, got.forward, got.weight),
            (want.port, want.forward, want.weight)
        );
        assert_eq!(
            (got.upper_threshold, got.lower_threshold),
            (want.upper_threshold, want.lower_threshold)
        );
    }
    assert_eq!(c.destinations(&udp6).unwrap()[0].addr, d6.addr);

    // ipvsadm's independent view.
    let list = normalised(&sh("ipvsadm -Ln"));
    for line in [
        "TCP 198.18.200.1:80 sh (sh-fallback,sh-port)",
        "-> 198.18.201.1:8080 Masq 5 0 0",
        "-> 198.18.201.2:80 Route 1 0 0",
        "-> 198.18.201.3:80 Tunnel 1 0 0",
        "-> 198.18.201.4:80 Tunnel 0 0 0",
        "UDP [fd00:18:200::1]:53 wrr persistent 300 mask 64 ops",
        "-> [fd00:18:201::6]:53 Masq 1 0 0",
        "FWM 42 mh (mh-port)",
    ] {
        assert!(
            list.contains(&line.to_string()),
            "ipvsadm -Ln lacks {line:?}:\n{list:#?}"
        );
    }
    let tun = sh("ipvsadm -Ln --tun-info");
    assert!(
        tun.contains("gue") && tun.contains("6080"),
        "GUE tunnel port not in:\n{tun}"
    );
}

#[test]
fn reads_a_service_made_by_ipvsadm_and_edits_one_weight() {
    let mut c = client();
    let key = ServiceKey::tcp(ip("198.18.202.1"), 443);
    let _cleanup = Cleanup(vec![key]);
    sh("ipvsadm -A -t 198.18.202.1:443 -s lc -p 60 -M 255.255.255.0");
    sh("ipvsadm -a -t 198.18.202.1:443 -r 198.18.203.1:443 -m -w 3 -x 50 -y 5");
    let svc = c.service(&key).unwrap().expect("ipvsadm's service");
    assert_eq!(svc.scheduler, "lc");
    assert!(svc.flags.contains(ServiceFlags::PERSISTENT));
    assert_eq!(svc.timeout, 60);
    assert_eq!(svc.netmask, Netmask::V4(Ipv4Addr::new(255, 255, 255, 0)));
    let mut d = c.destinations(&key).unwrap().remove(0);
    assert_eq!((d.weight, d.upper_threshold, d.lower_threshold), (3, 50, 5));
    d.weight = 7;
    c.set_destination(&key, &d).unwrap();
    let list = normalised(&sh("ipvsadm -Ln -t 198.18.202.1:443"));
    assert!(
        list.contains(&"-> 198.18.203.1:443 Masq 7 0 0".to_string()),
        "{list:#?}"
    );
}

#[test]
fn kernel_errors_are_typed() {
    let mut c = client();
    let key = ServiceKey::tcp(ip("198.18.204.1"), 80);
    let _cleanup = Cleanup(vec![key]);
    c.new_service(&Service::new(key, "rr")).unwrap();
    match c.new_service(&Service::new(key, "rr")) {
        Err(Error::Kernel { errno, .. }) => assert_eq!(errno, libc::EEXIST),
        other => panic!("duplicate service: {other:?}"),
    }
    match c.new_service(&Service::new(
        ServiceKey::tcp(ip("198.18.204.2"), 80),
        "nosuch",
    )) {
        Err(Error::Kernel { errno, .. }) => assert_eq!(errno, libc::ENOENT),
        other => panic!("unknown scheduler: {other:?}"),
    }
    assert!(c
        .service(&ServiceKey::tcp(ip("198.18.204.9"), 80))
        .unwrap()
        .is_none());
}

#[test]
fn timeouts_get_and_set() {
    let mut c = client();
    let before = c.timeouts().unwrap();
    assert_eq!(
        (before.tcp, before.tcp_fin, before.udp),
        (Some(900), Some(120), Some(300))
    );
    c.set_timeouts(&Timeouts {
        tcp: Some(901),
        tcp_fin: None,
        udp: None,
    })
    .unwrap();
    assert_eq!(c.timeouts().unwrap().tcp, Some(901));
    let shown = sh("ipvsadm -L --timeout");
    assert_eq!(shown.trim(), "Timeout (tcp tcpfin udp): 901 120 300");
    c.set_timeouts(&before).unwrap();
}
