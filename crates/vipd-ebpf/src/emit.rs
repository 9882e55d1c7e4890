//! Writing an event to the ring buffer, counting it as lost when there is no room.

use vipd_common::ConnEvent;

use crate::maps::{EVENTS, LOST};

#[inline(always)]
pub fn emit(event: &ConnEvent) {
    if EVENTS.output::<ConnEvent>(event, 0).is_err() {
        if let Some(lost) = LOST.get_ptr_mut(0) {
            // SAFETY: a per-CPU slot, touched only by programs on this CPU.
            unsafe { *lost += 1 };
        }
    }
}

/// Reads a read-only global that userspace set before load. The volatile read stops the
/// compiler from folding in the zero it sees in the object file.
#[inline(always)]
pub fn global<T: Copy>(value: &'static T) -> T {
    // SAFETY: a valid static reference.
    unsafe { core::ptr::read_volatile(value) }
}
