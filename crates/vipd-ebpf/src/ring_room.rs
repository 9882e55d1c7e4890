//! Room kept in a health ring buffer for the records that can fail a backend.
//!
//! Once three quarters of a ring hold unread data, records that can fail no backend (an
//! established connection, a SYN leaving) are shed and counted by the caller, so that a
//! burst of successes the reader has not caught up with never crowds out a refusal or
//! an unanswered SYN. The thresholds follow the ring's size as the loader set it.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    maps::RingBuf,
};

/// Whether a record that can fail no backend may still go into `ring`.
#[inline(always)]
#[allow(dead_code)] // each object uses one of the two
pub fn room_for_success(ring: &RingBuf) -> bool {
    success_wakeup(ring).is_some()
}

/// For a record that can fail no backend: `None` to shed it, else the flag to queue it
/// with. It waits for the reader's drain, unless an eighth of the ring is unread: then
/// it wakes the reader, which drains on its own only twice a second, while a burst
/// fills the ring.
#[inline(always)]
#[allow(dead_code)]
pub fn success_wakeup(ring: &RingBuf) -> Option<u64> {
    let size = ring.query(BPF_RB_RING_SIZE.into());
    let pending = ring.query(BPF_RB_AVAIL_DATA.into());
    if pending >= size / 4 * 3 {
        None
    } else if pending >= size / 8 {
        Some(BPF_RB_FORCE_WAKEUP.into())
    } else {
        Some(BPF_RB_NO_WAKEUP.into())
    }
}
