//! End-to-end tests of the gateway over real loopback sockets.
//!
//! This package holds the tests that cross crate boundaries: `sse-upstream-sim`,
//! then the gateway (`sse-bridge` over `sse-conn-pool`, in-process, or the
//! `ssegate` binary), then clients; real sockets on 127.0.0.1 only, bounded in
//! count and time. `ssegate parse` is tested in `crates/ssegate/tests/parse.rs`.
