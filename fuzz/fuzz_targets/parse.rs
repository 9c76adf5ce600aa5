#![no_main]
//! placeholder
libfuzzer_sys::fuzz_target!(|data: &[u8]| { let _ = data; });
