//! How many clients of each service with persistence stick to each backend now, from
//! `SOCK_AFFINITY`: the entries the connect hook would still honour (holding a TCP
//! connection open or used within the service's timeout, naming a backend id whose `gen` is still the one chosen and that
//! is still in the service's selection), counted per service and backend. An entry past
//! its time stays in the map until its client comes back or the LRU map evicts it; it
//! is not counted, as the hook would not follow it.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
};

use vipd_common::{
    sock::{SockAffinity, SockAffinityKey, SockBackend, SockService},
    VipKey,
};

use crate::model::kernel::socket_addr;

const NS_PER_S: u64 = 1_000_000_000;

/// Clients of one service that stick to one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StickyClients {
    pub vip: VipKey,
    pub backend: SocketAddr,
    pub clients: u32,
}

/// Counts `entries` as the connect hook would honour them at `now_ns` (the kernel's
/// monotonic clock, as `bpf_ktime_get_ns`), against the selections `services` and the
/// backends `backends` (by id) that the maps hold. Ordered by VIP, then backend.
pub fn count(
    entries: &[(SockAffinityKey, SockAffinity)],
    services: &BTreeMap<VipKey, SockService>,
    backends: &BTreeMap<u32, SockBackend>,
    now_ns: u64,
) -> Vec<StickyClients> {
    let by_id: HashMap<u32, (&VipKey, &SockService)> = services
        .iter()
        .filter(|(_, s)| s.affinity_s > 0)
        .map(|(k, s)| (s.service_id, (k, s)))
        .collect();
    let mut counts: BTreeMap<(VipKey, SocketAddr), u32> = BTreeMap::new();
    for (client, a) in entries {
        let Some((vip, svc)) = by_id.get(&client.service_id) else {
            continue;
        };
        if !a.holds(now_ns, u64::from(svc.affinity_s) * NS_PER_S) {
            continue;
        }
        let Some(b) = backends.get(&a.backend_id) else {
            continue;
        };
        if b.gen != a.gen || !svc.has(a.backend_id) {
            continue;
        }
        let Ok(addr) = socket_addr(b.family, &b.addr, b.port) else {
            continue;
        };
        *counts.entry((**vip, addr)).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((vip, backend), clients)| StickyClients {
            vip,
            backend,
            clients,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::kernel::vip_key,
        sockplane::{dataplane::backend_entry, selection::selection},
    };

    const NOW: u64 = 1_000 * NS_PER_S;

    fn backend(addr: &str, gen: u32) -> SockBackend {
        backend_entry(addr.parse().unwrap(), gen)
    }

    fn entry(
        service_id: u32,
        netns: u64,
        backend_id: u32,
        gen: u32,
        ago_s: u64,
    ) -> (SockAffinityKey, SockAffinity) {
        (
            SockAffinityKey {
                netns,
                service_id,
                ..Default::default()
            },
            SockAffinity {
                last_ns: NOW - ago_s * NS_PER_S,
                backend_id,
                gen,
                ..Default::default()
            },
        )
    }

    /// One TCP service (id 7, timeout 300 s) over backends 1 and 2 (both in its
    /// selection) and backend 3 (at weight 0, out of it).
    fn setup() -> (
        VipKey,
        BTreeMap<VipKey, SockService>,
        BTreeMap<u32, SockBackend>,
    ) {
        let vip = vip_key("198.18.0.10:80".parse().unwrap(), 6);
        let mut svc = selection(7, &[(1, 1), (2, 1), (3, 0)]).unwrap();
        svc.affinity_s = 300;
        let backends = BTreeMap::from([
            (1, backend("10.0.0.1:80", 11)),
            (2, backend("10.0.0.2:80", 12)),
            (3, backend("10.0.0.3:80", 13)),
        ]);
        (vip, BTreeMap::from([(vip, svc)]), backends)
    }

    #[test]
    fn counts_the_entries_the_connect_hook_would_follow() {
        let (vip, services, backends) = setup();
        let entries = [
            entry(7, 1, 1, 11, 10),
            entry(7, 2, 1, 11, 299),
            entry(7, 3, 2, 12, 0),
            // Past the timeout.
            entry(7, 4, 2, 12, 301),
            // An earlier holder of backend 1's id.
            entry(7, 5, 1, 10, 1),
            // A backend out of the selection: the next connect chooses afresh.
            entry(7, 6, 3, 13, 1),
            // Another service's (not in the maps any more).
            entry(8, 7, 1, 11, 1),
        ];
        let got = count(&entries, &services, &backends, NOW);
        let want = vec![
            StickyClients {
                vip,
                backend: "10.0.0.1:80".parse().unwrap(),
                clients: 2,
            },
            StickyClients {
                vip,
                backend: "10.0.0.2:80".parse().unwrap(),
                clients: 1,
            },
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_service_without_persistence_has_no_sticky_clients() {
        let (_, mut services, backends) = setup();
        for s in services.values_mut() {
            s.affinity_s = 0;
        }
        assert!(count(&[entry(7, 1, 1, 11, 1)], &services, &backends, NOW).is_empty());
    }

    #[test]
    fn an_entry_holding_a_connection_open_counts_past_its_timeout() {
        let (_, services, backends) = setup();
        let (k, mut a) = entry(7, 1, 1, 11, 600);
        assert!(count(&[(k, a)], &services, &backends, NOW).is_empty());
        a.open = 2;
        assert_eq!(count(&[(k, a)], &services, &backends, NOW)[0].clients, 1);
        // A count raced below zero is none.
        a.open = u32::MAX;
        assert!(count(&[(k, a)], &services, &backends, NOW).is_empty());
    }

    #[test]
    fn an_entry_used_after_the_clock_was_read_counts() {
        let (_, services, backends) = setup();
        let (k, mut a) = entry(7, 1, 1, 11, 0);
        a.last_ns = NOW + NS_PER_S;
        assert_eq!(count(&[(k, a)], &services, &backends, NOW)[0].clients, 1);
    }
}
