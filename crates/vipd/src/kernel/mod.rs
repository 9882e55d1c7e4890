//! What vipd reads of the running kernel, for every data plane: its types (BTF), the
//! offsets of the structure members and tracepoint fields the kernel programs read, and
//! its tick rate.

pub mod btf;
pub mod offsets;
pub mod tick;
pub mod tracefs;
