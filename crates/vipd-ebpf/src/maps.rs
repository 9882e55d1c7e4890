//! Maps shared by all hooks.

use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, RingBuf},
};

/// Connection events for userspace. 4 MiB holds about 47,000 records.
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Events that did not fit into `EVENTS`, per CPU. Userspace sums and reports them.
#[map(name = "LOST")]
pub static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);
