//! The downstream side of ssegate: a hyper server (HTTP/1.1 and HTTP/2) that
//! fans each upstream stream of an `sse-conn-pool` out to many clients.
//!
//! # Endpoints
//!
//! - `GET /v1/stream/{topic}`: one topic.
//! - `GET /v1/stream?topic=A&topic=B`: several topics on one stream.
//! - Admin listener (its own address): `/healthz`, `/readyz`, `/metrics`,
//!   `/admin/streams`, `/admin/report?window=1h|24h`, and `/debug/vars` when
//!   `debug_vars` is set (for the soak harness).
//!
//! # What a client receives
//!
//! First `retry: <retry_hint ms>`, then events, `:` heartbeat comments when
//! nothing else was written for the heartbeat interval, and on shutdown (or
//! when the client was too slow, or its upstream stopped for good) a last
//! `retry:` hint before the stream ends.
//!
//! On a single-topic stream an event keeps its upstream type and data; its
//! id is `<run>:<seq>`. On a multi-topic stream the event type names the
//! topic, so a plain browser `EventSource` can tell topics apart with
//! `addEventListener("AAPL", ...)`: `event: AAPL` for an upstream `message`,
//! `event: AAPL:quote` for an upstream type `quote`; its id carries the
//! position in every topic of the stream: `<run>:AAPL=812,MSFT=809`.
//!
//! # Resume
//!
//! A reconnecting client sends its last id (the `Last-Event-ID` header,
//! which `EventSource` sets by itself, or a `lastEventId` query parameter
//! for a first request) and receives what it missed from each topic's
//! replay buffer (bounded in events, bytes and age) with no gap and no
//! duplicate, then live events. Sequence numbers come from one gateway-wide
//! counter, so they only grow, across upstream rotations and reconnects and
//! across a topic emptying and coming back. When a position cannot be
//! honoured (beyond the window, or an id from an earlier run) the client
//! gets `event: ssegate-reset` with `data: {"topic":..,"reason":..}`, then
//! live events. A new subscriber joins at "now".
//!
//! # Slow consumers
//!
//! Every subscriber has a bounded queue (events and bytes). When it is full,
//! the topic's [`Policy`] applies: `disconnect` (default: what is queued is
//! dropped and the stream ends with a `retry:` hint once the client reads
//! again; it resumes from the replay buffer),
//! `drop-oldest` (an `event: ssegate-gap` with `{"topic":..,"missed":n}`
//! replaces what was dropped), or `conflate` (only the newest queued event
//! per topic is kept). Queuing never waits, so a slow subscriber never
//! slows anyone else. A subscriber whose queued data (or goodbye) does not
//! move for the write timeout is cut: on HTTP/1.1 its connection is
//! closed (a stalled connection never polls its body); on HTTP/2 that one
//! stream is reset, and the client's other streams on the connection go on
//! (a stream whose flow-control window stays shut is a slow consumer like
//! any other).
//!
//! # At the edge
//!
//! `bridge.tls` and `bridge.admin_tls` put TLS 1.2/1.3 (rustls) on the
//! listeners, with ALPN `h2` and `http/1.1`; the pair is read again at
//! every reload. HTTP/2 on the stream listener is served with the `h2`
//! crate (per-stream resets, the rapid-reset cut, GOAWAY at drain).
//! `bridge.trusted_proxies` and `bridge.proxy_protocol` give limits, logs
//! and `/admin/streams` the client's real address behind a balancer.
//!
//! # Structure
//!
//! The application binds the listeners ([`TcpAcceptor`], or [`memory`] in
//! tests) and gives the gateway its [`Hooks`] (metrics rendering, log
//! control, reload source, heap and process probes): the bridge reads no
//! process-wide state, so two gateways can share a process and tests can
//! run on paused time. Modules: `subscribe` (a request to a stream, or a
//! typed refusal), `hub`, `queue`, `body`, `h1` and `http2` (fan-out and
//! writing), `edge/` (PROXY header, TLS, the client's address), `route`
//! (what the stream listener answers, whatever the protocol),
//! `admin/` (the admin listener), `auth/` (subscriber tokens), `reload`
//! (what a reload applies, key by key), `housekeeping`, `server` (accept,
//! serve, drain).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sse_bridge::{BridgeConfig, Hooks, TcpAcceptor};
//! use sse_conn_pool::{Pool, PoolConfig, TcpConnector};
//!
//! let config = BridgeConfig::default();
//! let pool = Pool::new(PoolConfig::new("http://127.0.0.1:8081/v1/quotes/{topic}/stream"), TcpConnector)?;
//! let streams = TcpAcceptor::streams(config.listen, config.send_buffer)?;
//! let admin = TcpAcceptor::admin(config.admin_listen).await?;
//! let gateway = sse_bridge::start(config, pool, streams, admin, Hooks::default())?;
//! println!("curl -N http://{}/v1/stream/AAPL", gateway.addr());
//! gateway.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
pub mod auth;
mod body;
mod config;
mod edge;
mod event;
mod h1;
mod hooks;
mod housekeeping;
mod http2;
mod hub;
mod limits;
mod listener;
pub mod metrics;
mod policy;
mod queue;
mod reload;
mod reply;
mod route;
mod server;
mod state;
mod subscribe;
mod window;

pub use auth::{AuthConfig, AuthConfigError, JwtConfig, Secret};
pub use config::{AdminToken, BridgeConfig, ConfigError};
pub use edge::forwarded::Cidr;
pub use edge::tls::{Pair, TlsError, TlsFiles};
pub use hooks::{
    ClusterSummary, ClusterView, HeapStats, Hooks, LogControl, ProcessProbe, Reload, ReloadSource,
    RenderMetrics,
};
pub use listener::{Listener, MemoryDialer, MemoryListener, TcpAcceptor, memory};
pub use policy::Policy;
pub use reload::{Outcome, ReloadError, Reloader};
pub use server::{GatewayHandle, start, start_with_source};
