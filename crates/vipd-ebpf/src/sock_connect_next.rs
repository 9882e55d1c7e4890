//! This CPU's `SOCK_CONNECT_NEXT` slot: what one step of a TCP connect leaves for the
//! next (the connect hook for `sock_ops`' `TCP_CONNECT_CB`, that for its
//! `TIMEOUT_INIT`), sealed with its digest; see `vipd_common::sock::SockConnectNext`.

use vipd_common::sock::SockConnectNext;

use crate::sock_maps::SOCK_CONNECT_NEXT;

/// Leaves `slot` (sealed by [`SockConnectNext::new`]) for the next step.
#[inline(always)]
pub fn leave(slot: SockConnectNext) {
    if let Some(p) = SOCK_CONNECT_NEXT.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; a write another program's write overlaps leaves a
        // slot whose digest is wrong, which no reader uses.
        unsafe { core::ptr::write_volatile(p, slot) };
    }
}

/// The slot, if it is what socket `cookie`'s `step` left, whole.
#[inline(always)]
pub fn take(cookie: u64, step: u8) -> Option<SockConnectNext> {
    let p = SOCK_CONNECT_NEXT.get_ptr(0)?;
    // SAFETY: this CPU's slot, copied out at once (a copy another write overlaps fails
    // its digest).
    let slot = unsafe { core::ptr::read_volatile(p) };
    slot.for_step(cookie, step).copied()
}
