//! vipd's fuzz targets: every parser of input vipd does not control, each as a plain
//! function of the fuzzer's bytes that asserts the parser's contract (it never panics,
//! its errors are values of its own error type, and, where cheap, what it parsed comes
//! back the same after a round trip through its own writer).
//!
//! The functions are driven by libFuzzer through cargo-fuzz (`fuzz_targets/`, one binary
//! each). The fuzz build works on the stable toolchain: with `--sanitizer none`
//! cargo-fuzz passes only stable codegen flags (SanitizerCoverage through
//! `-Cpasses=sancov-module` and `-Cllvm-args`), so the fuzzing is coverage-guided without
//! a nightly compiler; what is given up is AddressSanitizer, which safe Rust needs least.
//! `cargo xtask fuzz` builds and runs them all for a bounded time over the corpus in
//! `corpus/<target>/` (made by `examples/seeds.rs`).

pub mod btf;
pub mod config;
pub mod control_request;
pub mod drain_record;
pub mod event;
pub mod health_record;
pub mod http_request;
pub mod ownership_record;
pub mod tracefs;
pub mod xdp_record;

/// The fuzzer's bytes as the reads of a stream: the first byte is the size of every read
/// (0: all at once), the rest is what arrives.
pub fn reads(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&n, rest)) if n > 0 => (usize::from(n), rest),
        Some((_, rest)) => (usize::MAX, rest),
        None => (usize::MAX, data),
    }
}

/// Hands `bytes` to `feed` in reads of `size` bytes, then an empty read (the end of the
/// stream), until `feed` has a result.
pub fn stream<T>(bytes: &[u8], size: usize, feed: impl FnMut(&[u8]) -> Option<T>) -> Option<T> {
    bytes
        .chunks(size.max(1))
        .chain(std::iter::once(&[][..]))
        .find_map(feed)
}

/// The bytes as text, as the daemon reads a file (`read_to_string`): not UTF-8 is an
/// I/O error before any parser runs, so such inputs are outside every text parser's
/// domain.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
