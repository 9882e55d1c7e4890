//! `tcp/tcp_receive_reset`: the socket received an RST. In SYN_SENT that is a refusal.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use vipd_common::{EventKind, SockTracepointOffsets};

use crate::{
    emit::{emit, global},
    flow, sock_tracepoint,
};

#[unsafe(no_mangle)]
static RESET_TP: SockTracepointOffsets = SockTracepointOffsets::UNSET;

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let off = global(&RESET_TP);
    if off.valid == 1 {
        if let Ok(Some(mut ev)) = sock_tracepoint::read(&ctx, &off, EventKind::ReceiveReset) {
            if flow::watched(&ev) {
                flow::attribute(&mut ev);
                emit(&ev);
            }
        }
    }
    0
}
