//! A service's weighted selection as the kernel programs read it
//! ([`vipd_common::sock::SockService`]): the backends with weight above 0, in ascending
//! id order (the programs binary-search it), with their cumulative weights. Pure, so that what an apply would write can be
//! compared with what the map holds.

use vipd_common::sock::{SockService, SOCK_MAX_BACKENDS};

use super::SockError;

/// The selection of service `service_id` over `members` (backend id, weight), in
/// ascending id order; backends with weight 0 are left out (they take no new sockets).
pub fn selection(service_id: u32, members: &[(u32, u32)]) -> Result<SockService, SockError> {
    let mut members = members.to_vec();
    members.sort_unstable();
    let mut s = SockService {
        service_id,
        ..SockService::default()
    };
    let mut n = 0usize;
    let mut total: u32 = 0;
    for &(id, weight) in members.iter().filter(|(_, w)| *w > 0) {
        if n == SOCK_MAX_BACKENDS {
            return Err(SockError::Limit(format!(
                "more than {SOCK_MAX_BACKENDS} backends with weight in one service"
            )));
        }
        total = total
            .checked_add(weight)
            .ok_or_else(|| SockError::Limit("a service's weights add up past 2^32".into()))?;
        s.ids[n] = id;
        s.cum[n] = total;
        n += 1;
    }
    s.count = n as u32;
    s.total = total;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_become_cumulative_stretches_without_the_zero_ones() {
        let s = selection(7, &[(1, 3), (2, 0), (3, 1)]).unwrap();
        assert_eq!((s.service_id, s.count, s.total), (7, 2, 4));
        assert_eq!(&s.ids[..2], &[1, 3]);
        assert_eq!(&s.cum[..2], &[3, 4]);
        // Draws 0..3 land on backend 1, draw 3 on backend 3.
        let picks: Vec<u32> = (0..4).map(|r| s.ids[s.pick(r)]).collect();
        assert_eq!(picks, vec![1, 1, 1, 3]);
    }

    #[test]
    fn every_draw_lands_in_proportion_to_the_weights() {
        let members: Vec<(u32, u32)> = (1..=200).map(|i| (i, i % 7 + 1)).collect();
        let s = selection(1, &members).unwrap();
        let mut hits = std::collections::BTreeMap::new();
        for r in 0..s.total {
            *hits.entry(s.ids[s.pick(r)]).or_insert(0u32) += 1;
        }
        for (id, w) in members {
            assert_eq!(hits[&id], w, "backend {id}");
        }
    }

    #[test]
    fn ids_ascend_whatever_order_they_come_in() {
        let s = selection(1, &[(9, 1), (2, 5), (4, 0), (3, 1)]).unwrap();
        assert_eq!(&s.ids[..3], &[2, 3, 9]);
        assert_eq!(&s.cum[..3], &[5, 6, 7]);
        assert!(s.has(9) && s.has(2) && !s.has(4) && !s.has(1));
    }

    #[test]
    fn an_empty_or_all_zero_service_selects_nothing() {
        let s = selection(1, &[(1, 0)]).unwrap();
        assert_eq!((s.count, s.total), (0, 0));
    }

    #[test]
    fn too_many_backends_is_an_error_naming_the_limit() {
        let members: Vec<(u32, u32)> = (1..=257).map(|i| (i, 1)).collect();
        let e = selection(1, &members).unwrap_err();
        assert!(e.to_string().contains("more than 256"), "{e}");
    }
}
