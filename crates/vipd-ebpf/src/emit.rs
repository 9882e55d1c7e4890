//! Writing an event to the ring buffer, counting it as lost when there is no room.
//!
//! The last quarter of the ring is kept for events that can fail a backend: once three
//! quarters hold unread data, other events (successes, closes) are shed and counted, so
//! a flood of successes the reader has not caught up with can never crowd out a
//! refusal or a retransmitted SYN.
//!
//! Waking the reader costs more than the rest of a hook (measured: about 2 us of a
//! 2.5 us run), so only events that can fail a backend wake it at once; the others wait
//! for the reader's periodic drain (twice a second: `SLOW_DRAIN` in vipd) or for enough
//! data to pile up.

use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use vipd_common::{ConnEvent, EventKind};

use crate::{
    maps::{EVENTS, LOST},
    transitions::{TCP_CLOSE, TCP_SYN_SENT},
};

/// Pending bytes at which every event wakes the reader: a burst guard, an eighth of
/// the 4 MiB ring.
const WAKE_AT_BYTES: u64 = 512 << 10;

/// Pending bytes from which only urgent events are queued: three quarters of the ring
/// (the last 1 MiB holds about 13,000 urgent records).
const SHED_AT_BYTES: u64 = 3 << 20;

/// `LOST` entries.
const LOST_FULL: u32 = 0;
const LOST_SHED: u32 = 1;

/// Whether userspace must see `event` now: it can fail a backend.
#[inline(always)]
fn urgent(event: &ConnEvent) -> bool {
    let kind = event.kind;
    kind == EventKind::ReceiveReset as u8
        || kind == EventKind::Retransmit as u8
        || kind == EventKind::IcmpError as u8
        || (kind == EventKind::StateChange as u8
            && event.old_state == TCP_SYN_SENT
            && event.new_state == TCP_CLOSE)
}

#[inline(always)]
pub fn emit(event: &ConnEvent) {
    let urgent = urgent(event);
    let pending = EVENTS.query(BPF_RB_AVAIL_DATA.into());
    if !urgent && pending >= SHED_AT_BYTES {
        count(LOST_SHED);
        return;
    }
    let flags = if urgent || pending >= WAKE_AT_BYTES {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    if EVENTS.output::<ConnEvent>(event, flags.into()).is_err() {
        count(LOST_FULL);
    }
}

#[inline(always)]
fn count(slot: u32) {
    if let Some(n) = LOST.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, touched only by programs on this CPU.
        unsafe { *n += 1 };
    }
}
