//! tp_btf `tcp_receive_reset(sk)`: the BTF-typed variant of the `tcp/tcp_receive_reset`
//! tracepoint (see `tcp_receive_reset.rs`).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use vipd_common::EventKind;

use crate::{
    global::global,
    kernel_read::Typed,
    sock::{self, SOCK},
};

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset_btf(ctx: BtfTracePointContext) -> u32 {
    let off = global(&SOCK);
    if off.valid == 1 {
        let sk: *const u8 = ctx.arg(0);
        // SAFETY: the tracepoint's first argument is a struct sock *.
        let _ = unsafe {
            sock::emit_watched::<Typed>(sk, &off, EventKind::ReceiveReset, false, |_| Ok(()))
        };
    }
    0
}
