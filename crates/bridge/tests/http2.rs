//! HTTP/2 on the stream listener keeps HTTP/1.1's guarantees per stream,
//! over in-memory connections: a stream whose window stays shut is a slow
//! consumer and is reset alone, subscriber limits count streams, a client
//! that resets streams in a loop is cut, the drain sends GOAWAY, and
//! `Last-Event-ID` resumes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Client, Feed, WAIT, addr, gateway, until};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sse_bridge::BridgeConfig;

fn config() -> BridgeConfig {
    BridgeConfig {
        replay_linger: Duration::ZERO,
        ..BridgeConfig::default()
    }
}

/// An HTTP/2 (prior knowledge) connection from `port` whose streams each
/// take at most `window` bytes the test has not read.
async fn connect(gw: &common::Gateway, port: u16, window: u32) -> SendRequest<Empty<Bytes>> {
    let io = gw.streams.connect(addr(port)).await.expect("accepted");
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(window)
        .initial_connection_window_size(8 << 20)
        .handshake(TokioIo::new(io))
        .await
        .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    sender
}

/// `GET path` on `sender` with `headers`, read as SSE.
async fn get(sender: &SendRequest<Empty<Bytes>>, path: &str, headers: &[(&str, &str)]) -> Client {
    let mut request = hyper::Request::get(format!("http://127.0.0.1:8080{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::new()).expect("a request");
    let response = sender
        .clone()
        .send_request(request)
        .await
        .expect("a response");
    Client::from_response(response, WAIT)
}

async fn connected(feed: &Feed, topic: &str) {
    until(Duration::from_secs(5), "the upstream is connected", || {
        feed.listeners(topic) > 0
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_window_stays_shut_is_reset_alone() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        queue_events: 16,
        write_timeout: Duration::from_secs(60),
        ..config()
    };
    let gw = gateway(&feed, bridge);
    let sender = connect(&gw, 53000, 16 << 10).await;
    let mut slow = get(&sender, "/v1/stream/AAPL", &[]).await;
    let mut fast = get(&sender, "/v1/stream/AAPL", &[]).await;
    assert_eq!((slow.status.as_u16(), fast.status.as_u16()), (200, 200));
    connected(&feed, "AAPL").await;
    feed.publish("AAPL", "first");
    assert_eq!(slow.next_event().await.data.as_str(), "first");
    assert_eq!(fast.next_event().await.data.as_str(), "first");
    // The slow stream is never read again: its 16 KiB window shuts, its
    // queue fills; the other stream on the same connection keeps up.
    let payload = "x".repeat(4096);
    for _ in 0..64 {
        feed.publish("AAPL", &payload);
        assert_eq!(fast.next_event().await.data.len(), 4096);
    }
    assert_eq!(gw.handle.streams(), 2);
    until(Duration::from_secs(90), "the slow stream is cut", || {
        gw.handle.streams() == 1
    })
    .await;
    assert_eq!(gw.handle.connections(), 1, "the connection stays");
    feed.publish("AAPL", "still");
    assert_eq!(fast.next_event().await.data.as_str(), "still");
    // What the slow stream had in its window, then its reset.
    let items = slow.drain().await;
    assert!(
        items.len() <= 16,
        "at most a window's worth: {}",
        items.len()
    );
    drop((slow, fast));
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn subscriber_limits_count_streams_not_connections() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        max_per_ip: 2,
        ..config()
    };
    let gw = gateway(&feed, bridge);
    let sender = connect(&gw, 54000, 65_535).await;
    let first = get(&sender, "/v1/stream/AAPL", &[]).await;
    let second = get(&sender, "/v1/stream/MSFT", &[]).await;
    let third = get(&sender, "/v1/stream/GOOG", &[]).await;
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    assert_eq!(third.status, 429, "the third stream from one address");
    assert!(
        third
            .text()
            .await
            .contains("too many streams from your address")
    );
    assert_eq!(gw.handle.streams(), 2);
    assert_eq!(gw.handle.connections(), 1);
    drop((first, second));
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn last_event_id_resumes_over_http2() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let sender = connect(&gw, 55000, 65_535).await;
    let mut live = get(&sender, "/v1/stream/AAPL", &[]).await;
    connected(&feed, "AAPL").await;
    for n in 1..=5 {
        feed.publish("AAPL", &format!("e{n}"));
    }
    let seen = live.events(5).await;
    let resumed_from = seen[1].id.to_string();
    // A second connection, as after a network blip.
    let again = connect(&gw, 55001, 65_535).await;
    let mut resumed = get(
        &again,
        "/v1/stream/AAPL",
        &[("last-event-id", &resumed_from)],
    )
    .await;
    let replayed: Vec<String> = resumed
        .events(3)
        .await
        .iter()
        .map(|e| e.data.to_string())
        .collect();
    assert_eq!(replayed, ["e3", "e4", "e5"], "no gap, no duplicate");
    feed.publish("AAPL", "e6");
    assert_eq!(resumed.next_event().await.data.as_str(), "e6");
    drop((live, resumed));
    gw.handle.shutdown().await;
}

/// The h2 crate's client: streams reset at will.
async fn raw(
    gw: &common::Gateway,
    port: u16,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let io = gw.streams.connect(addr(port)).await.expect("accepted");
    let (sender, connection) = h2::client::handshake(io)
        .await
        .expect("an HTTP/2 handshake");
    (sender, tokio::spawn(connection))
}

fn request(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://127.0.0.1:8080{path}"))
        .body(())
        .expect("a request")
}

// Real time: the reset bucket refills with the clock, and paused time
// would jump it ahead whenever every task waits.
#[tokio::test]
async fn a_client_that_opens_and_resets_streams_in_a_loop_is_cut() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let (mut sender, connection) = raw(&gw, 56000).await;
    let mut cut = None;
    for n in 0..200 {
        let ready = tokio::time::timeout(WAIT, sender.clone().ready())
            .await
            .expect("in time");
        let Ok(ready) = ready else {
            cut = Some(n);
            break;
        };
        sender = ready;
        let Ok((response, _)) = sender.send_request(request("/v1/stream/AAPL"), true) else {
            cut = Some(n);
            break;
        };
        // The headers, then the stream dropped: RST_STREAM(CANCEL).
        match tokio::time::timeout(WAIT, response).await.expect("in time") {
            Ok(response) => drop(response),
            Err(_) => {
                cut = Some(n);
                break;
            }
        }
    }
    let cut = cut.expect("the connection is cut");
    assert!(
        (20..=40).contains(&cut),
        "cut after the burst of 20 resets: {cut}"
    );
    let ended = tokio::time::timeout(WAIT, connection)
        .await
        .expect("in time")
        .expect("joined");
    let reason = ended.expect_err("closed by the gateway").reason();
    assert_eq!(reason, Some(h2::Reason::ENHANCE_YOUR_CALM));
    until(WAIT, "its streams are released", || {
        gw.handle.streams() == 0
    })
    .await;
    // Another client is not affected.
    let sender = connect(&gw, 56001, 65_535).await;
    assert_eq!(get(&sender, "/v1/stream/AAPL", &[]).await.status, 200);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_drain_sends_goaway_and_open_streams_end_with_their_hint() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let (sender, connection) = raw(&gw, 57000).await;
    let mut sender = sender.ready().await.expect("ready");
    let (response, _) = sender
        .send_request(request("/v1/stream/AAPL"), true)
        .expect("sent");
    let response = response.await.expect("a response");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let shutdown = tokio::spawn(gw.handle.shutdown());
    // GOAWAY: the client may open no new stream on this connection.
    let refused = async {
        loop {
            match sender.clone().ready().await {
                Err(e) => return e,
                Ok(mut ready) => match ready.send_request(request("/v1/stream/AAPL"), true) {
                    Err(e) => return e,
                    Ok((response, _)) => {
                        if let Err(e) = response.await {
                            return e;
                        }
                        // Paused time: before the drain began; look again.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
    };
    let refused = tokio::time::timeout(WAIT, refused)
        .await
        .expect("refused in time");
    assert!(
        refused.is_go_away() || refused.reason() == Some(h2::Reason::REFUSED_STREAM),
        "{refused:?}"
    );
    // The open stream still ends the drain's way: a `retry:` hint, then
    // its end.
    let mut text = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, body.data())
        .await
        .expect("in time")
    {
        let Ok(chunk) = chunk else { break };
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.trim_end().ends_with("retry: 3000") || text.contains("\nretry:"),
        "{text:?}"
    );
    shutdown.await.expect("drained");
    let _ = tokio::time::timeout(WAIT, connection).await;
}

#[tokio::test(start_paused = true)]
async fn a_page_closing_streams_it_has_had_a_while_keeps_its_connection() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let (sender, connection) = raw(&gw, 58000).await;
    let mut bodies = Vec::new();
    for _ in 0..30 {
        let mut ready = sender.clone().ready().await.expect("ready");
        let (response, _) = ready
            .send_request(request("/v1/stream/AAPL"), true)
            .expect("sent");
        let response = response.await.expect("a response");
        assert_eq!(response.status(), 200);
        bodies.push(response.into_body());
    }
    // Paused time: the streams have been open two seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // 30 resets at once, more than the burst of 20: not the attack.
    drop(bodies);
    until(WAIT, "the streams are released", || {
        gw.handle.streams() == 0
    })
    .await;
    let mut ready = sender
        .clone()
        .ready()
        .await
        .expect("the connection is still open");
    let (response, _) = ready
        .send_request(request("/v1/stream/AAPL"), true)
        .expect("sent");
    assert_eq!(response.await.expect("a response").status(), 200);
    assert!(!connection.is_finished());
    gw.handle.shutdown().await;
}
