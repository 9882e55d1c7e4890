//! tp_btf `tcp_retransmit_skb(sk, skb)`: the BTF-typed variant of the
//! `tcp/tcp_retransmit_skb` tracepoint (see `tcp_retransmit_skb.rs`).

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use vipd_common::EventKind;

use crate::{
    global::global,
    kernel_read::Typed,
    sock::{self, SOCK},
};

#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb_btf(ctx: BtfTracePointContext) -> u32 {
    let off = global(&SOCK);
    if off.valid == 1 {
        let sk: *const u8 = ctx.arg(0);
        // SAFETY: the tracepoint's first argument is a struct sock *.
        let _ = unsafe {
            sock::emit_watched::<Typed>(sk, &off, EventKind::Retransmit, false, |ev| {
                ev.old_state = sock::state::<Typed>(sk, &off)?;
                Ok(())
            })
        };
    }
    0
}
