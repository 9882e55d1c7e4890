//! A health record of a translated connection, into the socket plane's ring buffer.
//!
//! A failure wakes the daemon at once; a success waits for the daemon's periodic drain
//! (a wake-up per connection would cost the daemon more than the rest of the record)
//! unless an eighth of the ring is unread, and is shed once the ring's last quarter is
//! all that is left ([`crate::ring_room`]).

use aya_ebpf::{bindings::BPF_RB_FORCE_WAKEUP, helpers::bpf_ktime_get_ns};
use vipd_common::{
    health::{HealthEvent, HealthKind},
    sock::{stat, SockPeer},
};

use crate::{
    ring_room::success_wakeup,
    sock_addr::Addr,
    sock_maps::{count, SOCK_HEALTH},
};

/// Sends one record: `rec` is the socket's reverse translation (VIP, ids), `local` the
/// client's end, `backend` the socket's peer.
#[inline(always)]
pub fn emit(kind: HealthKind, rec: &SockPeer, family: u8, local: &Addr, backend: &Addr) {
    send(kind, rec, family, local, backend, (0, 0));
}

/// Sends an [`HealthKind::Unreachable`] record of ICMP type and code `icmp`.
#[inline(always)]
pub fn emit_unreachable(rec: &SockPeer, family: u8, local: &Addr, backend: &Addr, icmp: (u8, u8)) {
    send(HealthKind::Unreachable, rec, family, local, backend, icmp);
}

#[inline(always)]
fn send(
    kind: HealthKind,
    rec: &SockPeer,
    family: u8,
    local: &Addr,
    backend: &Addr,
    (icmp_type, icmp_code): (u8, u8),
) {
    let success = matches!(kind, HealthKind::Established | HealthKind::SynSent);
    let wakeup = if success {
        match success_wakeup(&SOCK_HEALTH) {
            Some(flag) => flag,
            None => {
                count(stat::EVENTS_SHED);
                return;
            }
        }
    } else {
        BPF_RB_FORCE_WAKEUP.into()
    };
    let ev = HealthEvent {
        // SAFETY: a plain helper call.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        service_id: rec.service_id,
        backend_id: rec.backend_id,
        kind: kind as u8,
        family,
        protocol: rec.protocol,
        icmp_type,
        icmp_code,
        _pad: [0; 3],
        cport: local.port,
        vport: rec.port,
        bport: backend.port,
        _pad1: 0,
        client: local.addr,
        vip: rec.addr,
        backend: backend.addr,
    };
    if SOCK_HEALTH.output::<HealthEvent>(&ev, wakeup).is_err() {
        count(stat::EVENTS_LOST);
    }
}
