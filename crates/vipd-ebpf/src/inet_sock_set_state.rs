//! `sock/inet_sock_set_state`: every TCP state change of a connection to a managed VIP.
//! The first one (CLOSE -> SYN_SENT) comes before the source port is bound; the
//! `tcp_connect` hook supplies it.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use vipd_common::{EventKind, SockTracepointOffsets};

use crate::{
    emit::{emit, global},
    flow, sock_tracepoint,
};

#[unsafe(no_mangle)]
static STATE_TP: SockTracepointOffsets = SockTracepointOffsets::UNSET;

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let off = global(&STATE_TP);
    if off.valid == 1 {
        if let Ok(Some(mut ev)) = sock_tracepoint::read(&ctx, &off, EventKind::StateChange) {
            if flow::watched(&ev) {
                flow::attribute(&mut ev);
                emit(&ev);
            }
        }
    }
    0
}
