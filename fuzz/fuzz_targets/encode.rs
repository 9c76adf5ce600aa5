//! Fuzz target: arbitrary events through the encoder and back.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sse_fuzz::check_encode(data));
