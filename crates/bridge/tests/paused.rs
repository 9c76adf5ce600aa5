//! The bridge's timing, on paused time: heartbeats, the drain, the replay
//! linger, the header-read deadline, the write timeout. Everything runs in
//! memory (listeners, upstream, clients), so virtual time reaches every
//! timer and hours pass in milliseconds.

mod common;

use std::time::Duration;

use common::{Feed, addr, gateway, get, settle, until};
use sse_bridge::BridgeConfig;
use sse_parser::Item;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

fn config() -> BridgeConfig {
    BridgeConfig {
        replay_linger: Duration::ZERO,
        ..BridgeConfig::default()
    }
}

/// Waits for the upstream of `topic` (it connects when the first
/// subscriber comes), then publishes one event that `client` must see.
async fn first_event(feed: &Feed, topic: &str, client: &mut common::Client) {
    until(Duration::from_secs(5), "the upstream is connected", || {
        feed.listeners(topic) > 0
    })
    .await;
    feed.publish(topic, "first");
    let event = client.next_event().await;
    assert_eq!(event.data.as_str(), "first");
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_gets_a_heartbeat_every_fifteen_seconds_and_nothing_else() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let mut client = get(&gw.streams, addr(40000), "/v1/stream/AAPL", &[]).await;
    assert_eq!(client.status, 200);
    assert!(
        matches!(client.next_item().await, Some(Item::Retry(d)) if d == Duration::from_secs(3))
    );
    first_event(&feed, "AAPL", &mut client).await;
    let mut last = Instant::now();
    for beat in 1..=4u32 {
        assert!(
            matches!(client.next_item().await, Some(Item::Comment(_))),
            "beat {beat}"
        );
        // Fifteen seconds after the last write, rounded up to the grid (a
        // sixteenth of the interval) on which idle streams wake together.
        let gap = last.elapsed();
        assert!(
            gap >= Duration::from_secs(15) && gap <= Duration::from_millis(15_938),
            "beat {beat} after {gap:?}"
        );
        last = Instant::now();
    }
    // An event resets the interval.
    feed.publish("AAPL", "news");
    assert_eq!(client.next_event().await.data.as_str(), "news");
    let after = Instant::now();
    assert!(matches!(client.next_item().await, Some(Item::Comment(_))));
    assert!(after.elapsed() >= Duration::from_secs(15));
    drop(client);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_drain_refuses_newcomers_at_once_and_ends_every_stream_over_the_spread() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let mut clients = Vec::new();
    for i in 0..20u16 {
        let mut client = get(&gw.streams, addr(41000 + i), "/v1/stream/AAPL", &[]).await;
        assert_eq!(client.status, 200);
        client.next_item().await;
        clients.push(client);
    }
    let (streams, admin) = (gw.streams.clone(), gw.admin.clone());
    let started = Instant::now();
    let shutdown = tokio::spawn(gw.handle.shutdown());
    settle().await;
    let ready = get(&admin, addr(42000), "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "not ready at once");
    let newcomer = get(&streams, addr(42001), "/v1/stream/AAPL", &[]).await;
    assert_eq!(newcomer.status, 503);
    assert!(newcomer.headers.contains_key("retry-after"));
    // Each stream ends with a retry hint at its own moment in the 10 s
    // spread: the hint is 3 s plus that moment.
    let mut ended_at = Vec::new();
    let mut hints = Vec::new();
    for client in &mut clients {
        let mut last_retry = None;
        while let Some(item) = client.next_item().await {
            if let Item::Retry(d) = item {
                last_retry = Some(d);
            }
        }
        ended_at.push(started.elapsed());
        hints.push(last_retry.expect("a final retry hint"));
    }
    shutdown.await.expect("the drain completes");
    assert!(
        started.elapsed() <= Duration::from_secs(20),
        "within the drain deadline: {:?}",
        started.elapsed()
    );
    assert!(
        ended_at.iter().all(|t| *t <= Duration::from_secs(10)),
        "{ended_at:?}"
    );
    let spread = ended_at
        .iter()
        .max()
        .unwrap()
        .saturating_sub(*ended_at.iter().min().unwrap());
    assert!(
        spread >= Duration::from_secs(5),
        "spread out, not all at once: {ended_at:?}"
    );
    assert!(
        hints
            .iter()
            .all(|h| *h >= Duration::from_secs(3) && *h <= Duration::from_secs(13)),
        "{hints:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_topic_lingers_for_its_replay_linger_then_lets_its_upstream_go() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        replay_linger: Duration::from_secs(30),
        ..BridgeConfig::default()
    };
    let mut pool = common::pool_config();
    pool.idle_linger = Duration::from_secs(60);
    let gw = common::gateway_with(&feed, bridge, pool, sse_bridge::Hooks::default());
    let mut client = get(&gw.streams, addr(43000), "/v1/stream/AAPL", &[]).await;
    first_event(&feed, "AAPL", &mut client).await;
    drop(client);
    until(Duration::from_secs(1), "the client left", || {
        gw.handle.streams() == 0
    })
    .await;
    let left = Instant::now();
    // Paused time: just short of the replay linger, the topic is kept...
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(gw.handle.registries().0, 1, "the topic lingers");
    // ...and a moment after it, released to the pool, which keeps the
    // upstream for its own idle linger, then closes it.
    until(Duration::from_secs(2), "the topic is released", || {
        gw.handle.registries().0 == 0
    })
    .await;
    assert!(left.elapsed() >= Duration::from_secs(30));
    assert_eq!(
        feed.listeners("AAPL"),
        1,
        "the pool's idle linger holds the upstream"
    );
    until(Duration::from_secs(61), "the upstream is released", || {
        feed.listeners("AAPL") == 0
    })
    .await;
    assert!(
        left.elapsed() >= Duration::from_secs(90),
        "{:?}",
        left.elapsed()
    );
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_cut_at_the_header_deadline() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let mut silent = gw.streams.connect(addr(44000)).await.expect("accepted");
    let mut partial = gw.streams.connect(addr(44001)).await.expect("accepted");
    partial
        .write_all(b"GET /v1/stream/AAPL HTTP/1.1\r\n")
        .await
        .expect("written");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    assert_eq!(silent.read(&mut buf).await.expect("closed, not failed"), 0);
    assert_eq!(partial.read(&mut buf).await.expect("closed, not failed"), 0);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(11),
        "cut at the 10 s header deadline: {took:?}"
    );
    // Meanwhile, and after, others are served.
    let client = get(&gw.streams, addr(44002), "/v1/stream/AAPL", &[]).await;
    assert_eq!(client.status, 200);
    drop(client);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_head_that_arrives_in_pieces_takes_the_fast_path() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let mut io = gw.streams.connect(addr(45000)).await.expect("accepted");
    for part in [
        "GET /v1/stream/AAPL HT",
        "TP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n",
        "Accept: text/event-stream\r\n\r\n",
    ] {
        io.write_all(part.as_bytes()).await.expect("written");
        // Paused time: each part is read on its own before the next.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("retry: 3000") {
        let n = io.read(&mut buf).await.expect("readable");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&seen);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    drop(io);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_stops_reading_is_cut_at_the_write_timeout() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        queue_events: 16,
        write_timeout: Duration::from_secs(60),
        ..config()
    };
    let gw = gateway(&feed, bridge);
    let mut reader = get(&gw.streams, addr(46000), "/v1/stream/AAPL", &[]).await;
    let mut stalled = get(&gw.streams, addr(46001), "/v1/stream/AAPL", &[]).await;
    stalled.next_item().await;
    first_event(&feed, "AAPL", &mut reader).await;
    // The stalled client never reads again: its pipe (64 KiB) and queue
    // fill; the reader keeps up.
    let payload = "x".repeat(4096);
    for _ in 0..64 {
        feed.publish("AAPL", &payload);
        reader.next_event().await;
    }
    assert_eq!(gw.handle.streams(), 2);
    let stopped = Instant::now();
    until(Duration::from_secs(90), "the stalled client is cut", || {
        gw.handle.connections() == 1
    })
    .await;
    let took = stopped.elapsed();
    // Disconnected by the policy when its queue filled, the goodbye never
    // written: the sweep (every 5 s) cuts it at the write timeout.
    assert!(
        took >= Duration::from_secs(55) && took <= Duration::from_secs(66),
        "cut at the 60 s write timeout: {took:?}"
    );
    feed.publish("AAPL", "still");
    assert_eq!(reader.next_event().await.data.as_str(), "still");
    drop((reader, stalled));
    gw.handle.shutdown().await;
}

/// Reads `client` until an event with `data`; returns the event types seen.
async fn types_until(client: &mut common::Client, data: &str) -> Vec<String> {
    let mut types = Vec::new();
    loop {
        let event = client.next_event().await;
        types.push(event.event_type.to_string());
        if event.data.as_str() == data {
            return types;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn falling_behind_the_upstream_is_told_live_and_to_later_resumes() {
    let feed = Feed::default();
    let mut pool = common::pool_config();
    // The hub may fall 4 events behind the pool's stream, no more.
    pool.stream.channel_capacity = 4;
    let bridge = BridgeConfig {
        replay_linger: Duration::from_secs(30),
        ..BridgeConfig::default()
    };
    let gw = common::gateway_with(&feed, bridge, pool, sse_bridge::Hooks::default());
    let mut keeper = get(&gw.streams, addr(55000), "/v1/stream/AAPL", &[]).await;
    first_event(&feed, "AAPL", &mut keeper).await;
    let mut client = get(&gw.streams, addr(55001), "/v1/stream/AAPL", &[]).await;
    feed.publish("AAPL", "before");
    let before = client.next_event().await;
    assert_eq!(keeper.next_event().await.data.as_str(), "before");
    drop(client);
    // Fifty events in one chunk: the hub misses all but the last four.
    feed.publish_burst("AAPL", 50);
    feed.publish("AAPL", "after");
    let live = types_until(&mut keeper, "after").await;
    assert!(live.contains(&"ssegate-gap".to_string()), "{live:?}");
    // A resume from before the gap crosses it: told, not silent.
    let mut back = get(
        &gw.streams,
        addr(55002),
        "/v1/stream/AAPL",
        &[("last-event-id", before.id.as_str())],
    )
    .await;
    let replayed = types_until(&mut back, "after").await;
    assert_eq!(
        replayed.first().map(String::as_str),
        Some("ssegate-gap"),
        "the gap comes first, where it happened: {replayed:?}"
    );
    drop((keeper, back));
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn reports_count_rotations_and_a_daily_report_is_written_and_bounded() {
    let dir = std::env::temp_dir().join(format!("ssegate-reports-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a directory");
    // Two older reports already there: one is over the bound.
    for old in ["ssegate-report-1.json", "ssegate-report-2.json"] {
        std::fs::write(dir.join(old), "{}\n").expect("written");
    }
    let feed = Feed::default();
    let bridge = BridgeConfig {
        report_dir: Some(dir.clone()),
        report_keep: 2,
        ..config()
    };
    let gw = gateway(&feed, bridge);
    let mut client = get(&gw.streams, addr(56000), "/v1/stream/AAPL", &[]).await;
    first_event(&feed, "AAPL", &mut client).await;
    let rotate = common::request(
        &gw.admin,
        addr(56001),
        http::Method::POST,
        "/admin/streams/AAPL/rotate",
        &[("x-ssegate-action", "1")],
    )
    .await;
    assert_eq!(rotate.status, 202);
    until(Duration::from_secs(5), "the new connection is up", || {
        feed.listeners("AAPL") == 2
    })
    .await;
    feed.publish("AAPL", "handover");
    assert_eq!(client.next_event().await.data.as_str(), "handover");
    until(Duration::from_secs(5), "the rotation completed", || {
        gw.handle.pool().counts().rotations == 1
    })
    .await;
    // Paused time: the minute closes and housekeeping records it.
    tokio::time::sleep(Duration::from_secs(70)).await;
    let report = get(&gw.admin, addr(56002), "/admin/report?window=1h", &[])
        .await
        .text()
        .await;
    let report: serde_json::Value = serde_json::from_str(&report).expect("JSON");
    assert_eq!(report["rotations"], 1, "{report}");
    assert_eq!(report["errors"]["connect"], 0, "{report}");
    // A day later (paused time): the day's report, and only the newest
    // two files kept.
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    until(
        Duration::from_secs(5),
        "the daily report is written",
        || {
            std::fs::read_dir(&dir).is_ok_and(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().len() > "ssegate-report-2.json".len())
            })
        },
    )
    .await;
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("readable")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Oldest first: by length (the stamps have different widths), then name.
    files.sort_by_key(|f| (f.len(), f.clone()));
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        files[0], "ssegate-report-2.json",
        "the oldest went: {files:?}"
    );
    let daily = std::fs::read_to_string(dir.join(&files[1])).expect("readable");
    assert_eq!(daily.lines().count(), 1, "one JSON line");
    let daily: serde_json::Value = serde_json::from_str(&daily).expect("JSON");
    assert_eq!(daily["rotations"], 1, "{daily}");
    drop(client);
    gw.handle.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
