//! The resilient upstream SSE client and the shared pool.
//!
//! A stream ([`spawn_stream`]) is one task that drives an
//! `sse-state-machine` with real connections made through a [`Connector`],
//! parses them with `sse-parser`, and broadcasts what the machine delivers to
//! any number of subscribers. Each deadline the machine asks for is one
//! runtime timer on tokio's clock, so paused-time tests reach it; a
//! [`Connector`] over in-memory pipes makes that possible.
//!
//! Requests ([`UpstreamRequest`]): GET by default with
//! `Accept: text/event-stream` and `Cache-Control: no-cache`, configurable
//! method, headers and body (re-sent on every reconnect), `Last-Event-ID`
//! only when non-empty; redirects 301/302/303/307/308 followed up to a hop
//! limit, relative `Location` resolved, a missing or empty `Location` an
//! error. Where a redirect may lead is a [`RedirectPolicy`]: the same origin
//! by default, other origins only when listed (every configured header
//! dropped on the hop), never the gateway's own listeners, never a
//! loopback, link-local or metadata address from a URL that was not one.
//! A refused redirect stops the stream for good. `Retry-After` (seconds
//! or an HTTP date) is read here and clamped by the machine.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sse_conn_pool::{StreamConfig, StreamItem, TcpConnector, UpstreamRequest, spawn_stream};
//!
//! let request = UpstreamRequest::get("http://127.0.0.1:8081/v1/quotes/AAPL/stream")?;
//! let stream = spawn_stream(TcpConnector, request, StreamConfig::default())?;
//! let mut items = stream.subscribe();
//! while let Ok(item) = items.recv().await {
//!     match item {
//!         StreamItem::Event(event) => println!("{} {}", event.id, event.data),
//!         StreamItem::Status(status) if status.terminal => break,
//!         _ => {}
//!     }
//! }
//! stream.stop().await;
//! # Ok(()) }
//! ```

mod checks;
mod config;
mod connector;
mod error;
mod feed;
mod info;
mod latency;
pub mod metrics;
mod pack;
mod pool;
mod redirect;
mod refused;
mod request;
mod route;
mod slots;
mod source;
mod stream;
mod subscription;
mod throttle;
mod totals;
mod transport;
mod wait;

pub use checks::ConfigError;
pub use connector::{
    ConnectFailure, Connector, Http2PriorKnowledge, HttpsConnector, MaybeTls, Ready, Resolve,
    Resolving, SystemResolver, Target, TcpConnector, TlsConfig, TlsConfigError,
};
pub use pack::{Demux, MAX_PACK_TOPICS, Pack, Resume, id_position};
pub use pool::{Pool, PoolConfig, PoolCounts, PoolError, StreamInfo, Subscription};
pub use redirect::{RedirectPolicy, RedirectRefusal};
pub use request::{RequestError, UpstreamRequest, retry_after};
pub use route::{Route, TopicMatch, glob};
pub use source::{From, Opened, Source, SourceFuture};
pub use stream::{Status, StreamConfig, StreamHandle, StreamItem, StreamState, spawn_stream};
pub use throttle::{AttemptLimits, Throttled};
pub use transport::Connections;

// The README's examples are compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
