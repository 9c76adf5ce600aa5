//! F8: slow consumers. A fast upstream (8 KiB events, about 1,000 a second)
//! behind the gateway; one client reads everything, another reads nothing
//! for a while over a tiny socket buffer. Under each policy the fast client
//! gets every event in order, and the slow one gets what its policy says.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{bridge_config, eventually, get, get_small_buffer};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use sse_bridge::Policy;
use sse_conn_pool::{Pool, PoolConfig, TcpConnector};
use sse_parser::{Event, Item};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Serves `/v1/quotes/{topic}/stream`: 8 KiB events, one per millisecond,
/// numbered from 1 per connection (resume is not needed here).
async fn fast_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: hyper::Request<Incoming>| {
                    let topic = req
                        .uri()
                        .path()
                        .split('/')
                        .nth(3)
                        .unwrap_or("X")
                        .to_string();
                    let (tx, rx) = mpsc::channel::<Bytes>(4);
                    tokio::spawn(async move {
                        let pad = "x".repeat(8 * 1024);
                        let mut tick = tokio::time::interval(Duration::from_millis(1));
                        for n in 1u64.. {
                            tick.tick().await;
                            let event = format!(
                                "id: {n}\ndata: {{\"s\":\"{topic}\",\"n\":{n},\"pad\":\"{pad}\"}}\n\n"
                            );
                            if tx.send(Bytes::from(event)).await.is_err() {
                                return;
                            }
                        }
                    });
                    let mut response = hyper::Response::new(ChannelBody(rx));
                    response
                        .headers_mut()
                        .insert("content-type", "text/event-stream".parse().expect("value"));
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (addr, task)
}

/// A response body fed by a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn n(event: &Event) -> u64 {
    let value: serde_json::Value = serde_json::from_str(&event.data).expect("JSON data");
    value["n"].as_u64().expect("a sequence number")
}

/// A gateway in front of the fast upstream with small queues and `policy`.
async fn gateway(upstream: SocketAddr, policy: Policy) -> sse_bridge::GatewayHandle<TcpConnector> {
    let mut pool = PoolConfig::new(format!("http://{upstream}/v1/quotes/{{topic}}/stream"));
    pool.stream.limits = sse_parser::Limits::default();
    let mut bridge = bridge_config();
    bridge.queue_events = 32;
    bridge.queue_bytes = 512 * 1024;
    bridge.write_timeout = Duration::from_secs(30);
    bridge.policy = policy;
    let pool = Pool::new(pool, TcpConnector).expect("valid");
    common::start(bridge, pool, sse_bridge::Hooks::default()).await
}

/// The fast client reads `count` events, all in order.
async fn fast_reads_everything(client: &mut common::Client, count: usize) {
    let mut last = None;
    for _ in 0..count {
        let event = client.next_event().await;
        let n = n(&event);
        if let Some(prev) = last {
            assert_eq!(n, prev + 1, "the fast client lost nothing");
        }
        last = Some(n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f8_disconnect_ends_the_slow_stream_only() {
    let (upstream, server) = fast_upstream().await;
    let gw = gateway(upstream, Policy::Disconnect).await;
    let mut slow = get_small_buffer(gw.addr(), "/v1/stream/AAPL").await;
    let mut fast = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    assert_eq!((slow.status.as_u16(), fast.status.as_u16()), (200, 200));
    // While the slow client reads nothing, the fast one gets everything.
    fast_reads_everything(&mut fast, 1500).await;
    // When the slow client reads again, it finds what the socket buffers
    // held, then the goodbye: a retry hint, and the end of its stream.
    let items = slow.drain().await;
    assert!(
        matches!(items.last(), Some(Item::Retry(_))),
        "the disconnected stream ends with a retry hint"
    );
    let gap = items
        .iter()
        .any(|i| matches!(i, Item::Event(e) if e.event_type.as_str() == "ssegate-gap"));
    assert!(!gap, "disconnect never sends gaps");
    eventually("only the fast stream is left", || gw.streams() == 1).await;
    drop(fast);
    gw.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f8_drop_oldest_tells_the_slow_client_what_it_missed() {
    let (upstream, server) = fast_upstream().await;
    let gw = gateway(upstream, Policy::DropOldest).await;
    let mut slow = get_small_buffer(gw.addr(), "/v1/stream/AAPL").await;
    let mut fast = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    fast_reads_everything(&mut fast, 1500).await;
    assert_eq!(gw.streams(), 2, "the slow client stays connected");
    // Now it reads: somewhere there is a gap notice, with a count, and the
    // numbers jump by at least that much there.
    let mut last = None;
    let mut gap = None;
    for _ in 0..3000 {
        let event = slow.next_event().await;
        if event.event_type.as_str() == "ssegate-gap" {
            let data: serde_json::Value = serde_json::from_str(&event.data).expect("JSON");
            assert_eq!(data["topic"], "AAPL");
            gap = data["missed"].as_u64();
            continue;
        }
        let n = n(&event);
        if let (Some(prev), Some(missed)) = (last, gap) {
            assert!(
                n >= prev + 1 + missed,
                "a gap of at least {missed} after {prev}: {n}"
            );
            break;
        }
        last = Some(n);
    }
    assert!(gap.is_some_and(|m| m > 0), "a gap notice arrived");
    drop((fast, slow));
    gw.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f8_conflate_keeps_the_newest_without_disconnecting() {
    let (upstream, server) = fast_upstream().await;
    let gw = gateway(upstream, Policy::Conflate).await;
    let mut slow = get_small_buffer(gw.addr(), "/v1/stream/AAPL").await;
    let mut fast = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    fast_reads_everything(&mut fast, 1500).await;
    assert_eq!(gw.streams(), 2, "the slow client stays connected");
    // Conflated: past what the socket buffers held, the numbers jump (stale
    // quotes were replaced), with no gap notices.
    let mut prev: Option<u64> = None;
    let mut jumped = false;
    for _ in 0..3000 {
        let event = slow.next_event().await;
        assert_ne!(event.event_type.as_str(), "ssegate-gap");
        let n = n(&event);
        if let Some(p) = prev {
            assert!(n > p, "still in order");
            jumped |= n > p + 1;
        }
        prev = Some(n);
        if jumped {
            break;
        }
    }
    assert!(jumped, "stale events were conflated away");
    drop((fast, slow));
    gw.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_again_is_cut_at_the_write_timeout() {
    let (upstream, server) = fast_upstream().await;
    let mut pool = PoolConfig::new(format!("http://{upstream}/v1/quotes/{{topic}}/stream"));
    pool.stream.limits = sse_parser::Limits::default();
    let mut bridge = bridge_config();
    bridge.queue_events = 32;
    bridge.queue_bytes = 512 * 1024;
    bridge.write_timeout = Duration::from_secs(1);
    let pool = Pool::new(pool, TcpConnector).expect("valid");
    let gw = common::start(bridge, pool, sse_bridge::Hooks::default()).await;
    let slow = get_small_buffer(gw.addr(), "/v1/stream/AAPL").await;
    let mut fast = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    fast_reads_everything(&mut fast, 500).await;
    // The fast client keeps reading; the slow one never does again.
    let reader = tokio::spawn(async move {
        loop {
            fast.next_event().await;
        }
    });
    // The housekeeping sweep (every 5 s) closes the stalled socket.
    eventually("the stalled client's socket was closed", || {
        gw.streams() == 1 && gw.connections() == 1
    })
    .await;
    reader.abort();
    drop(slow);
    gw.shutdown().await;
    server.abort();
}
