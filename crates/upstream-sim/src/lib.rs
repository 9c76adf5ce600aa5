//! A scripted SSE server for tests, the soak harness, benchmarks and the
//! demo: a synthetic market feed (one `text/event-stream` per topic, quotes
//! with ids and a timestamp in the data), and fault scripts that make any
//! connection misbehave in a chosen, reproducible way.
//!
//! It listens on loopback only (127.0.0.0/8 or ::1), counts what it sees, and
//! stops when its [`SimHandle`] is shut down or dropped.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use sse_upstream_sim::{Fault, Sim};
//!
//! let sim = Sim::builder()
//!     .topics(["AAPL", "MSFT"])
//!     .events_per_sec(20.0)
//!     // The first two connections to MSFT get a 503, then it works.
//!     .script("MSFT", [Fault::status(503).retry_after("2"), Fault::status(503), Fault::Normal])
//!     .start("127.0.0.1:0")
//!     .await?;
//! println!("curl -N {}/v1/quotes/AAPL/stream", sim.url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! With [`SimBuilder::tls`] it serves HTTPS (ALPN `h2` and `http/1.1`);
//! without, plain HTTP/1.1 and HTTP/2 with prior knowledge (h2c).
//!
//! Streams are served at `GET /v1/quotes/{topic}/stream`. A request with
//! `Last-Event-ID: n` first receives the events after `n` still in the
//! topic's history, then the live feed, with no gap and no duplicate. A
//! connection's behaviour comes from its topic's script: the k-th connection
//! to a topic plays the k-th [`Fault`] (then [`Fault::Normal`] once the
//! script is used up).

pub mod chaos;
mod fault;
mod feed;
mod server;
mod tls;

pub use chaos::{Chaos, Injection};
pub use fault::{Fault, Garbage};
pub use server::{RecordedRequest, Sim, SimBuilder, SimHandle, StreamLog};
pub use tls::TlsIdentity;

// The README's examples are compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
