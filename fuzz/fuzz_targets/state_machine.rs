//! Fuzz target: arbitrary input sequences through the stream state machine.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sse_fuzz::check_state_machine(data));
