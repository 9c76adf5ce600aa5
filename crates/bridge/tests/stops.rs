//! What the upstream refuses, and topics that never deliver: a 404, 410 or
//! 204 frees the topic's pool slot at once, is remembered for
//! `negative_ttl` and reaches the client as an answer a browser does not
//! retry in a loop; an address cannot fill the pool with topics that never
//! deliver; a full pool makes a subscriber wait up to `pending_wait`.
//! Paused time, everything in memory (see `common`).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Feed, addr, gateway_with, get, pool_config, settle, until};
use sse_bridge::{BridgeConfig, Hooks};
use sse_conn_pool::PoolConfig;

fn pool(max_streams: usize) -> PoolConfig {
    PoolConfig {
        max_streams,
        ..pool_config()
    }
}

#[tokio::test(start_paused = true)]
async fn an_upstream_404_frees_the_slot_at_once_and_is_a_404_before_any_stream() {
    let feed = Feed::default();
    feed.answer("GONE", "404 Not Found");
    // The default lingers (five minutes each) are what kept a refused
    // topic's slot before.
    let gw = gateway_with(&feed, BridgeConfig::default(), pool(2), Hooks::default());
    let refused = get(&gw.streams, addr(40000), "/v1/stream/GONE", &[]).await;
    assert_eq!(refused.status, 404, "answered before any stream starts");
    assert!(
        refused.text().await.contains("no topic `GONE`"),
        "the reason is told"
    );
    settle().await;
    let counts = gw.handle.pool().counts();
    assert_eq!(counts.streams, 0, "the slot is free at once: {counts:?}");
    assert_eq!(feed.connections.load(Ordering::SeqCst), 1);

    // Within negative_ttl the answer comes from memory: no upstream request.
    tokio::time::advance(Duration::from_secs(30)).await;
    let again = get(&gw.streams, addr(40001), "/v1/stream/GONE", &[]).await;
    assert_eq!(again.status, 404);
    assert_eq!(feed.connections.load(Ordering::SeqCst), 1, "remembered");

    // After it, the upstream is asked again (and has the topic by now).
    tokio::time::advance(Duration::from_secs(31)).await;
    feed.clear_answer("GONE");
    let mut back = get(&gw.streams, addr(40002), "/v1/stream/GONE", &[]).await;
    assert_eq!(back.status, 200);
    assert_eq!(feed.connections.load(Ordering::SeqCst), 2);
    until(Duration::from_secs(5), "the upstream is connected", || {
        feed.listeners("GONE") > 0
    })
    .await;
    feed.publish("GONE", "here now");
    assert_eq!(back.next_event().await.data.as_str(), "here now");
    drop(back);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fifty_missing_topics_do_not_block_a_working_one() {
    let feed = Feed::default();
    for i in 0..50 {
        feed.answer(&format!("MISSING{i}"), "404 Not Found");
    }
    let gw = gateway_with(&feed, BridgeConfig::default(), pool(4), Hooks::default());
    for round in 0..3u16 {
        // Within the address's request rate (50 a second, burst 100).
        tokio::time::advance(Duration::from_secs(2)).await;
        for i in 0..50u16 {
            let path = format!("/v1/stream/MISSING{i}");
            let client = get(&gw.streams, addr(41000 + round * 50 + i), &path, &[]).await;
            assert_eq!(client.status, 404, "round {round}, topic {i}");
        }
    }
    // Each was asked once; the rounds after came from memory.
    assert_eq!(feed.connections.load(Ordering::SeqCst), 50);
    let mut working = get(&gw.streams, addr(42000), "/v1/stream/LIVE", &[]).await;
    assert_eq!(working.status, 200, "a slot is free for a working topic");
    until(Duration::from_secs(5), "the upstream is connected", || {
        feed.listeners("LIVE") > 0
    })
    .await;
    feed.publish("LIVE", "tick");
    assert_eq!(working.next_event().await.data.as_str(), "tick");
    drop(working);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_upstream_204_is_a_204_and_a_410_a_404() {
    let feed = Feed::default();
    feed.answer("DONE", "204 No Content");
    feed.answer("OLD", "410 Gone");
    feed.answer("BAD", "400 Bad Request");
    let gw = gateway_with(&feed, BridgeConfig::default(), pool(4), Hooks::default());
    // EventSource stops for good on a 204 and on any status but 200: the
    // browser does not poll a stopped upstream.
    let done = get(&gw.streams, addr(40000), "/v1/stream/DONE", &[]).await;
    assert_eq!(done.status, 204);
    let old = get(&gw.streams, addr(40001), "/v1/stream/OLD", &[]).await;
    assert_eq!(old.status, 404);
    let bad = get(&gw.streams, addr(40002), "/v1/stream/BAD", &[]).await;
    assert_eq!(bad.status, 502);
    assert!(bad.headers.contains_key("retry-after"));
    settle().await;
    assert_eq!(gw.handle.pool().counts().streams, 0);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn one_address_cannot_fill_the_pool_with_topics_that_never_deliver() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        max_unproven_topics_per_ip: 2,
        ..BridgeConfig::default()
    };
    let gw = gateway_with(&feed, bridge, pool(8), Hooks::default());
    // Two silent topics (open, never an event) are the address's share.
    let mut held = Vec::new();
    for (port, topic) in [(40000, "QUIET1"), (40001, "QUIET2")] {
        let client = get(&gw.streams, addr(port), &format!("/v1/stream/{topic}"), &[]).await;
        assert_eq!(client.status, 200);
        held.push(client);
    }
    let third = get(&gw.streams, addr(40002), "/v1/stream/QUIET3", &[]).await;
    assert_eq!(third.status, 429, "over the address's share");
    assert!(third.headers.contains_key("retry-after"));
    // Joining a topic that exists costs no share.
    let join = get(&gw.streams, addr(40003), "/v1/stream/QUIET1", &[]).await;
    assert_eq!(join.status, 200);
    // Another address is not affected.
    let other = get(
        &gw.streams,
        std::net::SocketAddr::from(([127, 0, 0, 2], 40000)),
        "/v1/stream/QUIET3",
        &[],
    )
    .await;
    assert_eq!(other.status, 200);
    // A topic that delivers is proven: its share comes back.
    until(Duration::from_secs(5), "the upstream is connected", || {
        feed.listeners("QUIET1") > 0
    })
    .await;
    feed.publish("QUIET1", "alive");
    assert_eq!(held[0].next_event().await.data.as_str(), "alive");
    settle().await;
    let fourth = get(&gw.streams, addr(40004), "/v1/stream/QUIET4", &[]).await;
    assert_eq!(fourth.status, 200, "one share freed by the delivery");
    drop((held, join, other, fourth));
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_makes_a_newcomer_wait_up_to_pending_wait() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        replay_linger: Duration::ZERO,
        ..BridgeConfig::default()
    };
    let pool = PoolConfig {
        idle_linger: Duration::ZERO,
        pending_wait: Duration::from_secs(10),
        ..pool(1)
    };
    let gw = gateway_with(&feed, bridge, pool, Hooks::default());
    let first = get(&gw.streams, addr(40000), "/v1/stream/A", &[]).await;
    assert_eq!(first.status, 200);
    // The pool is full: the next topic waits for a slot...
    let streams = gw.streams.clone();
    let waiting =
        tokio::spawn(async move { get(&streams, addr(40001), "/v1/stream/B", &[]).await });
    tokio::time::advance(Duration::from_secs(3)).await;
    settle().await;
    assert!(!waiting.is_finished(), "waits while the pool is full");
    // ...and gets the one freed when the first subscriber leaves.
    drop(first);
    let second = waiting.await.expect("the request completes");
    assert_eq!(second.status, 200);

    // Nobody leaves: a clear 503 once pending_wait is over.
    let started = tokio::time::Instant::now();
    let late = get(&gw.streams, addr(40002), "/v1/stream/C", &[]).await;
    assert_eq!(late.status, 503);
    assert!(late.headers.contains_key("retry-after"));
    assert!(started.elapsed() >= Duration::from_secs(10));
    drop(second);
    gw.handle.shutdown().await;
}
