//! kprobe on `tcp_connect(struct sock *sk)`: the first SYN is about to leave and the
//! source port is bound, which the first SYN_SENT state change lacks. The fallback for
//! kernels without BPF trampolines; see `tcp_connect_fentry.rs`.

use aya_ebpf::{macros::kprobe, programs::ProbeContext};
use vipd_common::EventKind;

use crate::{
    global::global,
    kernel_read::Probed,
    sock::{self, SOCK},
};

#[kprobe]
pub fn tcp_connect(ctx: ProbeContext) -> u32 {
    let off = global(&SOCK);
    if off.valid == 1 {
        if let Some(sk) = ctx.arg::<*const u8>(0) {
            // SAFETY: tcp_connect's first argument is a struct sock *.
            let _ = unsafe {
                sock::emit_watched::<Probed>(sk, &off, EventKind::Connect, false, |_| Ok(()))
            };
        }
    }
    0
}
