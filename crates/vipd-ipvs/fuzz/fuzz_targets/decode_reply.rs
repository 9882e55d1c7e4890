//! Fuzzes the reply decoders: whole datagrams, and the first bytes used as a command number
//! and family for the per-message decoder.
//!
//! `cargo xtask fuzz decode_reply` (stable toolchain, no sanitizer; see docs/testing.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vipd_ipvs::{decode_ipvs_message, decode_reply, AddressFamily};

fuzz_target!(|data: &[u8]| {
    if let Err(e) = decode_reply(data) {
        assert!(e.is_decode_error(), "{e:?}");
    }
    if let [cmd, fam, rest @ ..] = data {
        let family = match fam % 3 {
            0 => None,
            1 => Some(AddressFamily::Inet),
            _ => Some(AddressFamily::Inet6),
        };
        if let Err(e) = decode_ipvs_message(*cmd, rest, family) {
            assert!(e.is_decode_error(), "{e:?}");
        }
    }
});
