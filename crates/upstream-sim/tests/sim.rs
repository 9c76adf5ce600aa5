//! The simulator over real loopback sockets, with bounded waits: the feed,
//! replay, every fault, what it records, and that it stops.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sse_parser::{Item, Parser};
use sse_upstream_sim::{Fault, Garbage, Sim, SimHandle};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// No test waits longer than this for anything.
const WAIT: Duration = Duration::from_secs(10);

async fn get(
    sim: &SimHandle,
    topic: &str,
    headers: &[(&str, &str)],
) -> hyper::Result<Response<Incoming>> {
    get_path(sim, &format!("/v1/quotes/{topic}/stream"), headers).await
}

/// `GET path` with `headers`.
async fn get_path(
    sim: &SimHandle,
    path: &str,
    headers: &[(&str, &str)],
) -> hyper::Result<Response<Incoming>> {
    let stream = timeout(WAIT, TcpStream::connect(sim.addr()))
        .await
        .expect("connect in time")
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut request = Request::get(path)
        .header("host", sim.addr().to_string())
        .header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).expect("valid request");
    timeout(WAIT, sender.send_request(request))
        .await
        .expect("response in time")
}

/// Reads the body into the parser until `want` events arrived or the body
/// ended; returns every item.
async fn read_events(body: &mut Incoming, parser: &mut Parser, want: usize) -> Vec<Item> {
    let mut items = Vec::new();
    let mut events = 0;
    while events < want {
        let Some(frame) = timeout(WAIT, body.frame()).await.expect("data in time") else {
            break;
        };
        let Ok(data) = frame.expect("body frame").into_data() else {
            continue;
        };
        parser.feed(data);
        while let Some(item) = parser.next_item().expect("within limits") {
            events += usize::from(matches!(item, Item::Event(_)));
            items.push(item);
        }
    }
    items
}

fn events(items: &[Item]) -> Vec<(String, String, String)> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Event(e) => Some((
                e.event_type.to_string(),
                e.data.to_string(),
                e.id.to_string(),
            )),
            _ => None,
        })
        .collect()
}

/// A fast feed on topic `T` whose first connection plays `fault`.
async fn scripted(fault: Fault) -> SimHandle {
    sim(Sim::builder()
        .topics(["T"])
        .events_per_sec(200.0)
        .script("T", [fault]))
    .await
}

async fn sim(builder: sse_upstream_sim::SimBuilder) -> SimHandle {
    builder
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts")
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        // Wall clock: the simulator serves real sockets; a bounded poll.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_feed_sends_quotes_with_ids_and_timestamps() {
    let sim = sim(Sim::builder().topics(["AAPL"]).events_per_sec(100.0)).await;
    let response = get(&sim, "AAPL", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let items = read_events(&mut body, &mut Parser::new(), 3).await;
    let evs = events(&items);
    assert_eq!(evs.len(), 3);
    let first: u64 = evs[0].2.parse().unwrap();
    for (i, (event_type, data, id)) in evs.iter().enumerate() {
        assert_eq!(event_type, "quote");
        assert_eq!(
            id.parse::<u64>().unwrap(),
            first + i as u64,
            "ids are consecutive"
        );
        assert!(
            data.starts_with(&format!("{{\"s\":\"AAPL\",\"n\":{id},\"b\":"))
                && data.contains(",\"t\":"),
            "{data}"
        );
    }
    assert!(matches!(&items[0], Item::Comment(c) if c.contains("simulator")));
    sim.shutdown().await;
}

#[tokio::test]
async fn last_event_id_replays_with_no_gap_and_no_duplicate() {
    let sim = sim(Sim::builder().topics(["MSFT"]).events_per_sec(200.0)).await;
    eventually("20 events of history", || {
        sim.last_id("MSFT").is_some_and(|id| id >= 20)
    })
    .await;
    let response = get(&sim, "MSFT", &[("last-event-id", "5")]).await.unwrap();
    let items = read_events(&mut response.into_body(), &mut Parser::new(), 30).await;
    let ids: Vec<u64> = events(&items)
        .iter()
        .map(|e| e.2.parse().unwrap())
        .collect();
    assert_eq!(ids, (6..36).collect::<Vec<_>>());
    assert_eq!(sim.requests()[0].header("last-event-id"), Some("5"));
    sim.shutdown().await;
}

#[tokio::test]
async fn scripts_play_one_fault_per_connection_then_normal() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(100.0).script(
        "T",
        [
            Fault::status(503).retry_after("2"),
            Fault::status(429).retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Fault::status(204),
            Fault::WrongContentType,
            Fault::Redirect {
                code: 307,
                location: Some("/v1/quotes/T/stream".into()),
            },
            Fault::Redirect {
                code: 301,
                location: None,
            },
        ],
    ))
    .await;
    let response = get(&sim, "T", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "2");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        body.starts_with(b"id: 999"),
        "an error body that looks like SSE"
    );

    let response = get(&sim, "T", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers()["retry-after"],
        "Wed, 21 Oct 2015 07:28:00 GMT"
    );

    assert_eq!(
        get(&sim, "T", &[]).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );

    let response = get(&sim, "T", &[]).await.unwrap();
    assert_eq!(
        (response.status(), &response.headers()["content-type"]),
        (StatusCode::OK, &"application/json".parse().unwrap())
    );

    let response = get(&sim, "T", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(response.headers()["location"], "/v1/quotes/T/stream");

    let response = get(&sim, "T", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert!(response.headers().get("location").is_none());

    // The script is used up: the feed.
    let response = get(&sim, "T", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        events(&read_events(&mut response.into_body(), &mut Parser::new(), 1).await).len(),
        1
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn refuse_closes_without_a_response() {
    let sim = sim(Sim::builder().topics(["T"]).script("T", [Fault::Refuse])).await;
    assert!(get(&sim, "T", &[]).await.is_err(), "no response");
    assert_eq!(get(&sim, "T", &[]).await.unwrap().status(), StatusCode::OK);
    assert_eq!(sim.connections(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn stall_sends_headers_then_nothing() {
    let sim = sim(Sim::builder()
        .topics(["T"])
        .events_per_sec(100.0)
        .script("T", [Fault::Stall]))
    .await;
    let response = get(&sim, "T", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    assert!(
        timeout(Duration::from_millis(300), body.frame())
            .await
            .is_err(),
        "no byte arrives on a stalled stream"
    );
    // The client goes: the stalled stream ends too (it is not kept forever).
    drop(body);
    eventually("the stalled stream ends", || sim.active_streams() == 0).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn close_topic_ends_its_streams_and_the_log_records_starts_and_ends() {
    let sim = sim(Sim::builder()
        .topics(["A", "B"])
        .events_per_sec(100.0)
        .log_streams(true)
        .script("A", [Fault::status(503)]))
    .await;
    assert_eq!(
        get(&sim, "A", &[]).await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let a = get(&sim, "A", &[]).await.unwrap();
    let b = get(&sim, "B", &[]).await.unwrap();
    eventually("two streams", || sim.active_streams() == 2).await;
    assert!(sim.close_topic("A"));
    assert!(!sim.close_topic("nope"));
    let mut body = a.into_body();
    let ended = timeout(WAIT, async {
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "A's body ends after close_topic");
    eventually("B's stream alone", || sim.active_streams() == 1).await;
    let (log, dropped) = sim.take_log();
    assert_eq!(dropped, 0);
    let seen: Vec<(&str, &str, bool)> = log
        .iter()
        .map(|e| (e.topic.as_str(), e.fault, e.ended))
        .collect();
    assert_eq!(
        seen,
        [
            ("A", "status", false),
            ("A", "status", true),
            ("A", "normal", false),
            ("B", "normal", false),
            ("A", "normal", true),
        ]
    );
    assert!(sim.take_log().0.is_empty(), "taken once");
    drop(b);
    sim.shutdown().await;
}

#[tokio::test]
async fn drip_and_slow_start_still_deliver_whole_events() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(100.0).script(
        "T",
        [
            Fault::Drip {
                interval: Duration::from_millis(1),
            },
            Fault::SlowStart {
                delay: Duration::from_millis(100),
            },
        ],
    ))
    .await;
    let response = get(&sim, "T", &[]).await.unwrap();
    let mut body = response.into_body();
    // One byte per frame.
    let first = timeout(WAIT, body.frame())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert!(!first.is_empty());
    let mut parser = Parser::new();
    parser.feed(first);
    let mut frames = 0;
    let mut items = Vec::new();
    while !items.iter().any(|i| matches!(i, Item::Event(_))) {
        let data = timeout(WAIT, body.frame())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(data.len(), 1, "a drip sends one byte at a time");
        frames += 1;
        parser.feed(data);
        while let Some(item) = parser.next_item().unwrap() {
            items.push(item);
        }
    }
    assert!(frames > 50, "an event took {frames} one-byte frames");
    let response = get(&sim, "T", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn close_mid_event_leaves_half_an_event() {
    let sim = scripted(Fault::CloseMidEvent { after_events: 2 }).await;
    let response = get(&sim, "T", &[]).await.unwrap();
    let mut parser = Parser::new();
    let items = read_events(&mut response.into_body(), &mut parser, 10).await;
    assert_eq!(events(&items).len(), 2, "two events, then the body ended");
    assert!(parser.has_partial(), "the third was cut in half");
    sim.shutdown().await;
}

#[tokio::test]
async fn end_after_ends_the_body_cleanly() {
    let sim = scripted(Fault::EndAfter { after_events: 3 }).await;
    let response = get(&sim, "T", &[]).await.unwrap();
    let mut parser = Parser::new();
    let items = read_events(&mut response.into_body(), &mut parser, 10).await;
    assert_eq!(events(&items).len(), 3);
    assert!(!parser.has_partial());
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_is_what_the_spec_says_to_ignore_or_replace() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(200.0).script(
        "T",
        [
            Fault::Garbage(Garbage::InvalidUtf8),
            Fault::Garbage(Garbage::NulInId),
            Fault::Garbage(Garbage::CrOnly),
        ],
    ))
    .await;
    let response = get(&sim, "T", &[]).await.unwrap();
    let evs = events(&read_events(&mut response.into_body(), &mut Parser::new(), 2).await);
    assert_eq!(evs[0].0, "garbage");
    assert!(evs[0].1.contains('\u{FFFD}'));

    let response = get(&sim, "T", &[]).await.unwrap();
    let evs = events(&read_events(&mut response.into_body(), &mut Parser::new(), 1).await);
    assert_eq!(
        (evs[0].0.as_str(), evs[0].2.as_str()),
        ("garbage", ""),
        "the NUL id is ignored"
    );

    let response = get(&sim, "T", &[]).await.unwrap();
    let evs = events(&read_events(&mut response.into_body(), &mut Parser::new(), 2).await);
    assert_eq!(evs.len(), 2, "CR-only line endings parse");
    assert_eq!(evs[0].0, "quote");
    sim.shutdown().await;
}

#[tokio::test]
async fn an_endless_line_breaks_a_client_limit_and_the_server_stops_by_itself() {
    let sim = sim(Sim::builder()
        .topics(["T"])
        .script("T", [Fault::EndlessLine { max_bytes: 1 << 20 }]))
    .await;
    let response = get(&sim, "T", &[]).await.unwrap();
    let mut body = response.into_body();
    let mut parser = Parser::with_limits(sse_parser::Limits::default().max_line_len(64 * 1024));
    let err = loop {
        let frame = timeout(WAIT, body.frame())
            .await
            .expect("in time")
            .expect("not ended")
            .unwrap();
        parser.feed(frame.into_data().unwrap());
        if let Err(err) = parser.next_item() {
            break err;
        }
    };
    assert_eq!(
        err,
        sse_parser::ParseError::LineTooLong { limit: 64 * 1024 }
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn requests_and_streams_are_counted_and_released() {
    let sim = sim(Sim::builder().topics(["A", "B"]).events_per_sec(50.0)).await;
    let a = get(&sim, "A", &[("x-custom", "1")]).await.unwrap();
    let b = get(&sim, "B", &[]).await.unwrap();
    eventually("two active streams", || sim.active_streams() == 2).await;
    let requests = sim.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].uri, "/v1/quotes/A/stream");
    assert_eq!(requests[0].header("accept"), Some("text/event-stream"));
    assert_eq!(requests[0].header("x-custom"), Some("1"));
    drop((a, b));
    eventually("streams released", || sim.active_streams() == 0).await;
    // Unknown topics and paths are 404s, not streams.
    assert_eq!(
        get(&sim, "NOPE", &[]).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_restart_drops_connections_refuses_for_a_while_and_keeps_the_ids() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(200.0)).await;
    let response = get(&sim, "T", &[]).await.unwrap();
    let mut body = response.into_body();
    let items = read_events(&mut body, &mut Parser::new(), 3).await;
    let last = events(&items)[2].2.clone();
    sim.restart(Duration::from_secs(2));
    let ended = timeout(WAIT, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
    assert!(ended.is_ok(), "the open stream was dropped");
    // Down: refused. (Connecting right away lands inside the downtime.)
    assert!(get(&sim, "T", &[]).await.is_err());
    // Back: resume from the last id, with no gap.
    let mut resumed = None;
    for _ in 0..400 {
        // Wall clock: the restart's downtime is real time (2 s); retry every
        // 25 ms, at most 400 times.
        tokio::time::sleep(Duration::from_millis(25)).await;
        if let Ok(response) = get(&sim, "T", &[("last-event-id", &last)]).await {
            resumed = Some(response);
            break;
        }
    }
    let response = resumed.expect("served again after the downtime");
    let evs = events(&read_events(&mut response.into_body(), &mut Parser::new(), 1).await);
    assert_eq!(
        evs[0].2.parse::<u64>().unwrap(),
        last.parse::<u64>().unwrap() + 1
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(100.0)).await;
    let response = get(&sim, "T", &[]).await.unwrap();
    let mut body = response.into_body();
    read_events(&mut body, &mut Parser::new(), 1).await;
    timeout(WAIT, sim.shutdown())
        .await
        .expect("shutdown in time");
    // The body ends (or errors) promptly: nothing keeps serving.
    let ended = timeout(WAIT, async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
    assert!(ended.is_ok());
}

#[tokio::test]
async fn only_loopback_addresses() {
    for addr in ["0.0.0.0:0", "10.1.2.3:0", "[::]:0", "not an address"] {
        let err = Sim::builder().start(addr).await.expect_err(addr);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{addr}");
    }
    let sim = Sim::builder().start("[::1]:0").await;
    // ::1 may be missing on a machine without IPv6; where it exists it works.
    if let Ok(sim) = sim {
        assert!(sim.addr().ip().is_loopback());
        sim.shutdown().await;
    }
}

/// The path and query of a packed URL.
fn packed_path(sim: &SimHandle, topics: &[&str], meta_stream: bool) -> String {
    sim.packed_url(topics, meta_stream)
        .strip_prefix(&sim.url())
        .expect("the simulator's own URL")
        .to_string()
}

/// (topic, n, packed id) of each quote; the topic where the style says.
fn packed_quotes(items: &[Item], meta_stream: bool) -> Vec<(String, u64, u64)> {
    events(items)
        .into_iter()
        .map(|(_, data, id)| {
            let value: serde_json::Value = serde_json::from_str(&data).expect("JSON data");
            let (topic, quote) = if meta_stream {
                (value["meta"]["stream"].clone(), value["data"].clone())
            } else {
                (value["s"].clone(), value.clone())
            };
            assert_eq!(quote["s"], topic, "the quote is the topic's: {data}");
            (
                topic.as_str().expect("a topic").to_string(),
                quote["n"].as_u64().expect("n"),
                id.parse().expect("a numeric id"),
            )
        })
        .collect()
}

/// Each topic's `n` runs on by one, and the ids rise.
fn assert_no_gap(quotes: &[(String, u64, u64)]) {
    let mut next: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (topic, n, _) in quotes {
        if let Some(expected) = next.get(topic.as_str()) {
            assert_eq!(n, expected, "{topic}: a gap or a repeat in {quotes:?}");
        }
        next.insert(topic, n + 1);
    }
    assert!(
        quotes.windows(2).all(|w| w[0].2 < w[1].2),
        "ids rise: {quotes:?}"
    );
}

#[tokio::test]
async fn packed_streams_carry_their_set_in_both_styles_with_per_topic_sequences() {
    let sim = sim(Sim::builder().topics(["A", "B", "C"]).events_per_sec(100.0)).await;
    for meta_stream in [false, true] {
        let path = packed_path(&sim, &["A", "B"], meta_stream);
        let response = get_path(&sim, &path, &[]).await.expect("a response");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let items = read_events(&mut response.into_body(), &mut Parser::new(), 40).await;
        let quotes = packed_quotes(&items, meta_stream);
        assert_eq!(quotes.len(), 40);
        assert!(
            quotes.iter().all(|(t, _, _)| t == "A" || t == "B"),
            "only the set: {quotes:?}"
        );
        assert!(quotes.iter().any(|(t, _, _)| t == "A") && quotes.iter().any(|(t, _, _)| t == "B"));
        assert_no_gap(&quotes);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_packed_connection_resumes_after_its_last_id_with_no_gap() {
    let sim = sim(Sim::builder().topics(["A", "B", "C"]).events_per_sec(200.0)).await;
    let path = packed_path(&sim, &["A", "C"], true);
    let first = get_path(&sim, &path, &[]).await.expect("a response");
    let items = read_events(&mut first.into_body(), &mut Parser::new(), 20).await;
    let before = packed_quotes(&items, true);
    let last = before.last().expect("quotes").2.to_string();
    // Wall clock: the feed runs on while the client is away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = get_path(&sim, &path, &[("last-event-id", &last)])
        .await
        .expect("a response");
    let items = read_events(&mut again.into_body(), &mut Parser::new(), 60).await;
    let mut all = before;
    all.extend(packed_quotes(&items, true));
    assert_no_gap(&all);
    assert!(all.len() == 80 && all.iter().all(|(t, _, _)| t != "B"));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_packed_list_with_an_unknown_topic_is_a_404_that_names_it() {
    let sim = sim(Sim::builder().topics(["A"])).await;
    let response = get_path(&sim, "/v1/stream?symbols=A,NOPE", &[])
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("NOPE"));
    let response = get_path(&sim, "/v1/stream?symbols=A,,B", &[])
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}
