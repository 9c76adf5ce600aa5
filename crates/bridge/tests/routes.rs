//! Upstream routes at the gateway: a topic outside every route's
//! allow-list is a 404 before anything opens upstream, and only after the
//! token is checked (an anonymous client cannot map the allow-lists); a
//! route's slow-consumer policy. Paused time, everything in memory (see
//! `common`).

mod common;

use std::sync::atomic::Ordering;

use common::{Feed, addr, gateway_with, get, settle};
use sse_bridge::{AuthConfig, BridgeConfig, Hooks, Policy, Secret};
use sse_conn_pool::{PoolConfig, Route, TopicMatch};

/// One route allowing AAPL and MSFT; no catch-all.
fn allow_list() -> PoolConfig {
    let mut pool = PoolConfig::new("");
    pool.routes = vec![Route::new(
        "stocks",
        TopicMatch::Allow(["AAPL".to_string(), "MSFT".to_string()].into()),
        "http://feed.test/{topic}",
    )];
    pool
}

#[tokio::test(start_paused = true)]
async fn a_topic_outside_every_allow_list_is_a_404_after_the_token_and_opens_nothing() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        auth: AuthConfig {
            tokens: Some(Secret::new("alice s3cret-s3cret-s3cret *")),
            ..AuthConfig::default()
        },
        ..BridgeConfig::default()
    };
    let gw = gateway_with(&feed, bridge, allow_list(), Hooks::default());
    let anonymous = get(&gw.streams, addr(41000), "/v1/stream/GOOG", &[]).await;
    assert_eq!(anonymous.status, 401, "no 404 to tell an anonymous client");
    let auth = [("authorization", "Bearer s3cret-s3cret-s3cret")];
    let refused = get(&gw.streams, addr(41001), "/v1/stream/GOOG", &auth).await;
    assert_eq!(refused.status, 404);
    assert!(
        refused.text().await.contains("GOOG"),
        "the reason names the topic"
    );
    // Two topics, one outside: refused whole, and the allowed one is not
    // opened either.
    let mixed = get(
        &gw.streams,
        addr(41002),
        "/v1/stream?topic=AAPL&topic=GOOG",
        &auth,
    )
    .await;
    assert_eq!(mixed.status, 404);
    settle().await;
    assert_eq!(
        feed.connections.load(Ordering::SeqCst),
        0,
        "nothing opened upstream"
    );
    assert_eq!(gw.handle.pool().counts().streams, 0);
    let mut ok = get(&gw.streams, addr(41003), "/v1/stream/AAPL", &auth).await;
    assert_eq!(ok.status, 200);
    common::until(
        std::time::Duration::from_secs(5),
        "the upstream is connected",
        || feed.listeners("AAPL") > 0,
    )
    .await;
    feed.publish("AAPL", "tick");
    assert_eq!(ok.next_event().await.data.as_str(), "tick");
    // The admin view names the stream's route; without `event_time` its
    // latency is not measured (null), not zero.
    let view = get(&gw.admin, addr(41004), "/admin/streams", &[]).await;
    assert_eq!(view.status, 200);
    let view: serde_json::Value = serde_json::from_str(&view.text().await).expect("JSON");
    let stream = &view["streams"][0];
    assert_eq!(stream["topic"], "AAPL");
    assert_eq!(stream["route"], "stocks");
    assert!(stream["latency_p50_ms"].is_null(), "{stream}");
    drop(ok);
    gw.handle.shutdown().await;
}

#[test]
fn a_topic_takes_its_own_policy_then_its_routes_then_the_default() {
    let crypto = TopicMatch::Patterns(vec!["BTC-*".into()]);
    let mut config = BridgeConfig {
        route_policies: vec![
            (crypto, Some(Policy::DropOldest)),
            (TopicMatch::Patterns(vec!["*".into()]), None),
        ],
        ..BridgeConfig::default()
    };
    config.policies.insert("BTC-EUR".into(), Policy::Disconnect);
    assert_eq!(config.policy_of("BTC-USD"), Policy::DropOldest);
    assert_eq!(
        config.policy_of("BTC-EUR"),
        Policy::Disconnect,
        "its own first"
    );
    assert_eq!(
        config.policy_of("AAPL"),
        config.policy,
        "its route (the catch-all) has none: the default, not a later route's"
    );
}
