//! tp_btf `inet_sock_set_state(sk, oldstate, newstate)`: the BTF-typed variant of the
//! `sock/inet_sock_set_state` tracepoint (see `inet_sock_set_state.rs`). The kernel
//! hands over its arguments instead of formatting a trace record, and the connection
//! is read from the socket itself.

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};
use vipd_common::{EventKind, IPPROTO_TCP, NO_FIELD};

use crate::{
    emit::global,
    kernel_read::read,
    sock::{self, SOCK},
};

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> u32 {
    let off = global(&SOCK);
    if off.valid == 1 && off.protocol != NO_FIELD {
        let sk: *const u8 = ctx.arg(0);
        // SAFETY: the tracepoint's first argument is a struct sock *.
        let _ = unsafe {
            match read::<u16>(sk, off.protocol) {
                Ok(p) if p == IPPROTO_TCP => {
                    sock::emit_watched(sk, &off, EventKind::StateChange, |ev| {
                        ev.old_state = ctx.arg::<i32>(1) as u8;
                        ev.new_state = ctx.arg::<i32>(2) as u8;
                        Ok(())
                    })
                }
                _ => Ok(()),
            }
        };
    }
    0
}
