//! The operator's commands through the core, on paused time with the fake plane.

use std::{net::SocketAddr, time::Duration, time::SystemTime};

use tokio::time::Instant;

use super::{
    super::admin::Drains,
    fake_plane::FakePlane,
    tests::{b, config, refused, state, web, web_with, Rig},
    OperatorAction, Restored, Target,
};

const SEC: u64 = 1_000_000_000;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(b(n))
}

fn target(r: &Rig, n: u8) -> Target {
    r.core.target("web", addr(n)).unwrap()
}

fn operate(r: &mut Rig, action: OperatorAction, n: u8) -> String {
    let t = target(r, n);
    r.core
        .operate(action, &t, Instant::now(), SystemTime::UNIX_EPOCH)
}

#[tokio::test(start_paused = true)]
async fn unknown_services_and_backends_are_named_with_what_exists() {
    let r = Rig::new(&web_with(2));
    let e = r.core.target("api", addr(1)).unwrap_err();
    assert_eq!(e, "no service \"api\" in vipd.toml (services: web)");
    let e = r.core.target("web", addr(9)).unwrap_err();
    assert_eq!(
        e,
        "198.18.1.9:8080 is not a backend of web (backends: 198.18.1.1:8080, 198.18.1.2:8080)"
    );
    // The key as status prints it names the service too.
    assert_eq!(
        r.core.target("tcp 198.18.0.10:80", addr(1)).unwrap().name,
        "web"
    );
}

#[tokio::test(start_paused = true)]
async fn a_drain_writes_weight_0_at_once_and_holds_across_reloads_until_undrain() {
    let mut r = Rig::new(&web_with(2));
    let m = operate(&mut r, OperatorAction::Drain, 1);
    assert!(m.starts_with("web 198.18.1.1:8080 drained"), "{m}");
    assert!(r.core.take_drains_dirty());
    assert!(r.core.drains().contains("web", addr(1)));
    r.turn(SEC);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    assert_eq!(r.plane.weight(web(), b(2)), Some(Some(10)));
    let v = r.backend(1);
    assert!(v.drained);
    assert!(r.metric("vipd_backend_drained{service=\"web\",backend=\"198.18.1.1:8080\"} 1"));
    assert!(r.metric("vipd_backend_drained{service=\"web\",backend=\"198.18.1.2:8080\"} 0"));
    assert_eq!((v.weight, v.config_weight), (0, 10));
    // Idempotent.
    let again = operate(&mut r, OperatorAction::Drain, 1);
    assert_eq!(again, "web 198.18.1.1:8080 is drained already");
    assert!(!r.core.take_drains_dirty());
    // A reload and a full apply keep it.
    assert!(r.reload(Ok(config(&web_with(3)))));
    r.turn(SEC);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    assert_eq!(r.plane.weight(web(), b(3)), Some(Some(10)));
    // A drained backend does not count as available: failing the other one does not
    // quarantine it (never zero), and there is no panic bringing the drained one back.
    r.core.on_report(&refused(b(2), SEC), Instant::now());
    r.turn(SEC);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    let m = operate(&mut r, OperatorAction::Undrain, 1);
    assert!(m.contains("undrained"), "{m}");
    r.turn(SEC);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(10)));
    assert!(!r.backend(1).drained);
    assert_eq!(
        operate(&mut r, OperatorAction::Undrain, 1),
        "web 198.18.1.1:8080 is not drained"
    );
}

#[tokio::test(start_paused = true)]
async fn drains_come_back_after_a_restart_and_stale_ones_are_dropped() {
    let mut drains = Drains::default();
    drains.add("web", addr(2), 1);
    drains.add("web", addr(7), 1);
    drains.add("gone", addr(1), 1);
    let restored = Restored {
        health: None,
        drains,
    };
    let mut r = Rig::restored(&web_with(2), FakePlane::default(), restored);
    // The first apply already holds it at 0: no flap to full weight.
    assert_eq!(r.plane.weight(web(), b(2)), Some(Some(0)));
    assert!(r.backend(2).drained);
    assert!(r.core.take_drains_dirty(), "stale drains dropped");
    assert!(!r.core.drains().contains("web", addr(7)));
    assert!(!r.core.drains().drained.contains_key("gone"));
    // Never acted on: nothing was written for a backend or service not configured.
    assert_eq!(r.plane.held.len(), 2, "{:?}", r.plane.held);
}

/// A planted health record naming a service and a backend the config does not have:
/// they are listed (and warned of) and never acted on; the configured backend it names
/// is restored, clamped.
#[tokio::test(start_paused = true)]
async fn a_planted_health_record_acts_only_on_configured_backends() {
    let far = 4_000_000_000_000u64;
    let web_key = web().to_string();
    let text = format!(
        r#"{{"version": 1, "services": {{
        "tcp 198.18.0.99:80": {{"backends": [{{"address": "198.18.1.1", "port": 8080,
            "state": "quarantined", "quarantined_until_ms": {far}}}]}},
        "{web_key}": {{"backends": [
            {{"address": "198.18.1.1", "port": 8080, "state": "quarantined", "quarantined_until_ms": {far}}},
            {{"address": "198.18.1.9", "port": 8080, "state": "quarantined", "quarantined_until_ms": {far}}}]}}
        }}}}"#
    );
    let health =
        crate::daemon::persist::from_json(std::path::Path::new("health.json"), &text).unwrap();
    let unmatched = health.unmatched(&config(&web_with(3)));
    assert_eq!(
        unmatched,
        [
            "backend 198.18.1.9:8080 of service tcp 198.18.0.10:80".to_owned(),
            "service tcp 198.18.0.99:80".to_owned(),
        ],
    );
    let restored = Restored {
        health: Some(health),
        drains: Drains::default(),
    };
    let mut r = Rig::restored(&web_with(3), FakePlane::default(), restored);
    // Only the three configured backends are in the plane; b1 restored quarantined.
    assert_eq!(r.plane.held.len(), 3, "{:?}", r.plane.held);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    assert_eq!(r.plane.weight(web(), b(9)), None);
    assert_eq!(r.state(1).0, "quarantined");
    assert_eq!(r.state(2), state("healthy", 10));
}

#[tokio::test(start_paused = true)]
async fn a_forced_quarantine_and_a_readmit_go_through_the_health_machine() {
    let mut r = Rig::new(&web_with(3));
    // Longer than max_ejection (5m by default): refused, a drain is the tool for that.
    let long = OperatorAction::Quarantine(Some(Duration::from_secs(600)));
    let e = r.core.allowed(long, &target(&r, 1)).unwrap_err();
    assert!(e.contains("at most the service's max_ejection (5m)"), "{e}");
    let four = OperatorAction::Quarantine(Some(Duration::from_secs(240)));
    assert_eq!(r.core.allowed(four, &target(&r, 1)), Ok(()));
    let m = operate(&mut r, four, 1);
    assert!(
        m.starts_with("web 198.18.1.1:8080 quarantined for 4m"),
        "{m}"
    );
    r.turn(SEC);
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(0)));
    assert_eq!(r.state(1), state("quarantined", 0));
    assert!(r.metric(
        "vipd_quarantines_total{service=\"web\",backend=\"198.18.1.1:8080\",cause=\"operator\"} 1"
    ));
    // A forced quarantine measures no fault-to-quarantine time.
    assert!(r.turn(SEC).is_empty());
    let m = operate(&mut r, OperatorAction::Quarantine(None), 1);
    assert!(m.contains("already quarantined (4m left)"), "{m}");
    let m = operate(&mut r, OperatorAction::Readmit, 1);
    assert_eq!(m, "web 198.18.1.1:8080 re-admitted");
    r.turn(SEC);
    assert_eq!(r.state(1), state("slow-start", 1));
    assert_eq!(r.plane.weight(web(), b(1)), Some(Some(1)));
    let m = operate(&mut r, OperatorAction::Readmit, 2);
    assert_eq!(m, "web 198.18.1.2:8080 is in rotation already (healthy)");
}
