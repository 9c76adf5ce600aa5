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
//!
//! Packed streams carry many topics on one connection, in the two styles
//! providers use: `GET /v1/stream?symbols=A,B` (each event's data is the
//! topic's quote, the topic at `/s`) and `GET /v2/stream/A,B` (the quote
//! under `data`, the topic at `/meta/stream`). Their ids are one sequence
//! over every topic, so `Last-Event-ID` resumes a packed connection
//! whatever its set; each quote keeps its topic's own `n`, so a client can
//! check every topic for gaps ([`SimHandle::packed_url`]). A list naming a
//! topic the simulator does not have is a 404 that names it.

mod body;
pub mod chaos;
mod fault;
mod feed;
mod packed;
mod records;
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
