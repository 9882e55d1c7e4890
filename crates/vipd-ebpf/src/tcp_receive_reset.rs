//! `tcp/tcp_receive_reset`: the socket received an RST. In SYN_SENT that is a refusal.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use vipd_common::{EventKind, SockTracepointOffsets};

use crate::{global::global, sock_tracepoint};

#[unsafe(no_mangle)]
static RESET_TP: SockTracepointOffsets = SockTracepointOffsets::UNSET;

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let off = global(&RESET_TP);
    if off.valid == 1 {
        let _ = sock_tracepoint::emit_watched(&ctx, &off, EventKind::ReceiveReset);
    }
    0
}
