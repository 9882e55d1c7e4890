#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vipd_fuzz::control_request::run(data));
