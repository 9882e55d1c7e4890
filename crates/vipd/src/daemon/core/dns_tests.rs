//! DNS results in the core: a changed set is applied like a reload, kept backends keep
//! their health, new ones ramp up through slow start, removed ones leave; results are
//! counted.

use std::{collections::BTreeMap, net::SocketAddr, time::SystemTime};

use tokio::time::Instant;

use super::tests::{b, config, refused, state, web, Rig};
use crate::{
    daemon::core::tests::SEC,
    dns::{self, tracker::Change, DnsEvent, NameKey, Resolved, ResultKind},
};

const WEB: &str = r#"
[[service]]
name = "web"
vip = "198.18.0.10:80"
backend = [{ address = "198.18.1.1:8080", weight = 10 }, { dns = "web.lab", port = 8080, weight = 10 }]
  [service.health]
  slow_start = "10s"
"#;

fn set(ns: &[u8]) -> Vec<Resolved> {
    ns.iter()
        .map(|n| Resolved {
            addr: SocketAddr::from(b(*n)),
            weight: 10,
        })
        .collect()
}

/// A result for web.lab that takes its backends from `before` to `after`.
fn event(
    before: &[u8],
    after: &[u8],
    result: ResultKind,
) -> (DnsEvent, BTreeMap<NameKey, Vec<Resolved>>) {
    let cfg = config(WEB);
    let key = NameKey {
        service: "web".into(),
        backend: cfg.services[0].dns[0].clone(),
    };
    let sets = BTreeMap::from([(key.clone(), set(after))]);
    let change = (before != after).then(|| Change {
        key: key.clone(),
        before: set(before),
        after: set(after),
    });
    let e = DnsEvent {
        key,
        result,
        change,
        view: dns::NameView {
            service: "web".into(),
            kind: "dns".into(),
            name: "web.lab".into(),
            answer: set(after).iter().map(|r| r.addr.to_string()).collect(),
            ..Default::default()
        },
    };
    (e, sets)
}

fn feed(r: &mut Rig, before: &[u8], after: &[u8], result: ResultKind) {
    let (e, sets) = event(before, after, result);
    let expanded = e.change.as_ref().map(|_| dns::expand(&config(WEB), &sets));
    r.core.on_dns(
        std::slice::from_ref(&e),
        expanded,
        &mut r.plane,
        Instant::now(),
        SystemTime::UNIX_EPOCH,
    );
}

#[tokio::test(start_paused = true)]
async fn a_changed_set_is_applied_keeping_health_and_ramping_new_backends() {
    let mut r = Rig::new(WEB);
    assert_eq!(r.plane.weight(web(), b(2)), None, "not resolved yet");

    // The first answer: b2, b3 join a service that has b1, so they ramp up.
    feed(&mut r, &[], &[2, 3], ResultKind::Ok);
    r.turn(SEC);
    let (s2, w2) = r.state(2);
    assert_eq!(s2, "slow-start");
    assert!(w2 < 10, "{w2}");
    assert_eq!(r.plane.weight(web(), b(2)), Some(Some(w2)));
    assert!(
        r.metric("vipd_dns_resolutions_total{service=\"web\",name=\"web.lab\",result=\"ok\"} 1")
    );

    // Half-way through the ramp the record changes: b2 leaves, b4 comes; b3 keeps its
    // ramp (it does not start over).
    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    r.turn(SEC);
    r.core.on_report(&refused(b(1), SEC), Instant::now());
    r.turn(SEC);
    assert_eq!(r.state(1), state("quarantined", 0));
    let (_, w3_before) = r.state(3);
    let applies = r.plane.calls("apply");
    feed(&mut r, &[2, 3], &[3, 4], ResultKind::Ok);
    r.turn(SEC);
    assert_eq!(r.plane.calls("apply"), applies + 1);
    assert_eq!(r.plane.weight(web(), b(2)), None, "b2 removed");
    assert_eq!(
        r.state(1),
        state("quarantined", 0),
        "b1 keeps its quarantine"
    );
    let (s3, w3) = r.state(3);
    assert_eq!(s3, "slow-start");
    assert!(w3 >= w3_before, "b3's ramp went on: {w3_before} -> {w3}");
    let (s4, w4) = r.state(4);
    assert_eq!(s4, "slow-start");
    assert!(w4 < w3, "b4 starts its ramp: {w4} vs b3 {w3}");

    // A failure changes nothing and writes nothing; it is counted, and the set is
    // marked stale.
    let applies = r.plane.calls("apply");
    let (e, _) = event(&[3, 4], &[3, 4], ResultKind::Failed);
    r.core.on_dns(
        std::slice::from_ref(&e),
        None,
        &mut r.plane,
        Instant::now(),
        SystemTime::UNIX_EPOCH,
    );
    assert_eq!(r.plane.calls("apply"), applies);
    assert!(r.metric(
        "vipd_dns_resolutions_total{service=\"web\",name=\"web.lab\",result=\"failed\"} 1"
    ));
    assert!(r.metric("vipd_dns_stale{service=\"web\",name=\"web.lab\"} 1"));
}

#[tokio::test(start_paused = true)]
async fn the_first_backends_of_an_empty_service_take_traffic_at_once() {
    let text = WEB.replace("{ address = \"198.18.1.1:8080\", weight = 10 }, ", "");
    let mut r = Rig::new(&text);
    let (e, sets) = event(&[], &[2], ResultKind::Ok);
    let expanded = dns::expand(&config(&text), &sets);
    r.core.on_dns(
        std::slice::from_ref(&e),
        Some(expanded),
        &mut r.plane,
        Instant::now(),
        SystemTime::UNIX_EPOCH,
    );
    r.turn(SEC);
    assert_eq!(r.state(2), state("healthy", 10));
}

#[tokio::test(start_paused = true)]
async fn a_batch_of_results_is_applied_once() {
    let mut r = Rig::new(WEB);
    let applies = r.plane.calls("apply");
    let (first, _) = event(&[], &[2], ResultKind::Ok);
    let (second, sets) = event(&[2], &[2, 3], ResultKind::Ok);
    let (third, _) = event(&[2, 3], &[2, 3], ResultKind::Failed);
    let expanded = dns::expand(&config(WEB), &sets);
    r.core.on_dns(
        &[first, second, third],
        Some(expanded),
        &mut r.plane,
        Instant::now(),
        SystemTime::UNIX_EPOCH,
    );
    r.turn(SEC);
    assert_eq!(
        r.plane.calls("apply"),
        applies + 1,
        "one apply for the batch"
    );
    assert!(r.plane.weight(web(), b(3)).is_some());
    assert!(
        r.metric("vipd_dns_resolutions_total{service=\"web\",name=\"web.lab\",result=\"ok\"} 2")
    );
}
