//! Tracepoint format files from tracefs ([`Format::parse`]), and the offsets vipd reads
//! from them ([`offsets::sock_tracepoint`]).

use vipd::kernel::{
    offsets::{self, SockTracepoint},
    tracefs::Format,
};

pub fn run(data: &[u8]) {
    let Some(text) = crate::text(data) else {
        return;
    };
    let format = match Format::parse("sock/inet_sock_set_state", text) {
        Ok(f) => f,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    for which in [
        SockTracepoint::SetState,
        SockTracepoint::Retransmit,
        SockTracepoint::ReceiveReset,
    ] {
        match offsets::sock_tracepoint(&format, which) {
            Ok(off) => assert_eq!(format.offset("sport", 2).ok(), Some(off.sport)),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}
