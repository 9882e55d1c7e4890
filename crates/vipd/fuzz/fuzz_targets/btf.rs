#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vipd_fuzz::btf::run(data));
