//! A health record of a translated connection, into the socket plane's ring buffer.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use vipd_common::{
    health::{HealthEvent, HealthKind},
    sock::{stat, SockPeer},
};

use crate::{
    sock_addr::Addr,
    sock_maps::{count, SOCK_HEALTH},
};

/// Sends one record: `rec` is the socket's reverse translation (VIP, ids), `local` the
/// client's end, `backend` the socket's peer.
#[inline(always)]
pub fn emit(kind: HealthKind, rec: &SockPeer, family: u8, local: &Addr, backend: &Addr) {
    let ev = HealthEvent {
        // SAFETY: a plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        service_id: rec.service_id,
        backend_id: rec.backend_id,
        kind: kind as u8,
        family,
        protocol: rec.protocol,
        icmp_type: 0,
        icmp_code: 0,
        _pad: [0; 3],
        cport: local.port,
        vport: rec.port,
        bport: backend.port,
        _pad1: 0,
        client: local.addr,
        vip: rec.addr,
        backend: backend.addr,
    };
    if SOCK_HEALTH.output::<HealthEvent>(&ev, 0).is_err() {
        count(stat::EVENTS_LOST);
    }
}
