//! tp_btf `inet_sock_set_state(sk, oldstate, newstate)`: the BTF-typed variant of the
//! `sock/inet_sock_set_state` tracepoint (see `inet_sock_set_state.rs`). The kernel
//! hands over its arguments instead of formatting a trace record, and the connection
//! is read from the socket itself. The states come as arguments, so a state change
//! userspace is not sent (see `transitions.rs`) costs only their comparison.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use vipd_common::{EventKind, NO_FIELD};

use crate::{
    global::global,
    kernel_read::Typed,
    sock::{self, SOCK},
    transitions,
};

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> u32 {
    let off = global(&SOCK);
    let (old, new) = (ctx.arg::<i32>(1) as u8, ctx.arg::<i32>(2) as u8);
    if off.valid == 1 && off.protocol != NO_FIELD && transitions::reported(old, new) {
        let sk: *const u8 = ctx.arg(0);
        // SAFETY: the tracepoint's first argument is a struct sock *.
        let _ = unsafe {
            sock::emit_watched::<Typed>(sk, &off, EventKind::StateChange, true, |ev| {
                ev.old_state = old;
                ev.new_state = new;
                Ok(())
            })
        };
    }
    0
}
