//! Assertions on where IPVS sent a series of flows. Every failure message shows the
//! observed picks (backend indexes in the order the flows were sent) and the counts.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use super::packet::Forwarded;

/// The backend (index into `backends`) each packet went to; panics on any other address.
pub fn picks(backends: &[IpAddr], forwarded: &[Forwarded]) -> Vec<usize> {
    forwarded
        .iter()
        .map(|f| {
            backends
                .iter()
                .position(|b| *b == f.to)
                .unwrap_or_else(|| panic!("{f:?} went to no backend of {backends:?}"))
        })
        .collect()
}

/// How many picks each of `n` backends got.
pub fn counts(picks: &[usize], n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    for &p in picks {
        c[p] += 1;
    }
    c
}

/// "picks [0, 1, 2, ...], counts [4, 4, 4]".
pub fn describe(picks: &[usize], n: usize) -> String {
    format!("picks {picks:?}, counts {:?}", counts(picks, n))
}

/// Weighted rotation: every run of `weights.sum()` consecutive picks holds backend `i`
/// exactly `weights[i]` times (wherever the rotation started), and `picks` covers whole
/// cycles. With all weights 1 this is strict round robin.
pub fn assert_cycles(what: &str, picks: &[usize], weights: &[usize]) {
    let cycle: usize = weights.iter().sum();
    let n = weights.len();
    assert!(
        picks.len() >= cycle && picks.len().is_multiple_of(cycle),
        "{what}: {} picks is not a whole number of cycles of {cycle}",
        picks.len()
    );
    for (start, window) in picks.windows(cycle).enumerate() {
        assert_eq!(
            counts(window, n),
            weights,
            "{what}: picks {start}..{} are not one cycle of weights {weights:?}; {}",
            start + cycle,
            describe(picks, n)
        );
    }
}

/// The backends each key's flows went to.
pub fn by_key<K: Ord>(pairs: impl IntoIterator<Item = (K, usize)>) -> BTreeMap<K, BTreeSet<usize>> {
    let mut map: BTreeMap<K, BTreeSet<usize>> = BTreeMap::new();
    for (k, b) in pairs {
        map.entry(k).or_default().insert(b);
    }
    map
}

/// Asserts that `again` (the same flows sent once more) went exactly where `first` did.
pub fn assert_same(what: &str, first: &[usize], again: &[usize], n: usize) {
    assert_eq!(
        first,
        again,
        "{what}: the same flows sent again went elsewhere; first {}; again {}",
        describe(first, n),
        describe(again, n)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_accept_any_starting_point() {
        assert_cycles("rr", &[1, 2, 0, 1, 2, 0], &[1, 1, 1]);
        // wrr 3:2:1 as IPVS runs it: A, A B, A B C.
        assert_cycles("wrr", &[0, 0, 1, 0, 1, 2, 0, 0, 1, 0, 1, 2], &[3, 2, 1]);
        assert_cycles("wrr", &[1, 0, 1, 2, 0, 0, 1, 0, 1, 2, 0, 0], &[3, 2, 1]);
    }

    #[test]
    #[should_panic(expected = "picks 1..4 are not one cycle")]
    fn a_skipped_backend_fails_with_the_picks() {
        assert_cycles("rr", &[0, 1, 2, 1, 2, 0], &[1, 1, 1]);
    }

    #[test]
    #[should_panic(expected = "not a whole number of cycles")]
    fn a_partial_cycle_proves_nothing() {
        assert_cycles("wrr", &[0, 0, 1], &[3, 2, 1]);
    }

    #[test]
    fn keys_collect_their_backends() {
        let m = by_key([("a", 0), ("b", 1), ("a", 0), ("b", 2)]);
        assert_eq!(m["a"], BTreeSet::from([0]));
        assert_eq!(m["b"], BTreeSet::from([1, 2]));
    }
}
