//! End-to-end tests of the gateway over real loopback sockets.
//!
//! This package holds the tests that cross crate boundaries: the `ssegate`
//! binary against `sse-upstream-sim`, with real sockets on 127.0.0.1 only,
//! bounded in count and time. The crates arrive with their issues; until then
//! each crate tests itself (the parser's tool, `sse-dump`, is tested end to end
//! in `crates/sse-parser/tests/dump.rs`).
