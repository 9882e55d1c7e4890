//! Fuzzes the reply decoders: whole datagrams, and the first bytes used as a command number
//! and family for the per-message decoder.
//!
//! `cargo +nightly fuzz run decode_reply` from `crates/vipd-ipvs/fuzz`.
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
