//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights: the lookup table
//! the XDP program indexes with a flow's hash.
//!
//! Each backend has a permutation of the `m` table entries, from two hashes of its
//! identity (address and port, not its position in the config): `offset = h1 % m`,
//! `skip = h2 % (m - 1) + 1`, entry j = `(offset + j * skip) % m`; `m` is prime, so every
//! permutation visits every entry. Backends take turns claiming their next free entry
//! until the table is full. With weights, each turn adds the backend's weight to its
//! credit and it claims one entry per `max weight` of credit, so the shares follow the
//! weights. Because a backend's permutation depends only on itself, removing one of N
//! backends moves about 1/N of the entries (its own) plus a little; adding one takes
//! about 1/(N+1). Weight 0 means no entry at all.

/// A backend as Maglev sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// What the table's entries hold (the XDP backend id).
    pub id: u32,
    /// A stable identity; [`identity`] derives it from the backend's address.
    pub identity: u64,
    pub weight: u32,
}

/// The entry value for "no backend".
pub const EMPTY: u32 = vipd_common::xdp::NO_BACKEND;

/// A stable 64-bit hash (FNV-1a, then splitmix64's finaliser): the same bytes give the
/// same value in every build and on every host, so a restart computes the same table.
pub fn stable_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The identity of a backend at `addr`.
pub fn identity(addr: std::net::SocketAddr) -> u64 {
    stable_hash(addr.to_string().as_bytes(), 0)
}

/// Builds the table of `m` entries (`m` prime). Members with weight 0 get no entry; with
/// none left every entry is [`EMPTY`].
pub fn table(members: &[Member], m: u32) -> Vec<u32> {
    let m_us = m as usize;
    let mut entries = vec![EMPTY; m_us];
    let mut live: Vec<&Member> = members.iter().filter(|b| b.weight > 0).collect();
    // Turns go in identity order, so the table does not depend on the config's order.
    live.sort_by_key(|b| (b.identity, b.id));
    let Some(max_weight) = live.iter().map(|b| u64::from(b.weight)).max() else {
        return entries;
    };
    let perm: Vec<(u64, u64)> = live
        .iter()
        .map(|b| {
            let offset = stable_hash(&b.identity.to_le_bytes(), 0xa5a5) % u64::from(m);
            let skip = stable_hash(&b.identity.to_le_bytes(), 0x5a5a) % u64::from(m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; live.len()];
    let mut credit = vec![0u64; live.len()];
    let mut filled = 0usize;
    while filled < m_us {
        for (i, b) in live.iter().enumerate() {
            credit[i] += u64::from(b.weight);
            if credit[i] < max_weight {
                continue;
            }
            credit[i] -= max_weight;
            let (offset, skip) = perm[i];
            loop {
                let c = ((offset + next[i] * skip) % u64::from(m)) as usize;
                next[i] += 1;
                if entries[c] == EMPTY {
                    entries[c] = b.id;
                    filled += 1;
                    break;
                }
            }
            if filled == m_us {
                break;
            }
        }
    }
    entries
}

/// The share of entries that differ between two tables of the same size.
pub fn moved_fraction(before: &[u32], after: &[u32]) -> f64 {
    let moved = before.iter().zip(after).filter(|(a, b)| a != b).count();
    moved as f64 / before.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use vipd_common::xdp::MAGLEV_M;

    fn members(weights: &[u32]) -> Vec<Member> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Member {
                id: i as u32,
                identity: identity(format!("198.18.2.{}:80", i + 10).parse().unwrap()),
                weight: w,
            })
            .collect()
    }

    fn shares(t: &[u32], n: usize) -> Vec<f64> {
        (0..n as u32)
            .map(|id| t.iter().filter(|&&e| e == id).count() as f64 / t.len() as f64)
            .collect()
    }

    #[test]
    fn equal_weights_give_equal_shares() {
        let t = table(&members(&[1; 5]), MAGLEV_M);
        assert!(t.iter().all(|&e| e != EMPTY));
        for s in shares(&t, 5) {
            assert!((s - 0.2).abs() < 0.005, "share {s}");
        }
    }

    #[test]
    fn shares_follow_weights() {
        let w = [1, 2, 3, 10, 0];
        let t = table(&members(&w), MAGLEV_M);
        let total: u32 = w.iter().sum();
        for (i, s) in shares(&t, w.len()).into_iter().enumerate() {
            let want = f64::from(w[i]) / f64::from(total);
            assert!(
                (s - want).abs() < 0.005,
                "backend {i}: share {s}, weight share {want}"
            );
        }
        assert_eq!(shares(&t, 5)[4], 0.0, "weight 0 gets no entry");
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        for n in [3usize, 5, 10] {
            let all = members(&vec![1; n]);
            let before = table(&all, MAGLEV_M);
            let after = table(&all[1..], MAGLEV_M);
            let moved = moved_fraction(&before, &after);
            let ideal = 1.0 / n as f64;
            assert!(moved >= ideal - 0.001, "n={n}: moved {moved} < 1/n");
            assert!(moved < ideal * 1.15, "n={n}: moved {moved}, ideal {ideal}");
            // Every entry of the removed backend moved; the rest mostly stayed.
            let others_moved = before
                .iter()
                .zip(&after)
                .filter(|(a, b)| **a != 0 && a != b)
                .count() as f64
                / before.len() as f64;
            assert!(
                others_moved < 0.1 * ideal,
                "n={n}: {others_moved} of others moved"
            );
        }
    }

    #[test]
    fn tables_do_not_depend_on_member_order() {
        let a = members(&[1, 2, 1, 1]);
        let mut b = a.clone();
        b.reverse();
        assert_eq!(table(&a, MAGLEV_M), table(&b, MAGLEV_M));
    }

    #[test]
    fn no_weight_no_entries() {
        assert!(table(&members(&[0, 0]), 7).iter().all(|&e| e == EMPTY));
        assert!(table(&[], 7).iter().all(|&e| e == EMPTY));
    }
}
