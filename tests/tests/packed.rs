//! Packed routes end to end: sse-upstream-sim serving packed streams in
//! both provider styles, the gateway (pool and bridge, in-process) packing
//! its topics into them, clients over real loopback sockets.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{bridge_config, eventually, gateway, get, pool_config, sim};
use sse_conn_pool::{Demux, Pack, PoolConfig, Route, TopicMatch};
use sse_parser::Event;
use sse_upstream_sim::SimHandle;

/// A pool whose one route packs every topic into `sim`'s packed streams:
/// `/v1/stream?symbols=` (the topic at `/s`) or, with `meta_stream`,
/// `/v2/stream/a,b` (the topic at `/meta/stream`).
fn packed_pool(sim: &SimHandle, meta_stream: bool, max_topics: usize) -> PoolConfig {
    let (template, pointer) = if meta_stream {
        (
            format!("{}/v2/stream/{{topics}}", sim.url()),
            "/meta/stream",
        )
    } else {
        (format!("{}/v1/stream?symbols={{topics}}", sim.url()), "/s")
    };
    let mut pack = Pack::new(template, Demux::JsonPointer(pointer.into()));
    pack.max_topics = max_topics;
    pack.min_interval = Duration::from_millis(500);
    let mut config = pool_config(sim);
    config.url_template = String::new();
    config.routes = vec![Route::packed(
        "packed",
        TopicMatch::Patterns(vec!["*".into()]),
        pack,
    )];
    config
}

/// The topic and its own sequence number, in either style.
fn quote(event: &Event) -> (String, u64) {
    let value: serde_json::Value = serde_json::from_str(&event.data).expect("JSON data");
    let quote = if value.get("meta").is_some() {
        assert_eq!(value["meta"]["stream"], value["data"]["s"]);
        &value["data"]
    } else {
        &value
    };
    (
        quote["s"].as_str().expect("a symbol").to_string(),
        quote["n"].as_u64().expect("a sequence number"),
    )
}

/// Reads `count` events, checking each topic's numbers are consecutive.
async fn read_checked(
    client: &mut ssegate_tests::client::Client,
    count: usize,
    last: &mut HashMap<String, u64>,
) {
    for event in client.events(count).await {
        let (topic, n) = quote(&event);
        if let Some(prev) = last.insert(topic.clone(), n) {
            assert_eq!(n, prev + 1, "{topic}: after {prev} came {n}");
        }
    }
}

async fn packs_and_re_packs(meta_stream: bool) {
    let topics = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA"];
    let sim = sim(&topics, 20.0).await;
    let gw = gateway(packed_pool(&sim, meta_stream, 3), bridge_config()).await;
    let path = "/v1/stream?topic=AAPL&topic=MSFT&topic=GOOG&topic=AMZN";
    let mut steady = get(gw.addr(), path, &[]).await;
    assert_eq!(steady.status, 200);
    let mut last = HashMap::new();
    read_checked(&mut steady, 80, &mut last).await;
    assert_eq!(last.len(), 4, "every topic arrives: {last:?}");
    assert_eq!(
        sim.active_streams(),
        2,
        "four topics, three to a connection"
    );
    // TSLA joins a group (a re-pack), then leaves it (another, after the
    // linger): the steady client sees no gap and no duplicate.
    let mut tsla = get(gw.addr(), "/v1/stream/TSLA", &[]).await;
    let mut tsla_last = HashMap::new();
    read_checked(&mut tsla, 20, &mut tsla_last).await;
    read_checked(&mut steady, 80, &mut last).await;
    drop(tsla);
    eventually("TSLA's group re-packed without it", || {
        sim.requests()
            .iter()
            .filter(|r| r.uri.contains("stream"))
            .count()
            >= 4
    })
    .await;
    read_checked(&mut steady, 80, &mut last).await;
    assert_eq!(sim.active_streams(), 2, "the old sets were closed");
    drop(steady);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symbols_query_is_packed_and_re_packed_without_gaps() {
    packs_and_re_packs(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_list_with_meta_stream_is_packed_and_re_packed_without_gaps() {
    packs_and_re_packs(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_the_upstream_does_not_have_is_a_404_and_its_neighbours_go_on() {
    let sim = sim(&["AAPL", "MSFT"], 20.0).await;
    let gw = gateway(packed_pool(&sim, false, 10), bridge_config()).await;
    let mut steady = get(gw.addr(), "/v1/stream?topic=AAPL&topic=MSFT", &[]).await;
    let mut last = HashMap::new();
    read_checked(&mut steady, 20, &mut last).await;
    let refused = get(gw.addr(), "/v1/stream/NOPE", &[]).await;
    assert_eq!(
        refused.status, 404,
        "the upstream's answer, found in the set"
    );
    read_checked(&mut steady, 40, &mut last).await;
    let again = get(gw.addr(), "/v1/stream/NOPE", &[]).await;
    assert_eq!(again.status, 404, "remembered");
    drop(steady);
    gw.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_resume_a_reconnect_reaches_clients_as_a_gap_notice() {
    let sim = sim(&["AAPL", "MSFT"], 50.0).await;
    let mut pool = packed_pool(&sim, false, 10);
    if let Some(pack) = pool.routes[0].pack.as_mut() {
        pack.resume = sse_conn_pool::Resume::None;
    }
    let gw = gateway(pool, bridge_config()).await;
    let mut client = get(gw.addr(), "/v1/stream?topic=AAPL&topic=MSFT", &[]).await;
    let mut last = HashMap::new();
    read_checked(&mut client, 20, &mut last).await;
    assert!(gw.pool().reconnect("AAPL"), "its connection is kicked");
    let mut notices = Vec::new();
    for _ in 0..200 {
        let event = client.next_event().await;
        if event.event_type.as_str() == "ssegate-gap" {
            notices.push(event.data.to_string());
            if notices.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(notices.len(), 2, "each topic is told: {notices:?}");
    assert!(notices.iter().any(|n| n.contains("\"AAPL\"")));
    assert!(notices.iter().any(|n| n.contains("\"MSFT\"")));
    let requests = sim.requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.uri.contains("symbols"))
            .all(|r| r.header("last-event-id").is_none()),
        "no resume asked"
    );
    drop(client);
    gw.shutdown().await;
    sim.shutdown().await;
}
