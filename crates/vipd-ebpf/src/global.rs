//! Read-only globals that userspace sets before it loads an object: the kernel's member
//! offsets, taken from BTF.

/// Reads a read-only global that userspace set before load. The volatile read stops the
/// compiler from folding in the zero it sees in the object file.
#[inline(always)]
pub fn global<T: Copy>(value: &'static T) -> T {
    // SAFETY: a valid static reference.
    unsafe { core::ptr::read_volatile(value) }
}
