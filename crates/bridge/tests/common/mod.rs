//! A gateway entirely in memory, for paused-time tests: an upstream feed
//! the test publishes into, the gateway on in-memory listeners, and HTTP
//! clients over in-memory pipes. No socket, so tokio's paused clock reaches
//! every timer (heartbeats, lingers, drains, deadlines).

#![allow(dead_code, unreachable_pub)] // Each test file uses a different subset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use sse_bridge::{BridgeConfig, GatewayHandle, Hooks, MemoryDialer};
use sse_conn_pool::{Connector, Pool, PoolConfig, Target};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::sync::broadcast;

pub use ssegate_tests::client::Client;

/// Bytes an in-memory connection holds each way (a socket's buffer).
pub const PIPE: usize = 64 * 1024;

/// The bound on each step of a client (virtual time).
pub const WAIT: Duration = Duration::from_secs(60);

/// A topic's channel and the last id published on it.
type Channel = (broadcast::Sender<Bytes>, u64);

/// An upstream whose events the test publishes: `GET /{topic}` streams the
/// `id: <n>` / `data: <text>` blocks published after it connected.
#[derive(Clone, Default)]
pub struct Feed {
    topics: Arc<Mutex<HashMap<String, Channel>>>,
    /// Connections made to the feed.
    pub connections: Arc<AtomicUsize>,
    /// Topics answered with a status line other than 200 (`"404 Not Found"`)
    /// and no body.
    answers: Arc<Mutex<HashMap<String, &'static str>>>,
}

impl Feed {
    fn channel(&self, topic: &str) -> broadcast::Sender<Bytes> {
        let mut topics = self.topics.lock();
        let entry = topics
            .entry(topic.to_string())
            .or_insert_with(|| (broadcast::channel(4096).0, 0));
        entry.0.clone()
    }

    /// Publishes an event with `data` on `topic`; returns its upstream id.
    pub fn publish(&self, topic: &str, data: &str) -> u64 {
        let tx = self.channel(topic);
        let mut topics = self.topics.lock();
        let entry = topics.get_mut(topic).expect("just made");
        entry.1 += 1;
        let id = entry.1;
        let _ = tx.send(Bytes::from(format!("id: {id}\ndata: {data}\n\n")));
        id
    }

    /// Publishes `n` events on `topic` as one chunk (they arrive together,
    /// as after a stall); returns the last id.
    pub fn publish_burst(&self, topic: &str, n: u64) -> u64 {
        let tx = self.channel(topic);
        let mut topics = self.topics.lock();
        let entry = topics.get_mut(topic).expect("just made");
        let mut block = String::new();
        for _ in 0..n {
            entry.1 += 1;
            block.push_str(&format!("id: {}\ndata: burst\n\n", entry.1));
        }
        let _ = tx.send(Bytes::from(block));
        entry.1
    }

    /// Answers requests for `topic` with `status` (`"404 Not Found"`) and
    /// an empty body from now on.
    pub fn answer(&self, topic: &str, status: &'static str) {
        self.answers.lock().insert(topic.to_string(), status);
    }

    /// Serves `topic` as a stream again.
    pub fn clear_answer(&self, topic: &str) {
        self.answers.lock().remove(topic);
    }

    /// Streams open on `topic` now (receivers of its channel).
    pub fn listeners(&self, topic: &str) -> usize {
        self.topics
            .lock()
            .get(topic)
            .map_or(0, |(tx, _)| tx.receiver_count())
    }
}

/// Serves one connection by hand: reads the request head, answers 200
/// `text/event-stream` with chunked framing (or the topic's set answer), and writes each block the
/// topic publishes as a chunk until either side goes.
async fn serve(feed: Feed, mut io: DuplexStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let topic = path.trim_start_matches('/');
    let answer = feed.answers.lock().get(topic).copied();
    if let Some(status) = answer {
        let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        let _ = io.write_all(reply.as_bytes()).await;
        // Held open as a keep-alive connection would be, until the client goes.
        let _ = io.read(&mut buf).await;
        return;
    }
    let mut events = feed.channel(topic).subscribe();
    let start =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
    if io.write_all(start.as_bytes()).await.is_err() {
        return;
    }
    let (mut reader, mut io) = tokio::io::split(io);
    loop {
        let received = tokio::select! {
            received = events.recv() => received,
            // The client closing its side ends the response.
            _ = reader.read(&mut buf) => return,
        };
        let block = match received {
            Ok(block) => block,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let chunk = [
            format!("{:x}\r\n", block.len()).as_bytes(),
            &block[..],
            b"\r\n",
        ]
        .concat();
        if io.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

impl Connector for Feed {
    type Io = hyper_util::rt::TokioIo<DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        self.connections.fetch_add(1, Ordering::SeqCst);
        let (client, server) = tokio::io::duplex(PIPE);
        tokio::spawn(serve(self.clone(), server));
        Ok(hyper_util::rt::TokioIo::new(client))
    }
}

/// The pool's settings for the feed (`http://feed.test/{topic}`).
pub fn pool_config() -> PoolConfig {
    PoolConfig::new("http://feed.test/{topic}")
}

/// A gateway on in-memory listeners, and how to reach it.
pub struct Gateway {
    pub handle: GatewayHandle<Feed>,
    pub streams: MemoryDialer,
    pub admin: MemoryDialer,
}

/// Starts a gateway in front of `feed` with `bridge`'s settings.
pub fn gateway(feed: &Feed, bridge: BridgeConfig) -> Gateway {
    gateway_with(feed, bridge, pool_config(), Hooks::default())
}

/// As [`gateway`], with the pool's settings and hooks.
pub fn gateway_with(feed: &Feed, bridge: BridgeConfig, pool: PoolConfig, hooks: Hooks) -> Gateway {
    let (streams, stream_dialer) = sse_bridge::memory(addr(8080), PIPE);
    let (admin, admin_dialer) = sse_bridge::memory(addr(9090), PIPE);
    let pool = Pool::new(pool, feed.clone()).expect("a valid pool");
    let handle = sse_bridge::start(bridge, pool, streams, admin, hooks).expect("starts");
    Gateway {
        handle,
        streams: stream_dialer,
        admin: admin_dialer,
    }
}

/// A loopback address with `port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `GET path` from `peer` through `dialer`, with `headers`.
pub async fn get(
    dialer: &MemoryDialer,
    peer: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Client {
    request(dialer, peer, http::Method::GET, path, headers).await
}

/// A request with no body, from `peer` through `dialer`.
pub async fn request(
    dialer: &MemoryDialer,
    peer: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Client {
    let io = dialer.connect(peer).await.expect("the gateway accepts");
    let host = dialer.addr().to_string();
    ssegate_tests::client::request(io, &host, method, path, headers, Bytes::new(), WAIT).await
}

/// Lets every task that can run, run (paused time does not move while
/// something is runnable).
pub async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// Waits until `done`, letting paused time jump ahead a little at a time,
/// at most `bound` of it.
pub async fn until(bound: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(bound, async {
        while !done() {
            // Paused time: a virtual millisecond per look.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for: {what}");
}
