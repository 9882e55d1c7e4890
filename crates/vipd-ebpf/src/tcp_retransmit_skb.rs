//! `tcp/tcp_retransmit_skb`: a segment was resent. For a socket in SYN_SENT that is the
//! SYN: the backend has not answered (blackholed, or a lossy path).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use vipd_common::{EventKind, SockTracepointOffsets};

use crate::{global::global, sock_tracepoint};

#[unsafe(no_mangle)]
static RETRANSMIT_TP: SockTracepointOffsets = SockTracepointOffsets::UNSET;

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let off = global(&RETRANSMIT_TP);
    if off.valid == 1 {
        let _ = sock_tracepoint::emit_watched(&ctx, &off, EventKind::Retransmit);
    }
    0
}
