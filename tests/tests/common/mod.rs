//! Shared pieces of the end-to-end tests: a gateway in front of a simulated
//! upstream, and an SSE client that parses what the gateway sends with
//! `sse-parser`. Everything on 127.0.0.1, every wait bounded.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different subset.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sse_bridge::{BridgeConfig, GatewayHandle};
use sse_conn_pool::{Pool, PoolConfig, TcpConnector};
use sse_parser::Event;
use sse_upstream_sim::{Sim, SimHandle};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The bound on every wait.
pub const WAIT: Duration = Duration::from_secs(10);

/// A bridge config on ephemeral loopback ports with quick timers.
pub fn bridge_config() -> BridgeConfig {
    BridgeConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        drain_spread: Duration::from_millis(500),
        drain_deadline: Duration::from_secs(5),
        // Short, like the pool's idle linger below: registries return to
        // zero quickly after a test's clients leave.
        replay_linger: Duration::from_millis(300),
        // Every client of these tests comes from 127.0.0.1, quickly.
        new_streams_per_ip_per_sec: 100_000,
        ..BridgeConfig::default()
    }
}

/// A pool config in front of `sim`, with fast reconnects.
pub fn pool_config(sim: &SimHandle) -> PoolConfig {
    let mut config = PoolConfig::new(format!("{}/v1/quotes/{{topic}}/stream", sim.url()));
    config.idle_linger = Duration::from_millis(300);
    let machine = &mut config.stream.machine;
    machine.backoff.initial = Duration::from_millis(50);
    machine.backoff.reconnect_spread = Duration::ZERO;
    machine.retry_min = Duration::from_millis(10);
    config
}

pub async fn sim(topics: &[&str], rate: f64) -> SimHandle {
    Sim::builder()
        .topics(topics.iter().copied())
        .events_per_sec(rate)
        .heartbeat(Duration::from_secs(1))
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts")
}

pub async fn gateway(pool: PoolConfig, bridge: BridgeConfig) -> GatewayHandle<TcpConnector> {
    let pool = Pool::new(pool, TcpConnector).expect("a valid pool config");
    start(bridge, pool, sse_bridge::Hooks::default()).await
}

/// The gateway on loopback sockets at `bridge.listen` and `admin_listen`.
pub async fn start<C: sse_conn_pool::Connector>(
    bridge: BridgeConfig,
    pool: Pool<C>,
    hooks: sse_bridge::Hooks,
) -> GatewayHandle<C> {
    let streams = sse_bridge::TcpAcceptor::streams(bridge.listen, bridge.send_buffer)
        .expect("the stream listener binds");
    let admin = sse_bridge::TcpAcceptor::admin(bridge.admin_listen)
        .await
        .expect("the admin listener binds");
    sse_bridge::start(bridge, pool, streams, admin, hooks).expect("the gateway starts")
}

/// Applies `bridge` and the pool cap `max_streams` as a reload would: the
/// keys applied and those that need a restart.
pub fn reload<C: sse_conn_pool::Connector>(
    gw: &GatewayHandle<C>,
    bridge: &BridgeConfig,
    max_streams: usize,
) -> Result<(Vec<String>, Vec<String>), sse_bridge::ReloadError> {
    let outcome = gw.reloader().apply(&sse_bridge::Reload {
        source: "a test".into(),
        bridge: bridge.clone(),
        max_streams,
        log_level: None,
        restart: Vec::new(),
    })?;
    Ok((outcome.applied, outcome.restart))
}

pub use ssegate_tests::client::Client;

async fn connect(addr: SocketAddr) -> TcpStream {
    timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("the gateway listens")
}

/// GETs `path` from `addr` with `headers`.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Client {
    let socket = connect(addr).await;
    get_on(socket, addr, path, headers).await
}

/// GETs `path` over a socket with a tiny receive buffer: a client that does
/// not read stalls the gateway's writes almost at once.
pub async fn get_small_buffer(addr: SocketAddr, path: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let socket = timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("the gateway listens");
    get_on(socket, addr, path, &[]).await
}

async fn get_on(
    socket: TcpStream,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Client {
    request_on(socket, addr, http::Method::GET, path, headers, Bytes::new()).await
}

/// Sends `method path` to `addr` with `headers` (an empty body).
pub async fn request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Client {
    let socket = connect(addr).await;
    request_on(socket, addr, method, path, headers, Bytes::new()).await
}

/// POSTs `form` (`application/x-www-form-urlencoded`) to `path`.
pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    form: &str,
    headers: &[(&str, &str)],
) -> Client {
    let socket = connect(addr).await;
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request_on(
        socket,
        addr,
        http::Method::POST,
        path,
        &all,
        Bytes::from(form.to_string()),
    )
    .await
}

async fn request_on(
    socket: TcpStream,
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Client {
    let host = addr.to_string();
    ssegate_tests::client::request(socket, &host, method, path, headers, body, WAIT).await
}

/// The upstream sequence number in a quote's data (`"s":..` is the symbol;
/// the sim's id is the event's position in its topic).
pub fn quote_symbol(event: &Event) -> String {
    let value: serde_json::Value = serde_json::from_str(&event.data).expect("JSON data");
    value["s"].as_str().expect("a symbol").to_string()
}

/// Waits until `f` holds (bounded), polling.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let ok = timeout(WAIT, async {
        while !f() {
            // Wall clock: the condition changes with real sockets' I/O in
            // other tasks; a bounded poll every 10 ms.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for: {what}");
}
