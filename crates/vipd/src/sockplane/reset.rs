//! The refusal hook of the socket plane: `vipd_sock_reset` on the `tcp/tcp_receive_reset`
//! tracepoint, which carries the socket's cookie. Its record's field offsets come from
//! this kernel's format file; a kernel whose tracepoint lacks a field (older ones have
//! no `sock_cookie`) gets no refusal reports, and the plane says so.

use vipd_common::sock::SockResetOffsets;

use crate::watcher::tracefs::{Format, TracefsError};

/// The program and the tracepoint it attaches to.
pub const RESET_PROGRAM: &str = "vipd_sock_reset";
pub const TRACEPOINT: (&str, &str) = ("tcp", "tcp_receive_reset");

/// The global the offsets go into.
pub const OFFSETS_GLOBAL: &str = "SOCK_RESET_TP";

/// The record's offsets on this kernel.
pub fn offsets() -> Result<SockResetOffsets, TracefsError> {
    offsets_in(&Format::read(TRACEPOINT.0, TRACEPOINT.1)?)
}

/// The offsets in format `f`, each field checked for its size.
pub fn offsets_in(f: &Format) -> Result<SockResetOffsets, TracefsError> {
    Ok(SockResetOffsets {
        valid: 1,
        sport: f.offset("sport", 2)?,
        dport: f.offset("dport", 2)?,
        family: f.offset("family", 2)?,
        saddr: f.offset("saddr", 4)?,
        daddr: f.offset("daddr", 4)?,
        saddr_v6: f.offset("saddr_v6", 16)?,
        daddr_v6: f.offset("daddr_v6", 16)?,
        sock_cookie: f.offset("sock_cookie", 8)?,
        _pad: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: tcp_receive_reset\nID: 1\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:__u16 sport;\toffset:16;\tsize:2;\tsigned:0;\n\
        \tfield:__u16 dport;\toffset:18;\tsize:2;\tsigned:0;\n\
        \tfield:__u16 family;\toffset:20;\tsize:2;\tsigned:0;\n\
        \tfield:__u8 saddr[4];\toffset:22;\tsize:4;\tsigned:0;\n\
        \tfield:__u8 daddr[4];\toffset:26;\tsize:4;\tsigned:0;\n\
        \tfield:__u8 saddr_v6[16];\toffset:30;\tsize:16;\tsigned:0;\n\
        \tfield:__u8 daddr_v6[16];\toffset:46;\tsize:16;\tsigned:0;\n\
        \tfield:__u64 sock_cookie;\toffset:64;\tsize:8;\tsigned:0;\n";

    #[test]
    fn offsets_come_from_the_format_and_a_missing_cookie_is_named() {
        let f = Format::parse("tcp/tcp_receive_reset", FORMAT).unwrap();
        let o = offsets_in(&f).unwrap();
        assert_eq!((o.valid, o.sport, o.dport, o.family), (1, 16, 18, 20));
        assert_eq!((o.daddr, o.daddr_v6, o.sock_cookie), (26, 46, 64));
        let old = FORMAT.replace(
            "\tfield:__u64 sock_cookie;\toffset:64;\tsize:8;\tsigned:0;\n",
            "",
        );
        let e = offsets_in(&Format::parse("tcp/tcp_receive_reset", &old).unwrap()).unwrap_err();
        assert!(e.to_string().contains("sock_cookie"), "{e}");
    }
}
