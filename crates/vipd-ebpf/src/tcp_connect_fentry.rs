//! fentry on `tcp_connect(struct sock *sk)`: as the kprobe in `tcp_connect.rs`, entered
//! through a BPF trampoline instead of a breakpoint, so cheaper; needs BTF and
//! trampoline support, and works on kernels built without kprobes.

use aya_ebpf::{macros::fentry, programs::FEntryContext};
use vipd_common::EventKind;

use crate::{
    global::global,
    kernel_read::Typed,
    sock::{self, SOCK},
};

#[fentry(function = "tcp_connect")]
pub fn tcp_connect_fentry(ctx: FEntryContext) -> u32 {
    let off = global(&SOCK);
    if off.valid == 1 {
        let sk: *const u8 = ctx.arg(0);
        // SAFETY: tcp_connect's first argument is a struct sock *.
        let _ =
            unsafe { sock::emit_watched::<Typed>(sk, &off, EventKind::Connect, false, |_| Ok(())) };
    }
    0
}
