//! The clients that services with persistence keep on each backend, for `vipd status`
//! and `vipd_backend_sticky_clients`:
//! counted by the plane (reading its affinity map costs a syscall per entry, so at most
//! every [`STICKY_EVERY`]) and kept in each backend's stats.

use std::time::Duration;

use tokio::time::Instant;

use super::Core;
use crate::plane::DataPlane;

/// How often the sticky clients are counted.
pub const STICKY_EVERY: Duration = Duration::from_secs(5);

impl Core {
    /// Counts the sticky clients when due. A service the plane lists gets a count for
    /// every backend (0 for those no client sticks to); any other service gets none.
    pub(super) fn refresh_sticky(&mut self, plane: &mut dyn DataPlane, now: Instant) {
        if now < self.next_sticky {
            return;
        }
        self.next_sticky = now + STICKY_EVERY;
        let Some(counts) = plane.sticky_clients() else {
            return;
        };
        let metrics = self.effects.metrics.clone();
        for (key, s) in &mut self.services.by_key {
            let service = counts.get(key);
            for (backend, stats) in &mut s.stats {
                stats.sticky_clients = service.map(|c| c.get(backend).copied().unwrap_or(0));
                metrics.set_sticky(&s.name, &stats.label, stats.sticky_clients);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::daemon::core::tests::{b, web, web_with, Rig};

    #[tokio::test(start_paused = true)]
    async fn status_shows_the_sticky_clients_the_plane_counts_every_few_seconds() {
        let mut r = Rig::new(&web_with(3));
        r.core.maintain(&mut r.plane, Instant::now());
        assert_eq!(
            r.backend(1).sticky_clients,
            None,
            "the plane counts none yet"
        );

        r.plane.sticky = Some(BTreeMap::from([(
            web(),
            BTreeMap::from([(b(1), 4), (b(3), 1)]),
        )]));
        tokio::time::advance(STICKY_EVERY).await;
        r.core.maintain(&mut r.plane, Instant::now());
        let counts: Vec<Option<u32>> = (1..=3).map(|n| r.backend(n).sticky_clients).collect();
        assert_eq!(counts, [Some(4), Some(0), Some(1)]);
        assert!(
            r.metric(r#"vipd_backend_sticky_clients{service="web",backend="198.18.1.1:8080"} 4"#)
        );

        // Not read again before STICKY_EVERY.
        r.plane.sticky = Some(BTreeMap::from([(web(), BTreeMap::new())]));
        tokio::time::advance(STICKY_EVERY / 2).await;
        r.core.maintain(&mut r.plane, Instant::now());
        assert_eq!(r.backend(1).sticky_clients, Some(4));
        tokio::time::advance(STICKY_EVERY / 2).await;
        r.core.maintain(&mut r.plane, Instant::now());
        assert_eq!(r.backend(1).sticky_clients, Some(0));
        assert!(
            r.metric(r#"vipd_backend_sticky_clients{service="web",backend="198.18.1.1:8080"} 0"#)
        );

        // The service lost its persistence: no count.
        r.plane.sticky = Some(BTreeMap::new());
        tokio::time::advance(STICKY_EVERY).await;
        r.core.maintain(&mut r.plane, Instant::now());
        assert_eq!(r.backend(1).sticky_clients, None);
        assert!(
            !r.metric(r#"vipd_backend_sticky_clients{service="web",backend="198.18.1.1:8080"} 0"#)
        );
    }
}
