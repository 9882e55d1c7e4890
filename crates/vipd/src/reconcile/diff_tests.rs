use std::net::IpAddr;

use vipd_ipvs::{ForwardMethod, Netmask};

use super::*;
use crate::reconcile::{
    desired::DesiredService,
    snapshot::{KernelService, Snapshot},
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
}

const TCP_DRAIN: RemovalPolicy = RemovalPolicy {
    rule: RemovalRule::DrainTcp,
    drain_timeout: Duration::from_secs(60),
};
const UDP_EXPIRE: RemovalPolicy = RemovalPolicy {
    rule: RemovalRule::Expire,
    drain_timeout: Duration::from_secs(60),
};
const UDP_KEEP: RemovalPolicy = RemovalPolicy {
    rule: RemovalRule::DrainFlows,
    drain_timeout: Duration::from_secs(60),
};

fn tcp(n: u8) -> ServiceKey {
    ServiceKey::tcp(ip(&format!("198.18.0.{n}")), 80)
}

fn udp(n: u8) -> ServiceKey {
    ServiceKey::udp(ip(&format!("198.18.0.{n}")), 53)
}

fn dest(n: u8, weight: u32) -> Destination {
    let mut d = Destination::new(
        ip(&format!("198.18.1.{n}")),
        8080,
        ForwardMethod::Masquerade,
    );
    d.weight = weight;
    d
}

fn id(n: u8) -> DestId {
    DestId::new(ip(&format!("198.18.1.{n}")), 8080)
}

fn want(services: &[(ServiceKey, RemovalPolicy, Vec<Destination>)]) -> DesiredState {
    DesiredState {
        services: services
            .iter()
            .map(|(k, removal, dests)| {
                (
                    *k,
                    DesiredService {
                        name: format!("s{k}"),
                        service: Service::new(*k, "wrr"),
                        dests: dests
                            .iter()
                            .map(|d| (DestId::new(d.addr, d.port), d.clone()))
                            .collect(),
                        removal: *removal,
                    },
                )
            })
            .collect(),
    }
}

/// The kernel holding exactly `desired` (with the HASHED flag, as dumps report it).
fn kernel_of(desired: &DesiredState) -> Snapshot {
    Snapshot {
        services: desired
            .services
            .iter()
            .map(|(k, s)| {
                let mut svc = s.service.clone();
                svc.flags |= ServiceFlags::HASHED;
                (
                    *k,
                    KernelService {
                        service: svc,
                        dests: s.dests.clone(),
                    },
                )
            })
            .collect(),
    }
}

fn owning(desired: &DesiredState) -> Ownership {
    let mut o = Ownership::default();
    for (k, s) in &desired.services {
        o.services.insert(
            *k,
            OwnedService {
                name: s.name.clone(),
                removal: s.removal,
            },
        );
    }
    o
}

#[test]
fn from_empty_creates_each_service_then_its_backends() {
    let d = want(&[
        (tcp(1), TCP_DRAIN, vec![dest(1, 1), dest(2, 5)]),
        (udp(2), UDP_EXPIRE, vec![dest(3, 1)]),
    ]);
    let p = plan(&d, &Snapshot::default(), &Ownership::default(), t(0));
    let shown: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "new service tcp 198.18.0.1:80 scheduler wrr",
            "new backend 198.18.1.1:8080 masq weight 1 thresholds 0/0 of tcp 198.18.0.1:80",
            "new backend 198.18.1.2:8080 masq weight 5 thresholds 0/0 of tcp 198.18.0.1:80",
            "new service udp 198.18.0.2:53 scheduler wrr",
            "new backend 198.18.1.3:8080 masq weight 1 thresholds 0/0 of udp 198.18.0.2:53",
        ]
    );
    assert_eq!(p.created, BTreeSet::from([tcp(1), udp(2)]));
    assert_eq!(p.owned.len(), 2);
    assert!(p.drains.is_empty());
}

#[test]
fn nothing_differs_nothing_written() {
    let d = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1), dest(2, 5)])]);
    let p = plan(&d, &kernel_of(&d), &owning(&d), t(0));
    assert_eq!(p.ops, []);
    assert!(p.created.is_empty());
    assert_eq!(p.owned, owning(&d).services);
}

#[test]
fn one_weight_change_is_one_write() {
    let before = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1), dest(2, 5)])]);
    let after = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1), dest(2, 6)])]);
    let p = plan(&after, &kernel_of(&before), &owning(&before), t(0));
    assert_eq!(p.ops, [Op::SetDest(tcp(1), dest(2, 6))]);
}

#[test]
fn changed_settings_are_one_set_service() {
    let before = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1)])]);
    let mut after = before.clone();
    let s = &mut after.services.get_mut(&tcp(1)).unwrap().service;
    s.flags = ServiceFlags::PERSISTENT;
    s.timeout = 300;
    s.netmask = Netmask::V4("255.255.0.0".parse().unwrap());
    let p = plan(&after, &kernel_of(&before), &owning(&before), t(0));
    assert_eq!(
        p.ops,
        [Op::SetService(after.services[&tcp(1)].service.clone())]
    );
    // Thresholds and forwarding changes are one SET_DEST each.
    let mut after = before.clone();
    let d = after
        .services
        .get_mut(&tcp(1))
        .unwrap()
        .dests
        .get_mut(&id(1))
        .unwrap();
    d.upper_threshold = 10;
    d.forward = ForwardMethod::DirectRoute;
    let p = plan(&after, &kernel_of(&before), &owning(&before), t(0));
    assert_eq!(p.ops.len(), 1);
    assert!(matches!(&p.ops[0], Op::SetDest(k, d) if *k == tcp(1) && d.upper_threshold == 10));
}

#[test]
fn tcp_backend_drains_until_idle_or_timeout() {
    let before = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1), dest(2, 5)])]);
    let after = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1)])]);
    let mut kernel = kernel_of(&before);
    let busy = kernel
        .services
        .get_mut(&tcp(1))
        .unwrap()
        .dests
        .get_mut(&id(2))
        .unwrap();
    busy.active_conns = 1;
    busy.inactive_conns = 4;
    let mut owned = owning(&before);

    // First apply: weight 0, drain recorded now.
    let p = plan(&after, &kernel, &owned, t(10));
    assert_eq!(p.ops, [Op::SetDest(tcp(1), dest(2, 0))]);
    assert_eq!(p.drains, BTreeMap::from([((tcp(1), id(2)), t(10))]));

    // Later, still busy, already at weight 0: nothing to write, the start time is kept.
    owned.drains = p.drains;
    let k2 = kernel
        .services
        .get_mut(&tcp(1))
        .unwrap()
        .dests
        .get_mut(&id(2))
        .unwrap();
    k2.weight = 0;
    let p = plan(&after, &kernel, &owned, t(30));
    assert_eq!(p.ops, []);
    assert_eq!(p.drains, BTreeMap::from([((tcp(1), id(2)), t(10))]));

    // Inactive entries (TIME_WAIT) do not hold a TCP drain: ActiveConn 0 deletes.
    let mut idle = kernel.clone();
    let k3 = idle
        .services
        .get_mut(&tcp(1))
        .unwrap()
        .dests
        .get_mut(&id(2))
        .unwrap();
    k3.active_conns = 0;
    let p = plan(&after, &idle, &owned, t(31));
    assert_eq!(p.ops, [Op::DelDest(tcp(1), id(2))]);
    assert!(p.drains.is_empty());

    // Still busy but the 60 s drain timeout passed since t(10).
    let p = plan(&after, &kernel, &owned, t(69));
    assert_eq!(p.ops, [], "59 s: still draining");
    let p = plan(&after, &kernel, &owned, t(70));
    assert_eq!(p.ops, [Op::DelDest(tcp(1), id(2))]);
}

#[test]
fn idle_tcp_backend_is_deleted_at_once() {
    let before = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1), dest(2, 5)])]);
    let after = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1)])]);
    let p = plan(&after, &kernel_of(&before), &owning(&before), t(0));
    assert_eq!(p.ops, [Op::DelDest(tcp(1), id(2))]);
}

#[test]
fn udp_expire_deletes_at_once_even_with_flows() {
    let before = want(&[(udp(1), UDP_EXPIRE, vec![dest(1, 1), dest(2, 1)])]);
    let after = want(&[(udp(1), UDP_EXPIRE, vec![dest(1, 1)])]);
    let mut kernel = kernel_of(&before);
    let d = kernel
        .services
        .get_mut(&udp(1))
        .unwrap()
        .dests
        .get_mut(&id(2))
        .unwrap();
    d.active_conns = 3;
    d.inactive_conns = 7;
    let p = plan(&after, &kernel, &owning(&before), t(0));
    assert_eq!(p.ops, [Op::DelDest(udp(1), id(2))]);
    assert!(p.drains.is_empty());
}

#[test]
fn udp_keep_drains_until_every_flow_entry_is_gone() {
    let before = want(&[(udp(1), UDP_KEEP, vec![dest(1, 1), dest(2, 1)])]);
    let after = want(&[(udp(1), UDP_KEEP, vec![dest(1, 1)])]);
    let mut kernel = kernel_of(&before);
    let d = kernel
        .services
        .get_mut(&udp(1))
        .unwrap()
        .dests
        .get_mut(&id(2))
        .unwrap();
    d.inactive_conns = 2;
    let p = plan(&after, &kernel, &owning(&before), t(0));
    assert_eq!(p.ops, [Op::SetDest(udp(1), dest(2, 0))]);
    let d = kernel
        .services
        .get_mut(&udp(1))
        .unwrap()
        .dests
        .get_mut(&id(2))
        .unwrap();
    d.inactive_conns = 0;
    let p = plan(&after, &kernel, &owning(&before), t(1));
    assert_eq!(p.ops, [Op::DelDest(udp(1), id(2))]);
}

#[test]
fn removed_service_goes_in_one_write_once_its_backends_may() {
    let before = want(&[
        (tcp(1), TCP_DRAIN, vec![dest(1, 1), dest(2, 5)]),
        (udp(1), UDP_EXPIRE, vec![dest(3, 1)]),
    ]);
    let after = want(&[]);
    let owned = owning(&before);
    let mut kernel = kernel_of(&before);
    // UDP with flows still goes at once; idle TCP too.
    kernel
        .services
        .get_mut(&udp(1))
        .unwrap()
        .dests
        .get_mut(&id(3))
        .unwrap()
        .active_conns = 9;
    let p = plan(&after, &kernel, &owned, t(0));
    assert_eq!(p.ops, [Op::DelService(tcp(1)), Op::DelService(udp(1))]);
    assert!(p.owned.is_empty() && p.drains.is_empty());

    // A busy TCP backend keeps its service: it drains, its idle sibling goes.
    kernel
        .services
        .get_mut(&tcp(1))
        .unwrap()
        .dests
        .get_mut(&id(2))
        .unwrap()
        .active_conns = 1;
    let p = plan(&after, &kernel, &owned, t(0));
    assert_eq!(
        p.ops,
        [
            Op::DelDest(tcp(1), id(1)),
            Op::SetDest(tcp(1), dest(2, 0)),
            Op::DelService(udp(1)),
        ]
    );
    assert_eq!(p.owned.keys().collect::<Vec<_>>(), [&tcp(1)]);
    assert_eq!(
        p.owned[&tcp(1)].removal,
        TCP_DRAIN,
        "keeps its recorded rule"
    );
    assert_eq!(p.drains, BTreeMap::from([((tcp(1), id(2)), t(0))]));
}

#[test]
fn foreign_services_are_never_touched_and_conflicts_are_found() {
    let foreign = want(&[
        (tcp(9), TCP_DRAIN, vec![dest(9, 1)]),
        (tcp(8), TCP_DRAIN, vec![dest(8, 1)]),
    ]);
    let kernel = kernel_of(&foreign);
    // Not declared: not looked at, whatever its backends.
    let p = plan(&want(&[]), &kernel, &Ownership::default(), t(0));
    assert_eq!(p.ops, []);
    assert!(p.owned.is_empty());
    // Declared but not created by vipd: a conflict.
    let d = want(&[
        (tcp(9), TCP_DRAIN, vec![dest(1, 1)]),
        (tcp(1), TCP_DRAIN, vec![]),
    ]);
    assert_eq!(conflicts(&d, &kernel, &Ownership::default()), [tcp(9)]);
    assert_eq!(conflicts(&d, &kernel, &owning(&foreign)), []);
}

#[test]
fn owned_service_deleted_by_hand_is_forgotten_or_recreated() {
    let before = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1)])]);
    let owned = owning(&before);
    let p = plan(&want(&[]), &Snapshot::default(), &owned, t(0));
    assert_eq!(p.ops, []);
    assert!(p.owned.is_empty());
    let p = plan(&before, &Snapshot::default(), &owned, t(0));
    assert_eq!(p.ops.len(), 2);
    assert!(matches!(p.ops[0], Op::NewService(_)));
}

#[test]
fn re_added_backend_stops_draining() {
    let before = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1), dest(2, 0)])]);
    let mut owned = owning(&before);
    owned.drains.insert((tcp(1), id(2)), t(0));
    let after = want(&[(tcp(1), TCP_DRAIN, vec![dest(1, 1), dest(2, 4)])]);
    let p = plan(&after, &kernel_of(&before), &owned, t(5));
    assert_eq!(p.ops, [Op::SetDest(tcp(1), dest(2, 4))]);
    assert!(p.drains.is_empty());
}

#[test]
fn per_service_order_is_add_change_then_leave() {
    let before = want(&[(udp(1), UDP_EXPIRE, vec![dest(1, 1), dest(2, 1)])]);
    let after = want(&[(udp(1), UDP_EXPIRE, vec![dest(2, 2), dest(3, 1)])]);
    let p = plan(&after, &kernel_of(&before), &owning(&before), t(0));
    assert_eq!(
        p.ops,
        [
            Op::NewDest(udp(1), dest(3, 1)),
            Op::SetDest(udp(1), dest(2, 2)),
            Op::DelDest(udp(1), id(1)),
        ]
    );
}
