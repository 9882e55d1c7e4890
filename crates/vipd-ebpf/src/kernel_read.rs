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

/// How a hook reads a kernel struct it is handed.
pub trait KernelRead {
    /// Reads `T` at `base + offset`.
    ///
    /// # Safety
    /// As the implementation says.
    unsafe fn read<T>(base: *const u8, offset: u16) -> Result<T, i32>;
}

/// Through bpf_probe_read_kernel ([`read`]): for a pointer the verifier knows only as a
/// number (a kprobe's argument).
pub struct Probed;

impl KernelRead for Probed {
    /// # Safety
    /// As for [`read`].
    #[inline(always)]
    unsafe fn read<T>(base: *const u8, offset: u16) -> Result<T, i32> {
        // SAFETY: see above.
        unsafe { read(base, offset) }
    }
}

/// Plain loads, no helper call: for a BTF-typed pointer (a tp_btf or fentry program's
/// argument). The verifier checks each load against the kernel's type of the pointer
/// when the program is loaded, and the kernel turns a fault into a zero, so the offset
/// must be a value the verifier knows: a read-only global set before load.
pub struct Typed;

impl KernelRead for Typed {
    /// # Safety
    /// `base` must be a BTF-typed argument and `offset` come from a read-only global;
    /// the verifier rejects the program otherwise.
    #[inline(always)]
    unsafe fn read<T>(base: *const u8, offset: u16) -> Result<T, i32> {
        // SAFETY: see above.
        Ok(unsafe { core::ptr::read_volatile(base.add(offset as usize) as *const T) })
    }
}
