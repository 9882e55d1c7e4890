#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vipd_fuzz::ownership_record::run(data));
