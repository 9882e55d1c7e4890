//! Pinned maps an earlier vipd left behind may not have the layout this vipd's programs
//! use (an upgrade changed a value type, or the map sizes). aya reuses a pinned map
//! whatever its layout, so before loading, each pinned map is compared with what this
//! vipd would create: one that differs is removed, if provably vipd's (see
//! [`super::pins::is_our_map`]), and created afresh by the load (its entries are lost:
//! services are written again by the first apply, socket translations and client
//! affinities start over); one that differs and is not provably vipd's stops the start
//! with an error naming it.

use std::{mem::size_of, os::fd::AsFd, path::Path};

use vipd_common::{
    sock::{
        SockAffinity, SockAffinityKey, SockBackend, SockPeer, SockPeerKey, SockService,
        SockStickyConn, SockUdpFlowKey, SockUdpSent,
    },
    VipKey,
};

use super::{
    link::{map_layout, obj_get, MapLayout},
    loader::{Sizes, PINNED_MAPS},
    pins::is_our_map,
    SockError,
};

/// `BPF_MAP_TYPE_HASH`, `_ARRAY`, `_LRU_HASH` (linux/bpf.h).
const HASH: u32 = 1;
const ARRAY: u32 = 2;
const LRU_HASH: u32 = 9;

fn layout<K, V>(map_type: u32, max_entries: u32) -> MapLayout {
    MapLayout {
        map_type,
        key_size: size_of::<K>() as u32,
        value_size: size_of::<V>() as u32,
        max_entries,
        map_flags: 0,
    }
}

/// The layout this vipd gives pinned map `name` at `sizes`.
pub fn expected(name: &str, sizes: Sizes) -> Option<MapLayout> {
    Some(match name {
        "SOCK_SERVICES" => layout::<VipKey, SockService>(HASH, sizes.services),
        "SOCK_BACKENDS" => layout::<u32, SockBackend>(ARRAY, sizes.backends),
        "SOCK_PEERS" => layout::<SockPeerKey, SockPeer>(LRU_HASH, sizes.peers),
        "SOCK_AFFINITY" => layout::<SockAffinityKey, SockAffinity>(LRU_HASH, sizes.affinity),
        "SOCK_STICKY_TCP" => layout::<u64, SockStickyConn>(LRU_HASH, sizes.peers),
        "SOCK_UDP_FLOWS" => layout::<SockUdpFlowKey, SockPeer>(LRU_HASH, sizes.peers),
        "SOCK_UDP_SENT" => layout::<u64, SockUdpSent>(LRU_HASH, sizes.peers),
        _ => return None,
    })
}

/// How `found` differs from `want` (flags are not compared), if it does.
pub fn difference(found: &MapLayout, want: &MapLayout) -> Option<String> {
    let mut d = Vec::new();
    let mut cmp = |what: &str, f: u32, w: u32| {
        if f != w {
            d.push(format!("{what} {f}, expected {w}"));
        }
    };
    cmp("type", found.map_type, want.map_type);
    cmp("key size", found.key_size, want.key_size);
    cmp("value size", found.value_size, want.value_size);
    cmp("max entries", found.max_entries, want.max_entries);
    (!d.is_empty()).then(|| d.join(", "))
}

/// A pinned map that was removed to be created afresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recreated {
    pub map: &'static str,
    /// How the old one differed.
    pub why: String,
}

/// Removes the pinned maps in `dir` whose layout is not what this vipd creates at
/// `sizes`, so that the load creates them afresh; see the module doc.
pub fn remove_stale(dir: &Path, sizes: Sizes) -> Result<Vec<Recreated>, SockError> {
    let mut out = Vec::new();
    for name in PINNED_MAPS {
        let pin = dir.join(name);
        if !pin.exists() {
            continue;
        }
        let Some(want) = expected(name, sizes) else {
            continue;
        };
        let what = format!("reading the pinned map {}", pin.display());
        let fd = obj_get(&pin).map_err(SockError::io(what.clone()))?;
        let found = map_layout(fd.as_fd()).map_err(SockError::io(what))?;
        let Some(why) = difference(&found, &want) else {
            continue;
        };
        if !is_our_map(&pin, name) {
            return Err(SockError::Limit(format!(
                "{} is not the socket data plane's map {name} and has another layout ({why}): remove it (or pin elsewhere)",
                pin.display()
            )));
        }
        std::fs::remove_file(&pin).map_err(SockError::io(format!("removing {}", pin.display())))?;
        out.push(Recreated { map: name, why });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_map_has_an_expected_layout() {
        for name in PINNED_MAPS {
            assert!(expected(name, Sizes::default()).is_some(), "{name}");
        }
    }

    #[test]
    fn a_changed_value_size_is_a_difference_that_names_it() {
        let want = expected("SOCK_SERVICES", Sizes::default()).unwrap();
        assert_eq!(difference(&want, &want), None);
        // The service value before persistence: 16 bytes of header, not 32.
        let old = MapLayout {
            value_size: want.value_size - 16,
            map_flags: 1,
            ..want
        };
        assert_eq!(
            difference(&old, &want).as_deref(),
            Some("value size 2064, expected 2080")
        );
        let smaller = MapLayout {
            max_entries: 16,
            map_type: ARRAY,
            ..want
        };
        assert_eq!(
            difference(&smaller, &want).as_deref(),
            Some("type 2, expected 1, max entries 16, expected 4096")
        );
    }
}
