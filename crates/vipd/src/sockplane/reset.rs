//! The refusal hook of the socket plane: `vipd_sock_reset` on the `tcp/tcp_receive_reset`
//! tracepoint, which carries the socket's cookie and address. Its record's field offsets
//! come from this kernel's format file, and where the socket keeps its state from BTF
//! (an RST is a refusal only while the connection is in SYN_SENT). A kernel whose
//! tracepoint lacks a field (older ones have no `sock_cookie`) or without BTF gets no
//! refusal reports, and the plane says so.

use vipd_common::sock::SockResetOffsets;

use crate::kernel::{
    btf::Btf,
    offsets,
    tracefs::{Format, TracefsError},
};

/// The program and the tracepoint it attaches to.
pub const RESET_PROGRAM: &str = "vipd_sock_reset";
pub const TRACEPOINT: (&str, &str) = ("tcp", "tcp_receive_reset");

/// The global the offsets go into.
pub const OFFSETS_GLOBAL: &str = "SOCK_RESET_TP";

/// The record's offsets on this kernel and the socket's in its `btf` (or why that
/// could not be read), or why there are none.
pub fn offsets(btf: Result<&Btf, &str>) -> Result<SockResetOffsets, String> {
    let format = Format::read(TRACEPOINT.0, TRACEPOINT.1).map_err(|e| e.to_string())?;
    let state = offsets::sock(btf?).map_err(|e| e.to_string())?.state;
    offsets_in(&format, state).map_err(|e| e.to_string())
}

/// The offsets in format `f`, each field checked for its size, with `state` the
/// offset of the socket's `skc_state`.
pub fn offsets_in(f: &Format, state: u16) -> Result<SockResetOffsets, TracefsError> {
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
        skaddr: f.offset("skaddr", 8)?,
        state,
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
        let o = offsets_in(&f, 18).unwrap();
        assert_eq!((o.valid, o.sport, o.dport, o.family), (1, 16, 18, 20));
        assert_eq!((o.daddr, o.daddr_v6, o.sock_cookie), (26, 46, 64));
        assert_eq!((o.skaddr, o.state), (8, 18));
        let old = FORMAT.replace(
            "\tfield:__u64 sock_cookie;\toffset:64;\tsize:8;\tsigned:0;\n",
            "",
        );
        let e = offsets_in(&Format::parse("tcp/tcp_receive_reset", &old).unwrap(), 18).unwrap_err();
        assert!(e.to_string().contains("sock_cookie"), "{e}");
    }
}
