//! Reading kernel memory at offsets userspace took from BTF.

use aya_ebpf::helpers::bpf_probe_read_kernel;

/// Reads `T` at `base + offset` in kernel memory.
///
/// # Safety
/// `base` must be a kernel pointer; bpf_probe_read_kernel checks the access itself, so a
/// bad pointer gives an error, not a fault.
#[inline(always)]
pub unsafe fn read<T>(base: *const u8, offset: u16) -> Result<T, i32> {
    // SAFETY: see above.
    unsafe { bpf_probe_read_kernel(base.add(offset as usize) as *const T) }
}
