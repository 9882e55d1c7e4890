//! Room kept in a health ring buffer for the records that can fail a backend.
//!
//! Once three quarters of a ring hold unread data, records that can fail no backend (an
//! established connection, a SYN leaving) are shed and counted by the caller, so that a
//! burst of successes the reader has not caught up with never crowds out a refusal or
//! an unanswered SYN. The threshold follows the ring's size as the loader set it.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_RING_SIZE},
    maps::RingBuf,
};

/// Whether a record that can fail no backend may still go into `ring`.
#[inline(always)]
pub fn room_for_success(ring: &RingBuf) -> bool {
    let size = ring.query(BPF_RB_RING_SIZE.into());
    let pending = ring.query(BPF_RB_AVAIL_DATA.into());
    pending < size / 4 * 3
}
