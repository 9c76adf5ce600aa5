//! Fuzz target: arbitrary streams and chunkings through the parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sse_fuzz::check_parse(data));
