//! What a running socket plane holds of UDP sockets, read from its pinned maps: how many
//! translations of UDP sockets (`SOCK_PEERS` records whose protocol is UDP), flows
//! (`SOCK_UDP_FLOWS`) and last VIPs of unconnected sockets (`SOCK_UDP_SENT`). One
//! syscall per entry: for tests.

use std::path::Path;

use aya::maps::{HashMap, Map, MapData};
use vipd_common::{
    sock::{SockPeer, SockPeerKey, SockUdpFlowKey, SockUdpSent},
    IPPROTO_UDP,
};

/// Counts of the UDP records in a socket plane's maps (`default()`: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpRecords {
    pub translations: usize,
    pub flows: usize,
    pub sent: usize,
}

fn open<K: aya::Pod, V: aya::Pod>(pins: &Path, name: &str) -> HashMap<MapData, K, V> {
    let path = pins.join(name);
    let data = MapData::from_pin(&path)
        .unwrap_or_else(|e| panic!("opening the pinned map {}: {e}", path.display()));
    let map = Map::from_map_data(data).unwrap_or_else(|e| panic!("{name}: {e}"));
    HashMap::try_from(map).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The UDP records of the socket plane whose pins are in `pins`.
pub fn udp_records(pins: &Path) -> UdpRecords {
    let peers = open::<SockPeerKey, SockPeer>(pins, "SOCK_PEERS");
    let flows = open::<SockUdpFlowKey, SockPeer>(pins, "SOCK_UDP_FLOWS");
    let sent = open::<u64, SockUdpSent>(pins, "SOCK_UDP_SENT");
    UdpRecords {
        translations: peers
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, p)| u16::from(p.protocol) == IPPROTO_UDP)
            .count(),
        flows: flows.keys().filter(Result::is_ok).count(),
        sent: sent.keys().filter(Result::is_ok).count(),
    }
}
