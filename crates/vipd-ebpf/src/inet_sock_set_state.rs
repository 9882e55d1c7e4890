//! `sock/inet_sock_set_state`: the TCP state changes userspace is sent (see
//! `transitions.rs`) of connections to a managed VIP. The first one (CLOSE -> SYN_SENT)
//! comes before the source port is bound; the `tcp_connect` hook supplies it.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use vipd_common::{EventKind, SockTracepointOffsets};

use crate::{global::global, sock_tracepoint, transitions};

#[unsafe(no_mangle)]
static STATE_TP: SockTracepointOffsets = SockTracepointOffsets::UNSET;

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let off = global(&STATE_TP);
    if off.valid == 1 {
        let wanted = match sock_tracepoint::states(&ctx, &off) {
            Some((old, new)) => transitions::reported(old, new),
            None => true,
        };
        if wanted {
            let _ = sock_tracepoint::emit_watched(&ctx, &off, EventKind::StateChange);
        }
    }
    0
}
