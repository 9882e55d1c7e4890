//! A UDP service end to end with what vipd does today: `vipd apply` a `protocol = "udp"`
//! rr service on VIP port 53 with three dnsmasq backends (each answers `which.vipd.test`
//! TXT with its own name), then, IPv4 and IPv6 each:
//!
//! * `dig` through the VIP gets an answer from one of the backends;
//! * queries from many source ports (a new socket each) are spread over all backends;
//! * a client with one fixed source port stays on one backend for all its queries (IPVS
//!   keeps a UDP flow on its backend), and three such clients on three ports land on
//!   three different backends (rr over flows);
//! * the lab's faults reach such a client through IPVS: a killed dnsmasq makes its
//!   queries fail, over IPv4 with ECONNREFUSED (the backend's ICMP port unreachable,
//!   translated back by IPVS; over IPv6 the ICMPv6 error does not come back through
//!   IPVS to a local client: timeouts), a backend that drops UDP makes them time out with
//!   no error, and after
//!   each fault is undone the same flow is answered by the same backend again (vipd has
//!   no UDP failure detection yet: nothing moves the flow).

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use vipd_vmtests::{
    daemon::udp_service,
    dns::{dig_txt, UdpLoad, UdpOutcome},
    lab::{Family, Lab},
    require_vm, sh,
    vipd_cli::VipdRun,
};

const PORT: u16 = 53;
const BACKENDS: u8 = 3;

struct Setup {
    lab: Lab,
    vip: SocketAddr,
    run: VipdRun,
}

impl Drop for Setup {
    fn drop(&mut self) {
        // The service goes before the lab (vipd's record says it owns it).
        let _ = self.run.apply_output("");
    }
}

fn setup(name: &str, family: Family) -> Setup {
    require_vm();
    sh("ipvsadm -C");
    let lab = Lab::new(family, BACKENDS);
    let backends: Vec<SocketAddr> = (0..BACKENDS as usize)
        .map(|i| lab.serve_dns(i, PORT))
        .collect();
    let vip = SocketAddr::new(lab.vip, PORT);
    let run = VipdRun::new(name);
    run.apply(&udp_service("dns", vip, &backends, 1, ""));
    let listing = sh("ipvsadm -Ln");
    assert!(
        listing.contains(&format!("UDP  {}", family.ipvs(vip.ip(), PORT))),
        "no UDP service in:\n{listing}"
    );
    Setup { lab, vip, run }
}

fn names(lab: &Lab) -> BTreeSet<String> {
    lab.backends.iter().map(|b| b.ns.clone()).collect()
}

fn dig_answers_through_the_vip(family: Family) {
    let s = setup(&format!("udp-dns-dig-{family:?}"), family);
    for (i, b) in s.lab.backends.iter().enumerate() {
        let direct = SocketAddr::new(b.addr, PORT);
        assert_eq!(
            dig_txt(direct).as_deref(),
            Ok(b.ns.as_str()),
            "backend {i} straight"
        );
    }
    let mut seen = BTreeSet::new();
    for _ in 0..6 {
        let name = dig_txt(s.vip).unwrap_or_else(|e| panic!("dig through the VIP: {e}"));
        assert!(names(&s.lab).contains(&name), "answered by {name:?}");
        seen.insert(name);
    }
    // dig uses a new source port per run: rr spreads them.
    assert_eq!(seen, names(&s.lab), "six digs through the VIP");
}

fn many_source_ports_spread(family: Family) {
    let s = setup(&format!("udp-dns-spread-{family:?}"), family);
    let load = UdpLoad::start_many_ports(s.vip, 40.0, Duration::from_secs(1));
    std::thread::sleep(Duration::from_secs(3));
    let r = load.stop();
    println!("many ports: {}", r.summary());
    assert!(r.len() >= 90, "{}", r.summary());
    assert!(r.failures().is_empty(), "{}", r.summary());
    let per = r.per_backend();
    assert_eq!(
        per.keys().cloned().collect::<BTreeSet<_>>(),
        names(&s.lab),
        "{}",
        r.summary()
    );
    // rr over new flows: each backend gets a third, give or take.
    let fair = r.len() / BACKENDS as usize;
    for (b, n) in &per {
        assert!(
            n.abs_diff(fair) <= 2,
            "{b}: {n} of {} (rr): {}",
            r.len(),
            r.summary()
        );
    }
    // (Almost) every query came from a different source port: the kernel may hand a
    // freed ephemeral port out again.
    let ports: BTreeSet<u16> = r.queries.iter().map(|q| q.src_port).collect();
    assert!(
        ports.len() * 10 >= r.len() * 9,
        "{} source ports",
        ports.len()
    );
}

fn fixed_source_port_sticks(family: Family) {
    let s = setup(&format!("udp-dns-sticky-{family:?}"), family);
    // Three resolvers, each with its own fixed port, started one after the other.
    let mut loads = Vec::new();
    for port in [40053, 40054, 40055] {
        let t = Instant::now();
        let l = UdpLoad::start(s.vip, port, 25.0, Duration::from_secs(1));
        let first = l.wait_for(t, Duration::from_secs(3), |q| q.outcome.is_ok());
        assert!(
            first.is_some(),
            "no answer on port {port}: {}",
            l.report().summary()
        );
        loads.push(l);
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut used = BTreeSet::new();
    for l in loads {
        let r = l.stop();
        println!("fixed port: {}", r.summary());
        assert!(r.len() >= 75, "{}", r.summary());
        assert!(r.failures().is_empty(), "{}", r.summary());
        let per = r.per_backend();
        assert_eq!(per.len(), 1, "one flow, one backend: {}", r.summary());
        let ports: BTreeSet<u16> = r.queries.iter().map(|q| q.src_port).collect();
        assert_eq!(ports.len(), 1);
        used.extend(per.into_keys());
    }
    assert_eq!(used, names(&s.lab), "rr over three flows");
}

fn faults_reach_a_fixed_port_client(family: Family) {
    let s = setup(&format!("udp-dns-faults-{family:?}"), family);
    let t0 = Instant::now();
    let load = UdpLoad::start(s.vip, 40060, 20.0, Duration::from_millis(500));
    let first = load.wait_for(t0, Duration::from_secs(3), |q| q.outcome.is_ok());
    let name = first
        .expect("a first answer")
        .outcome
        .backend()
        .unwrap()
        .to_owned();
    let i = s.lab.backends.iter().position(|b| b.ns == name).unwrap();
    let answered_by = |q: &vipd_vmtests::dns::UdpQuery| q.outcome.backend() == Some(name.as_str());

    let killed = Instant::now();
    assert_eq!(s.lab.kill_dns(i), 1);
    let failed = load.wait_for(killed, Duration::from_secs(3), |q| !q.outcome.is_ok());
    assert!(
        failed.is_some(),
        "no failure after the kill: {}",
        load.report().summary()
    );
    if family == Family::V4 {
        // IPv4: the backend's ICMP port unreachable comes back through IPVS.
        let refused = load.wait_for(killed, Duration::from_secs(3), |q| {
            q.outcome == UdpOutcome::Refused
        });
        assert!(
            refused.is_some(),
            "no refusal after the kill: {}",
            load.report().summary()
        );
    }
    // IPv6 (6.1 and 6.12): the backend sends its ICMPv6 port unreachable, but it never
    // reaches the local client through IPVS (the root namespace's Icmp6InDestUnreachs
    // does not move): the client only sees timeouts.
    std::thread::sleep(Duration::from_millis(500));
    let restarted = Instant::now();
    assert_eq!(s.lab.restart_dns(i), 1);
    let back = load.wait_for(restarted, Duration::from_secs(3), answered_by);
    assert!(
        back.is_some(),
        "{name} not answering after its restart: {}",
        load.report().summary()
    );

    let dropped = Instant::now();
    s.lab.drop_udp(i);
    let silent = load.wait_for(dropped, Duration::from_secs(3), |q| {
        q.outcome == UdpOutcome::TimedOut
    });
    assert!(
        silent.is_some(),
        "no timeout while dropping: {}",
        load.report().summary()
    );
    std::thread::sleep(Duration::from_secs(1));
    let n = s.lab.accept_udp(i);
    // After the rule is gone (queries sent while nft ran were still dropped).
    let accepted = Instant::now();
    assert!(n >= 10, "the rule dropped {n} datagrams");
    let back = load.wait_for(accepted, Duration::from_secs(3), answered_by);
    assert!(
        back.is_some(),
        "{name} not answering after accept_udp: {}",
        load.report().summary()
    );

    let r = load.stop();
    println!("faults on {name}: {}", r.summary());
    let silent: Vec<_> = r.sent_in(dropped, accepted);
    assert!(
        silent.iter().all(|q| q.outcome != UdpOutcome::Refused),
        "a refusal from a backend that drops: {}",
        r.summary()
    );
    assert!(
        silent
            .iter()
            .filter(|q| q.outcome == UdpOutcome::TimedOut)
            .count()
            >= 10,
        "{}",
        r.summary()
    );
    assert_eq!(
        r.per_backend().len(),
        1,
        "the flow stayed on {name}: {}",
        r.summary()
    );
    // A query in flight at the kill may fail; none before it.
    let early: Vec<_> = r
        .failures_in(t0, killed)
        .into_iter()
        .filter(|q| q.ended < killed)
        .collect();
    assert!(early.is_empty(), "failures before any fault: {early:?}");
    let after_kill = r.failures_in(killed, restarted);
    println!(
        "after the kill: {} refused, {} timed out",
        after_kill
            .iter()
            .filter(|q| q.outcome == UdpOutcome::Refused)
            .count(),
        after_kill
            .iter()
            .filter(|q| q.outcome == UdpOutcome::TimedOut)
            .count()
    );
    assert!(r.last_failure().unwrap().sent < accepted, "{}", r.summary());
}

#[test]
fn udp_dns_faults_reach_a_fixed_port_client_v4() {
    faults_reach_a_fixed_port_client(Family::V4);
}

#[test]
fn udp_dns_faults_reach_a_fixed_port_client_v6() {
    faults_reach_a_fixed_port_client(Family::V6);
}

#[test]
fn udp_dns_dig_through_vip_v4() {
    dig_answers_through_the_vip(Family::V4);
}

#[test]
fn udp_dns_dig_through_vip_v6() {
    dig_answers_through_the_vip(Family::V6);
}

#[test]
fn udp_dns_many_source_ports_spread_v4() {
    many_source_ports_spread(Family::V4);
}

#[test]
fn udp_dns_many_source_ports_spread_v6() {
    many_source_ports_spread(Family::V6);
}

#[test]
fn udp_dns_fixed_source_port_sticks_v4() {
    fixed_source_port_sticks(Family::V4);
}

#[test]
fn udp_dns_fixed_source_port_sticks_v6() {
    fixed_source_port_sticks(Family::V6);
}
