//! The gateway end to end: sse-upstream-sim, then the gateway (pool and
//! bridge, in-process), then N clients over real loopback sockets.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{
    WAIT, bridge_config, eventually, gateway, get, pool_config, post_form, reload, request, sim,
};
use sse_parser::{Event, Item};

/// The upstream sequence number carried in a quote's data.
/// The header every admin action carries (a page of another site cannot
/// send it).
const ACT: (&str, &str) = ("x-ssegate-action", "1");

fn n(event: &Event) -> u64 {
    let value: serde_json::Value = serde_json::from_str(&event.data).expect("JSON data");
    value["n"].as_u64().expect("a sequence number")
}

fn symbol(event: &Event) -> String {
    let value: serde_json::Value = serde_json::from_str(&event.data).expect("JSON data");
    value["s"].as_str().expect("a symbol").to_string()
}

fn contiguous(ns: &[u64]) -> bool {
    ns.windows(2).all(|w| w[1] == w[0] + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_receives_every_event_in_order() {
    let sim = sim(&["AAPL"], 200.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
        assert_eq!(client.status, 200);
        assert_eq!(client.headers["content-type"], "text/event-stream");
        clients.push(client);
    }
    let mut by_n: HashMap<u64, String> = HashMap::new();
    for client in &mut clients {
        assert!(
            matches!(client.next_item().await, Some(Item::Retry(_))),
            "a retry hint first"
        );
        let events = client.events(30).await;
        let ns: Vec<u64> = events.iter().map(n).collect();
        assert!(contiguous(&ns), "in order, no gap: {ns:?}");
        for event in &events {
            assert_eq!(
                event.event_type.as_str(),
                "quote",
                "single topic keeps the type"
            );
            // The same upstream event has the same gateway id for everyone.
            let id = by_n.entry(n(event)).or_insert_with(|| event.id.to_string());
            assert_eq!(*id, event.id.as_str());
        }
    }
    assert_eq!(
        sim.connections(),
        1,
        "one upstream connection for 20 clients"
    );
    drop(clients);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_topic_resume_by_header_and_by_query_has_no_gap_and_no_duplicate() {
    let sim = sim(&["AAPL"], 200.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    // A second subscriber keeps the topic (and its replay buffer) alive.
    let mut keeper = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    keeper.events(1).await;
    for by_query in [false, true] {
        let mut client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
        let seen = client.events(10).await;
        let last = seen.last().expect("events").clone();
        drop(client);
        // While it is away, the keeper sees 40 more quotes go by: the
        // resume must replay them.
        while n(&keeper.next_event().await) < n(&last) + 40 {}
        let mut client = if by_query {
            let path = format!("/v1/stream/AAPL?lastEventId={}", last.id.as_str());
            get(gw.addr(), &path, &[]).await
        } else {
            get(
                gw.addr(),
                "/v1/stream/AAPL",
                &[("last-event-id", last.id.as_str())],
            )
            .await
        };
        let resumed = client.events(60).await;
        let ns: Vec<u64> = std::iter::once(n(&last))
            .chain(resumed.iter().map(n))
            .collect();
        assert!(contiguous(&ns), "query={by_query}: {ns:?}");
    }
    drop(keeper);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_topic_streams_name_their_topics_and_resume_per_topic() {
    let sim = sim(&["AAPL", "MSFT"], 100.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let path = "/v1/stream?topic=AAPL&topic=MSFT";
    let mut keeper = get(gw.addr(), path, &[]).await;
    keeper.events(1).await;
    let mut client = get(gw.addr(), path, &[]).await;
    let seen = client.events(20).await;
    let mut last_n: HashMap<String, u64> = HashMap::new();
    for event in &seen {
        let topic = symbol(event);
        assert_eq!(
            event.event_type.as_str(),
            format!("{topic}:quote"),
            "the type names the topic"
        );
        if let Some(prev) = last_n.insert(topic, n(event)) {
            assert_eq!(n(event), prev + 1, "per topic in order");
        }
    }
    let last_id = seen.last().expect("events").id.to_string();
    assert!(
        last_id.contains("AAPL=") && last_id.contains("MSFT="),
        "{last_id}"
    );
    drop(client);
    // While it is away, the keeper sees 20 more quotes of each topic go by.
    let mut missed: HashMap<String, u64> = HashMap::new();
    while missed.len() < 2 || missed.values().any(|m| *m < 20) {
        let event = keeper.next_event().await;
        let topic = symbol(&event);
        if n(&event) > last_n[&topic] {
            *missed.entry(topic).or_default() += 1;
        }
    }
    let mut client = get(gw.addr(), path, &[("last-event-id", &last_id)]).await;
    for event in client.events(60).await {
        let topic = symbol(&event);
        if let Some(prev) = last_n.insert(topic.clone(), n(&event)) {
            assert_eq!(
                n(&event),
                prev + 1,
                "{topic}: no gap, no duplicate across the resume"
            );
        }
    }
    drop((client, keeper));
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_beyond_the_window_or_from_another_run_gets_a_reset() {
    let sim = sim(&["AAPL"], 200.0).await;
    let mut bridge = bridge_config();
    bridge.replay_events = 5;
    let gw = gateway(pool_config(&sim), bridge).await;
    let mut keeper = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    let old = keeper.events(1).await.remove(0);
    keeper.events(20).await; // the buffer (5 events) moved past `old`
    for id in [
        old.id.to_string(),
        "someotherrun:5".to_string(),
        "garbage".to_string(),
    ] {
        let mut client = get(gw.addr(), "/v1/stream/AAPL", &[("last-event-id", &id)]).await;
        let reset = client.next_event().await;
        assert_eq!(reset.event_type.as_str(), "ssegate-reset", "for {id}");
        let data: serde_json::Value = serde_json::from_str(&reset.data).expect("JSON");
        assert_eq!(data["topic"], "AAPL");
        // Then live events, in order.
        let ns: Vec<u64> = client.events(5).await.iter().map(n).collect();
        assert!(contiguous(&ns));
    }
    drop(keeper);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_restart_is_resumed_while_clients_stay_connected() {
    let sim = sim(&["AAPL"], 200.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let mut client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    let before = client.events(10).await;
    sim.restart(Duration::from_millis(300));
    let after = client.events(100).await;
    let ns: Vec<u64> = before.iter().chain(&after).map(n).collect();
    assert!(
        contiguous(&ns),
        "no gap, no duplicate across the restart: {ns:?}"
    );
    assert!(sim.connections() >= 2, "the upstream was reconnected");
    drop(client);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let sim = sim(&["AAPL"], 10.0).await;
    let mut bridge = bridge_config();
    bridge.max_topics_per_connection = 2;
    let gw = gateway(pool_config(&sim), bridge).await;
    for (path, status, says) in [
        ("/v1/stream/a%2Fb", 400, "invalid topic"),
        ("/v1/stream/..", 400, "invalid topic"),
        ("/v1/stream", 400, "no topic"),
        ("/v1/stream?topic=A&topic=B&topic=C", 400, "at most 2"),
        ("/v1/stream?topic=A&topic=A", 400, "twice"),
        ("/nope", 404, "/v1/stream"),
    ] {
        let client = get(gw.addr(), path, &[]).await;
        assert_eq!(client.status, status, "{path}");
        let body = client.text().await;
        assert!(body.contains(says), "{path}: {body}");
    }
    assert_eq!(sim.connections(), 0, "nothing reached the upstream");
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f12_the_upstream_cap_is_a_503_with_retry_after_and_nothing_half_created() {
    let sim = sim(&["AAPL", "MSFT"], 50.0).await;
    let mut pool = pool_config(&sim);
    pool.max_streams = 1;
    let gw = gateway(pool, bridge_config()).await;
    let mut first = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    first.events(1).await;
    let refused = get(gw.addr(), "/v1/stream/MSFT", &[]).await;
    assert_eq!(refused.status, 503);
    assert!(refused.headers.contains_key("retry-after"));
    assert!(refused.text().await.contains("cap"));
    assert_eq!(gw.registries().0, 1, "no hub entry for the refused topic");
    assert_eq!(gw.streams(), 1, "its admission was returned");
    drop(first);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f9_a_disconnect_storm_returns_to_baseline() {
    let sim = sim(&["AAPL", "MSFT", "GOOG"], 100.0).await;
    let mut bridge = bridge_config();
    bridge.max_per_ip = 1000; // every test client comes from 127.0.0.1
    let gw = gateway(pool_config(&sim), bridge).await;
    let mut clients = Vec::new();
    for i in 0..150 {
        let path = match i % 3 {
            0 => "/v1/stream/AAPL",
            1 => "/v1/stream?topic=MSFT&topic=GOOG",
            _ => "/v1/stream/GOOG",
        };
        let client = get(gw.addr(), path, &[]).await;
        assert_eq!(client.status, 200);
        clients.push(client);
    }
    for client in clients.iter_mut().step_by(10) {
        client.events(2).await;
    }
    assert_eq!(gw.streams(), 150);
    drop(clients);
    eventually("client streams released", || gw.streams() == 0).await;
    eventually("client sockets closed", || gw.connections() == 0).await;
    eventually("hub and per-IP registries empty", || {
        gw.registries() == (0, 0)
    })
    .await;
    eventually("upstreams released after the linger", || {
        gw.pool().snapshot().is_empty()
    })
    .await;
    eventually("upstream sockets closed", || {
        gw.pool().connections().open_sockets() == 0 && sim.active_streams() == 0
    })
    .await;
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f11_shutdown_under_load_drains_with_retry_hints_and_refuses_newcomers() {
    let sim = sim(&["AAPL", "MSFT"], 100.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let (addr, admin) = (gw.addr(), gw.admin_addr());
    let mut clients = Vec::new();
    for i in 0..40 {
        let topic = if i % 2 == 0 { "AAPL" } else { "MSFT" };
        let client = get(addr, &format!("/v1/stream/{topic}"), &[]).await;
        assert_eq!(client.status, 200);
        clients.push(client);
    }
    for client in &mut clients {
        client.events(1).await;
    }
    let ready = get(admin, "/readyz", &[]).await;
    assert_eq!(ready.status, 200);
    let shutdown = tokio::spawn(gw.shutdown());
    // Not ready as soon as the drain starts (the streams end over the drain
    // window, after).
    let deadline = tokio::time::Instant::now() + WAIT;
    while get(admin, "/readyz", &[]).await.status != 503 {
        assert!(tokio::time::Instant::now() < deadline, "never unready");
        tokio::task::yield_now().await;
    }
    let newcomer = get(addr, "/v1/stream/AAPL", &[]).await;
    assert_eq!(newcomer.status, 503);
    assert!(newcomer.headers.contains_key("retry-after"));
    // Every stream ends, last with a retry hint.
    for client in &mut clients {
        let items = client.drain().await;
        assert!(
            matches!(items.last(), Some(Item::Retry(_))),
            "ended with a retry hint: {:?}",
            items.last()
        );
    }
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown within its deadline")
        .expect("clean");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f16_a_slowloris_is_cut_at_the_header_timeout_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = sim(&["AAPL"], 50.0).await;
    let mut bridge = bridge_config();
    bridge.header_read_timeout = Duration::from_millis(300);
    let gw = gateway(pool_config(&sim), bridge).await;
    let mut slow = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    slow.write_all(b"GET /v1/stream/AAPL HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Meanwhile a normal client is served.
    let mut client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    client.events(2).await;
    // The slow one never finishes its headers: the gateway closes it.
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(WAIT, slow.read(&mut buf))
        .await
        .expect("closed within the bound");
    let n = read.unwrap_or(0);
    assert!(
        n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408"),
        "closed (or 408) at the header timeout"
    );
    drop(client);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_reports_streams_health_and_reports() {
    let sim = sim(&["AAPL"], 50.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let mut client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    client.events(2).await;
    let admin = gw.admin_addr();
    let health = get(admin, "/healthz", &[]).await;
    assert_eq!(health.status, 200);
    let streams = get(admin, "/admin/streams", &[]).await;
    assert_eq!(streams.status, 200);
    let json: serde_json::Value = serde_json::from_str(&streams.text().await).expect("JSON");
    assert_eq!(json["streams"][0]["topic"], "AAPL");
    assert_eq!(json["streams"][0]["clients"], 1);
    assert_eq!(json["streams"][0]["phase"], "open");
    let report = get(admin, "/admin/report?window=24h", &[]).await;
    assert_eq!(report.status, 200);
    let bad = get(admin, "/admin/report?window=7d", &[]).await;
    assert_eq!(bad.status, 400);
    drop(client);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_and_total_limits_refuse_newcomers_and_never_evict() {
    let sim = sim(&["AAPL"], 50.0).await;
    let mut bridge = bridge_config();
    bridge.max_per_ip = 3;
    let gw = gateway(pool_config(&sim), bridge).await;
    let mut admitted = Vec::new();
    for _ in 0..3 {
        let client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
        assert_eq!(client.status, 200);
        admitted.push(client);
    }
    let refused = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    assert_eq!(refused.status, 429);
    assert!(refused.headers.contains_key("retry-after"));
    assert!(refused.text().await.contains("too many streams"));
    for client in &mut admitted {
        client.events(2).await; // still served
    }
    drop(admitted.pop());
    eventually("a place freed", || gw.streams() == 2).await;
    assert_eq!(get(gw.addr(), "/v1/stream/AAPL", &[]).await.status, 200);
    drop(admitted);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_share_one_connection_for_several_streams() {
    use http_body_util::BodyExt;
    let sim = sim(&["AAPL", "MSFT"], 100.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let socket = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(socket),
    )
    .await
    .expect("an HTTP/2 (prior knowledge) handshake");
    tokio::spawn(connection);
    let mut bodies = Vec::new();
    for topic in ["AAPL", "MSFT"] {
        let mut sender = sender.clone();
        let request = http::Request::get(format!("http://{}/v1/stream/{topic}", gw.addr()))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("a response");
        assert_eq!(response.status(), 200);
        bodies.push((topic, response.into_body()));
    }
    assert_eq!(gw.connections(), 1, "two streams, one connection");
    for (topic, body) in &mut bodies {
        let mut parser = sse_parser::Parser::new();
        let event = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(Item::Event(event)) = parser.next_item().expect("valid") {
                    return event;
                }
                let frame = body.frame().await.expect("open").expect("a frame");
                if let Ok(data) = frame.into_data() {
                    parser.feed(data);
                }
            }
        })
        .await
        .expect("an event in time");
        assert_eq!(symbol(&event), *topic);
    }
    drop(bodies);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_client_that_comes_back_within_the_linger_resumes_without_a_gap() {
    let sim = sim(&["AAPL"], 200.0).await;
    let mut bridge = bridge_config();
    bridge.replay_linger = Duration::from_secs(5);
    let gw = gateway(pool_config(&sim), bridge).await;
    let mut client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    let last = client.events(5).await.pop().expect("events");
    drop(client);
    eventually("the client left", || gw.streams() == 0).await;
    // Away for a while: 100 quotes go by with nobody subscribed (the pool
    // counts what the upstream sent).
    let upstream_events = || {
        gw.pool()
            .snapshot()
            .iter()
            .map(|s| s.state.events)
            .sum::<u64>()
    };
    let before = upstream_events();
    eventually("100 quotes with nobody subscribed", || {
        upstream_events() >= before + 100
    })
    .await;
    assert_eq!(gw.registries().0, 1, "the topic lingers");
    let mut client = get(
        gw.addr(),
        "/v1/stream/AAPL",
        &[("last-event-id", last.id.as_str())],
    )
    .await;
    let events = client.events(150).await;
    let mut ns = vec![n(&last)];
    ns.extend(events.iter().map(n));
    assert!(contiguous(&ns), "replayed from where it left: {ns:?}");
    drop(client);
    // Then, alone again and gone for longer than the linger, it is released.
    let mut bridge = bridge_config();
    bridge.replay_linger = Duration::from_millis(200);
    let gw2 = gateway(pool_config(&sim), bridge).await;
    let client = get(gw2.addr(), "/v1/stream/AAPL", &[]).await;
    eventually("the topic joined", || gw2.registries().0 == 1).await;
    drop(client);
    eventually("the topic released after its linger", || {
        gw2.registries().0 == 0
    })
    .await;
    gw2.shutdown().await;
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_every_subscriber_left_is_a_reset_not_a_silent_gap() {
    let sim = sim(&["AAPL"], 200.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let mut client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    let last = client.events(5).await.pop().expect("events");
    drop(client);
    eventually("the topic left the hub", || gw.registries().0 == 0).await;
    let mut client = get(
        gw.addr(),
        "/v1/stream/AAPL",
        &[("last-event-id", last.id.as_str())],
    )
    .await;
    let first = client.next_event().await;
    assert_eq!(
        first.event_type.as_str(),
        "ssegate-reset",
        "events sent while nobody listened are gone: say so"
    );
    drop(client);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_on_a_quiet_topic_is_released_without_heartbeats() {
    let sim = sim(&["QUIET"], 0.0).await;
    let mut bridge = bridge_config();
    bridge.heartbeat = Duration::from_secs(3600);
    let gw = gateway(pool_config(&sim), bridge).await;
    let mut client = get(gw.addr(), "/v1/stream/QUIET", &[]).await;
    assert!(matches!(client.next_item().await, Some(Item::Retry(_))));
    assert_eq!(gw.streams(), 1);
    drop(client);
    // Nothing is written to the dead peer, yet its stream and socket go.
    eventually("the silent stream was released", || gw.streams() == 0).await;
    eventually("its socket closed (no CLOSE_WAIT)", || {
        gw.connections() == 0
    })
    .await;
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_stream_rate_and_the_total_cap_refuse_clearly() {
    let sim = sim(&["AAPL"], 50.0).await;
    let mut bridge = bridge_config();
    bridge.new_streams_per_sec = 1; // a burst of 2
    bridge.max_subscribers = 10;
    let gw = gateway(pool_config(&sim), bridge).await;
    let a = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    let b = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (200, 200));
    let c = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    assert_eq!(c.status, 429);
    assert_eq!(c.headers["retry-after"], "1");
    assert!(c.text().await.contains("slow down"));
    drop((a, b));
    gw.shutdown().await;

    let mut bridge = bridge_config();
    bridge.max_subscribers = 1;
    let gw = gateway(pool_config(&sim), bridge).await;
    let a = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    assert_eq!(a.status, 200);
    let b = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    assert_eq!(b.status, 503);
    assert!(b.headers.contains_key("retry-after"));
    assert!(b.text().await.contains("full"));
    drop(a);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_vars_report_registries_that_return_to_zero() {
    let sim = sim(&["AAPL", "MSFT"], 100.0).await;
    let mut bridge = bridge_config();
    bridge.debug_vars = true;
    let gw = gateway(pool_config(&sim), bridge).await;
    let vars = || async {
        let response = get(gw.admin_addr(), "/debug/vars", &[]).await;
        assert_eq!(response.status, 200);
        serde_json::from_str::<serde_json::Value>(&response.text().await).expect("JSON")
    };
    let mut a = get(gw.addr(), "/v1/stream?topic=AAPL&topic=MSFT", &[]).await;
    let mut b = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    a.events(3).await;
    b.events(3).await;
    let busy = vars().await;
    assert_eq!(busy["client_streams"], 2);
    assert_eq!(busy["hub"]["hub_topics"], 2);
    assert_eq!(busy["hub"]["hub_members"], 3);
    // The counts the soak conserves, each group read under one lock.
    assert_eq!(busy["limits"]["admitted"], 2);
    assert_eq!(busy["limits"]["released"], 0);
    assert_eq!(busy["limits"]["per_ip_sum"], 2);
    assert_eq!(busy["hub"]["hub_joins"], 3);
    assert_eq!(busy["pool"]["created"], 2);
    assert_eq!(busy["pool"]["subscribers"], 2);
    assert_eq!(busy["registries"]["per_ip"], 1);
    assert_eq!(busy["upstream"]["phases"]["open"], 2);
    assert!(busy["tasks"].as_u64().is_some_and(|t| t > 0));
    assert!(
        busy["lifetime"]["events_sent"]
            .as_u64()
            .is_some_and(|n| n >= 6)
    );
    drop((a, b));
    eventually("client streams released", || gw.streams() == 0).await;
    eventually("upstreams released", || gw.pool().snapshot().is_empty()).await;
    let idle = vars().await;
    for (section, key) in [
        ("hub", "hub_topics"),
        ("hub", "hub_members"),
        ("hub", "replay_events"),
        ("hub", "queued_events"),
        ("registries", "per_ip"),
        ("registries", "pool_streams"),
    ] {
        assert_eq!(idle[section][key], 0, "{section}.{key}");
    }
    assert_eq!(idle["limits"]["released"], 2);
    assert_eq!(idle["limits"]["per_ip_entries"], 0);
    assert_eq!(idle["hub"]["hub_leaves"], 3);
    assert_eq!(idle["pool"]["removed"], 2);
    assert!(
        idle["pool"]["events"].as_u64().is_some_and(|n| n >= 3),
        "removed streams' events stay counted: {}",
        idle["pool"]
    );
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_everything_but_the_probes() {
    let sim = sim(&["AAPL"], 50.0).await;
    let mut bridge = bridge_config();
    bridge.admin_token = Some(sse_bridge::AdminToken::new("a-long-enough-admin-token"));
    let gw = gateway(pool_config(&sim), bridge).await;
    let admin = gw.admin_addr();
    assert_eq!(get(admin, "/healthz", &[]).await.status, 200);
    assert_eq!(get(admin, "/readyz", &[]).await.status, 200);
    // (No metrics recorder in this test: /metrics is only checked refused.)
    assert_eq!(get(admin, "/metrics", &[]).await.status, 401);
    for path in ["/admin/streams", "/admin/report?window=1h"] {
        let refused = get(admin, path, &[]).await;
        assert_eq!(refused.status, 401, "{path}");
        assert_eq!(
            refused.headers["www-authenticate"],
            "Bearer realm=\"ssegate admin\""
        );
        assert!(refused.text().await.contains("Authorization: Bearer"));
        let wrong = get(
            admin,
            path,
            &[("authorization", "Bearer a-long-enough-admin-tokeN")],
        )
        .await;
        assert_eq!(wrong.status, 401, "{path}: a near miss is refused");
        let right = get(
            admin,
            path,
            &[("authorization", "Bearer a-long-enough-admin-token")],
        )
        .await;
        assert_eq!(right.status, 200, "{path}");
    }
    let action = request(admin, http::Method::POST, "/admin/rotate", &[ACT]).await;
    assert_eq!(action.status, 401, "actions need the token too");
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_rotate_and_reconnect_without_a_gap() {
    let sim = sim(&["AAPL", "MSFT"], 100.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let admin = gw.admin_addr();
    let mut client = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    let mut other = get(gw.addr(), "/v1/stream/MSFT", &[]).await;
    let mut last = n(client.events(3).await.last().expect("events"));
    other.events(1).await;
    let opened = || gw.pool().counts().connections_opened;
    let before = opened();
    // Loopback admin listener, no token: the actions are allowed.
    let rotated = request(
        admin,
        http::Method::POST,
        "/admin/streams/AAPL/rotate",
        &[ACT],
    )
    .await;
    assert_eq!(rotated.status, 202);
    assert!(rotated.text().await.contains("\"rotate\""));
    eventually("the rotation opened a connection", || opened() > before).await;
    let reconnect = request(
        admin,
        http::Method::POST,
        "/admin/streams/MSFT/reconnect",
        &[ACT],
    )
    .await;
    assert_eq!(reconnect.status, 202);
    let all = request(admin, http::Method::POST, "/admin/rotate", &[ACT]).await;
    assert_eq!(all.status, 200);
    assert!(all.text().await.contains("\"streams\":2"));
    // Through all of it, AAPL's subscriber saw every event once.
    for event in client.events(40).await {
        let next = n(&event);
        assert_eq!(next, last + 1, "no gap and no duplicate across rotations");
        last = next;
    }
    let unknown = request(
        admin,
        http::Method::POST,
        "/admin/streams/NOPE/rotate",
        &[ACT],
    )
    .await;
    assert_eq!(unknown.status, 404);
    let bad = request(
        admin,
        http::Method::POST,
        "/admin/streams/AAPL/explode",
        &[ACT],
    )
    .await;
    assert_eq!(bad.status, 404);
    let put = request(admin, http::Method::PUT, "/admin/rotate", &[]).await;
    assert_eq!(put.status, 405);
    drop((client, other));
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_disconnect_ends_streams_with_a_retry_hint_and_they_resume() {
    let sim = sim(&["AAPL", "MSFT"], 100.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let admin = gw.admin_addr();
    let mut aapl = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    let mut msft = get(gw.addr(), "/v1/stream/MSFT", &[]).await;
    let last = aapl.events(3).await.pop().expect("events");
    msft.events(1).await;
    // One topic's subscribers only.
    let one = request(
        admin,
        http::Method::POST,
        "/admin/streams/AAPL/disconnect",
        &[ACT],
    )
    .await;
    assert_eq!(one.status, 200);
    assert!(one.text().await.contains("\"subscribers\":1"));
    let items = aapl.drain().await;
    let events: Vec<&Event> = items
        .iter()
        .filter_map(|i| {
            if let Item::Event(e) = i {
                Some(e)
            } else {
                None
            }
        })
        .collect();
    assert!(
        matches!(items.last(), Some(Item::Retry(_))),
        "the stream ends with a retry hint"
    );
    msft.events(5).await;
    // It comes back and resumes where it was (its topic lingered).
    let from = events.last().map_or(&last, |e| *e);
    let mut again = get(
        gw.addr(),
        "/v1/stream/AAPL",
        &[("last-event-id", from.id.as_str())],
    )
    .await;
    assert_eq!(
        n(&again.next_event().await),
        n(from) + 1,
        "no gap, no duplicate"
    );
    // Everyone.
    let all = request(admin, http::Method::POST, "/admin/disconnect", &[ACT]).await;
    assert!(all.text().await.contains("\"subscribers\":2"));
    assert!(matches!(msft.drain().await.last(), Some(Item::Retry(_))));
    let none = request(
        admin,
        http::Method::POST,
        "/admin/streams/NOPE/disconnect",
        &[ACT],
    )
    .await;
    assert!(none.text().await.contains("\"subscribers\":0"));
    gw.shutdown().await;
    sim.shutdown().await;
}

/// Reads from a raw socket until `want` appears (bounded).
async fn read_until(socket: &mut tokio::net::TcpStream, want: &str) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(want) {
        let n = tokio::time::timeout(WAIT, socket.read(&mut buf))
            .await
            .expect("data in time")
            .expect("readable");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http1_fast_path_and_hyper_serve_the_same_streams() {
    use tokio::io::AsyncWriteExt as _;
    let sim = sim(&["AAPL"], 100.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    // A browser-like request, its head split over three writes: the fast
    // path waits for the whole head, then streams with chunked framing.
    let mut fast = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    for part in [
        "GET /v1/stream/AAPL HT",
        "TP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n",
        "Accept: text/event-stream\r\n\r\n",
    ] {
        fast.write_all(part.as_bytes()).await.expect("sent");
        // Wall clock: a real socket; the pause lets each part arrive as a
        // segment of its own (the in-memory version of this test is the
        // bridge's, on paused time).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = read_until(&mut fast, "\"s\":\"AAPL\"").await;
    assert!(seen.starts_with("HTTP/1.1 200 OK\r\n"), "{seen}");
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    assert!(
        seen.contains("content-type: text/event-stream\r\n"),
        "{seen}"
    );
    // HTTP/1.0 (no chunked framing) is hyper's: the bytes the fast path read
    // are put back in front, and the stream works the same.
    let mut old = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    old.write_all(b"GET /v1/stream/AAPL HTTP/1.0\r\n\r\n")
        .await
        .expect("sent");
    let seen = read_until(&mut old, "\"s\":\"AAPL\"").await;
    assert!(seen.starts_with("HTTP/1.0 200 OK\r\n"), "{seen}");
    // A refusal on the fast path: complete, length-delimited, then closed.
    let mut bad = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    bad.write_all(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("sent");
    let seen = read_until(&mut bad, "add ?topic=NAME\n").await;
    assert!(seen.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{seen}");
    assert!(seen.contains("content-length: 26\r\n"), "{seen}");
    // The client leaving releases its stream at once.
    drop((fast, old));
    eventually("both streams released", || gw.streams() == 0).await;
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_lets_listed_origins_read_the_streams() {
    let sim = sim(&["AAPL"], 50.0).await;
    let mut bridge = bridge_config();
    bridge.cors_origins = vec!["https://app.example.com".into()];
    bridge.cors_credentials = true;
    let gw = gateway(pool_config(&sim), bridge).await;
    let mut allowed = get(
        gw.addr(),
        "/v1/stream/AAPL",
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(allowed.headers["access-control-allow-credentials"], "true");
    assert_eq!(allowed.headers["vary"], "Origin");
    allowed.events(1).await;
    let other = get(
        gw.addr(),
        "/v1/stream/AAPL",
        &[("origin", "https://evil.example.com")],
    )
    .await;
    assert!(other.headers.get("access-control-allow-origin").is_none());
    // Errors carry the header too, so the page can read why.
    let refused = get(
        gw.addr(),
        "/v1/stream/bad%20topic",
        &[("origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(refused.status, 400);
    assert!(refused.headers.get("access-control-allow-origin").is_some());
    let preflight = request(
        gw.addr(),
        http::Method::OPTIONS,
        "/v1/stream/AAPL",
        &[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "last-event-id"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert!(
        preflight.headers["access-control-allow-headers"]
            .to_str()
            .expect("ASCII")
            .contains("Last-Event-ID")
    );
    assert_eq!(
        preflight.headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    drop(allowed);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_limits_apply_to_newcomers_without_dropping_anyone() {
    let sim = sim(&["AAPL", "MSFT"], 50.0).await;
    let gw = gateway(pool_config(&sim), bridge_config()).await;
    let mut first = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    let mut second = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    first.events(1).await;
    second.events(1).await;
    let mut lower = bridge_config();
    lower.max_per_ip = 2;
    lower.heartbeat = Duration::from_secs(5);
    let (applied, restart) = reload(&gw, &lower, 1).expect("valid");
    assert_eq!(applied, ["max_per_ip", "upstream.max_streams"]);
    assert_eq!(restart, ["heartbeat"]);
    // Nobody is dropped; newcomers meet the new limits.
    assert_eq!(get(gw.addr(), "/v1/stream/AAPL", &[]).await.status, 429);
    first.events(2).await;
    second.events(2).await;
    drop(second);
    eventually("a place freed", || gw.streams() == 1).await;
    // A second topic: the pool's new cap of one stream refuses it.
    assert_eq!(get(gw.addr(), "/v1/stream/MSFT", &[]).await.status, 503);
    let mut back = get(gw.addr(), "/v1/stream/AAPL", &[]).await;
    assert_eq!(back.status, 200);
    back.events(1).await;
    // An invalid configuration changes nothing.
    let mut invalid = bridge_config();
    invalid.max_per_ip = 0;
    assert!(reload(&gw, &invalid, 50).is_err());
    assert_eq!(get(gw.addr(), "/v1/stream/AAPL", &[]).await.status, 429);
    drop((first, back));
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_is_fed_by_snapshots_of_the_gateway() {
    let sim = sim(&["AAPL", "MSFT"], 50.0).await;
    let mut bridge = bridge_config();
    bridge.admin_token = Some(sse_bridge::AdminToken::new("status-page-token-123"));
    bridge.debug_vars = true;
    let gw = gateway(pool_config(&sim), bridge).await;
    let admin = gw.admin_addr();
    let mut client = get(gw.addr(), "/v1/stream?topic=AAPL&topic=MSFT", &[]).await;
    client.events(2).await;
    // Without a session: the login form. A token in the URL is not taken
    // (it would land in history and logs).
    let login = get(admin, "/", &[]).await;
    assert_eq!(login.status, 401);
    assert!(login.text().await.contains("action=\"/admin/login\""));
    let in_url = get(admin, "/?token=status-page-token-123", &[]).await;
    assert_eq!(in_url.status, 401);
    let wrong = post_form(admin, "/admin/login", "token=guess", &[]).await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.headers.contains_key("set-cookie"));
    assert!(wrong.text().await.contains("not the admin token"));
    let signed_in = post_form(admin, "/admin/login", "token=status-page-token-123", &[]).await;
    assert_eq!(signed_in.status, 303);
    let set_cookie = signed_in.headers["set-cookie"].to_str().expect("ASCII");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    let session = set_cookie
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let cookie = [("cookie", session.as_str())];

    let page = get(admin, "/", &cookie).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let html = page.text().await;
    assert!(html.contains("new EventSource(\"/admin/events\")"));
    for external in [" src=", "<link", "@import", "href="] {
        assert!(!html.contains(external), "no external assets: {external}");
    }
    assert_eq!(get(admin, "/admin/events", &[]).await.status, 401);
    // A session reads; it never acts (an action needs the header).
    let with_header = [cookie[0], ACT];
    let act = request(admin, http::Method::POST, "/admin/rotate", &with_header).await;
    assert_eq!(act.status, 401, "no action on a cookie alone");
    let mut events = get(admin, "/admin/events", &cookie).await;
    assert_eq!(events.status, 200);
    assert_eq!(events.headers["content-type"], "text/event-stream");
    let snapshot = events.events(1).await.remove(0);
    assert_eq!(snapshot.event_type.as_str(), "snapshot");
    let data: serde_json::Value = serde_json::from_str(snapshot.data.as_str()).expect("JSON");
    assert_eq!(data["client_streams"], 1);
    assert_eq!(data["pool"]["streams"], 2);
    assert_eq!(data["pool"]["max_streams"], 50);
    assert_eq!(data["ready"], true);
    let topics: Vec<&str> = data["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| s["topic"].as_str().expect("topic"))
        .collect();
    assert_eq!(topics, ["AAPL", "MSFT"]);
    for key in [
        "phase",
        "in_phase_secs",
        "clients",
        "events",
        "attempts",
        "health",
        "causes",
    ] {
        assert!(data["streams"][0].get(key).is_some(), "{key}");
    }
    // Snapshots keep coming: the page's rates and sparklines need them.
    let next = events.events(1).await.remove(0);
    let later: serde_json::Value = serde_json::from_str(next.data.as_str()).expect("JSON");
    assert!(later["time_ms"].as_u64() > data["time_ms"].as_u64());
    let vars: serde_json::Value =
        serde_json::from_str(&get(admin, "/debug/vars", &cookie).await.text().await).expect("JSON");
    assert_eq!(vars["auth"]["admin_sessions"], 1);
    // Signing out ends the session.
    let out = request(admin, http::Method::POST, "/admin/logout", &cookie).await;
    assert_eq!(out.status, 303);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .expect("ASCII")
            .contains("Max-Age=0")
    );
    assert_eq!(get(admin, "/", &cookie).await.status, 401);
    drop((client, events));
    gw.shutdown().await;
    sim.shutdown().await;
}
