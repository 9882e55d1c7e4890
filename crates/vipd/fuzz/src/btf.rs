//! BTF: the kernel's (`/sys/kernel/btf/vmlinux`) and a module's split BTF on top of it
//! ([`Btf::parse`]), and the member look-ups vipd does on them ([`offsets`]).
//!
//! Input: a little-endian u32, the length of the kernel's blob, then that blob, then the
//! module's (none when nothing is left).

use vipd::kernel::{btf::Btf, offsets};

pub fn run(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (base, split) = rest.split_at(len);
    let split = (!split.is_empty()).then_some(split);
    let btf = match Btf::parse(base, split) {
        Ok(btf) => btf,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    // Errors are values, and their messages render.
    let errors = [
        offsets::sock(&btf).err(),
        offsets::skb(&btf).err(),
        offsets::ip_vs_conn(&btf).err(),
        offsets::ip_vs_conn_param(&btf).err(),
    ];
    for e in errors.into_iter().flatten() {
        assert!(!e.to_string().is_empty());
    }
}
