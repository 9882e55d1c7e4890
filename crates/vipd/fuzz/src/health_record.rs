//! The health record, `health.json` ([`persist::from_json`]), and each service's state
//! restored from it ([`ServiceHealth::from_persisted`]), which must bound what the
//! record claims whatever it claims. What the record parser accepts comes back the same
//! through the JSON it writes.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::time::Instant;
use vipd::{
    daemon::persist::{self, HealthRecord},
    health::{PersistedService, Policy, ServiceHealth},
};

pub fn run(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let path = Path::new("health.json");
    let record = match persist::from_json(path, text) {
        Ok(r) => r,
        Err(e) => return assert!(e.to_string().starts_with("health.json: ")),
    };
    let written = serde_json::to_string_pretty(&record).expect("a record serializes");
    let again = persist::from_json(path, &written).expect("a written record reads back");
    assert_eq!(again.services, record.services);
    restore_all(&record);
}

/// Restores every service, with its own backends configured, under two policies.
fn restore_all(record: &HealthRecord) {
    let now = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let short = Policy {
        probe: false,
        slow_start: Duration::from_secs(1),
        ..Policy::default()
    };
    for saved in record.services.values() {
        for policy in [Policy::default(), short.clone()] {
            restore(saved, policy, now, wall);
        }
    }
}

fn restore(saved: &PersistedService, policy: Policy, now: Instant, wall: SystemTime) {
    let backends: Vec<_> = saved.backends.iter().map(|b| (b.dest(), 100)).collect();
    let max_ejection = policy.max_ejection;
    let mut s = ServiceHealth::from_persisted(policy, &backends, saved, now, wall, 1);
    for (dest, weight) in s.weights(now) {
        assert!(weight <= 100, "{dest:?} weight {weight}");
    }
    for view in s.views(now) {
        if let Some(left) = view.quarantine_left {
            assert!(left <= max_ejection, "{view:?}");
        }
    }
    if let Some(deadline) = s.next_deadline() {
        assert!(
            deadline <= now + max_ejection,
            "a deadline beyond the longest ejection"
        );
    }
    s.tick(now);
    let resaved = s.to_persisted(now, wall);
    serde_json::to_string(&resaved).expect("a service's health serializes");
}
