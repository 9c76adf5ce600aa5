//! Upstream routes over an in-memory upstream in paused time: first match
//! wins, allow-lists refuse before anything is opened, each route sends its
//! own headers only, each route's cap and health rules.

mod common;

use common::Ticks;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use hyper_util::rt::TokioIo;
use sse_conn_pool::{
    Connector, Pool, PoolConfig, PoolError, Route, StreamItem, Subscription, Target, TopicMatch,
};

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
struct Seen {
    host: String,
    path: String,
    headers: HeaderMap,
}

impl Seen {
    fn of<B>(req: &hyper::Request<B>) -> Self {
        let host = req.headers().get("host").and_then(|h| h.to_str().ok());
        Self {
            host: host.unwrap_or_default().to_string(),
            path: req.uri().to_string(),
            headers: req.headers().clone(),
        }
    }
}

/// Paused time (paused tests): ten events a second of virtual time.
const TICK: Duration = Duration::from_millis(100);

/// Every connection streams ten events per second (virtual) and records
/// its request.
#[derive(Clone, Default)]
struct Upstream {
    opened: Arc<AtomicUsize>,
    seen: Arc<parking_lot::Mutex<Vec<Seen>>>,
}

impl Connector for Upstream {
    type Io = TokioIo<tokio::io::DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let seen = self.seen.clone();
        Ok(common::serve_in_memory(move |req| {
            seen.lock().push(Seen::of(req));
            Ticks::new(TICK, TICK, None)
        }))
    }
}

async fn next_event(sub: &mut Subscription) {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(3600), sub.recv())
            .await
            .expect("an item within a virtual hour")
            .expect("the stream is open");
        if let StreamItem::Event(_) = item {
            return;
        }
    }
}

fn header(name: &'static str, value: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_static(value));
    headers
}

/// Two providers and a regex route; no catch-all template.
fn two_providers() -> PoolConfig {
    let mut config = PoolConfig::new("");
    let mut crypto = Route::new(
        "crypto",
        TopicMatch::Patterns(vec!["BTC-*".into(), "ETH-*".into()]),
        "http://crypto.test/v1/{topic}/events",
    );
    crypto.headers = header("x-api-key", "crypto-secret");
    let mut stocks = Route::new(
        "stocks",
        TopicMatch::Allow(["AAPL".to_string(), "MSFT".to_string()].into()),
        "http://stocks.test/stream?symbol={topic}",
    );
    stocks.headers = header("authorization", "Bearer stocks-secret");
    let fx = Route::new(
        "fx",
        TopicMatch::regex("[A-Z]{3}USD").expect("compiles"),
        "http://fx.test/{topic}",
    );
    // A later route that also matches BTC-*: never reached for them.
    let shadow = Route::new(
        "shadow",
        TopicMatch::Patterns(vec!["*".into()]),
        "http://shadow.test/{topic}",
    );
    config.routes = vec![crypto, stocks, fx, shadow];
    config.headers = header("x-shorthand", "never-sent-to-a-route");
    config.max_streams = 10;
    config
}

#[tokio::test(start_paused = true)]
async fn the_first_matching_route_serves_a_topic_with_its_own_headers_only() {
    let upstream = Upstream::default();
    let pool = Pool::new(two_providers(), upstream.clone()).unwrap();
    let mut subs = Vec::new();
    for topic in ["BTC-USD", "AAPL", "EURUSD", "ZZZ"] {
        let mut sub = pool.subscribe(topic).unwrap();
        next_event(&mut sub).await;
        subs.push(sub);
    }
    let seen = upstream.seen.lock().clone();
    let by_host = |host: &str| {
        seen.iter()
            .find(|s| s.host == host)
            .unwrap_or_else(|| panic!("a request to {host}: {seen:?}"))
            .clone()
    };
    let crypto = by_host("crypto.test");
    assert_eq!(crypto.path, "/v1/BTC-USD/events");
    assert_eq!(crypto.headers["x-api-key"], "crypto-secret");
    assert!(
        crypto.headers.get("authorization").is_none(),
        "another provider's secret"
    );
    assert!(
        crypto.headers.get("x-shorthand").is_none(),
        "the shorthand's header"
    );
    let stocks = by_host("stocks.test");
    assert_eq!(stocks.path, "/stream?symbol=AAPL");
    assert_eq!(stocks.headers["authorization"], "Bearer stocks-secret");
    assert!(stocks.headers.get("x-api-key").is_none());
    assert_eq!(by_host("fx.test").path, "/EURUSD");
    assert_eq!(by_host("shadow.test").path, "/ZZZ", "the catch-all route");
    assert_eq!(seen.len(), 4, "one request per topic: {seen:?}");
    assert_eq!(
        two_providers().route_of("BTC-USD").map(|r| r.name.as_str()),
        Some("crypto"),
        "first match wins over the later catch-all"
    );
    drop(subs);
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_topic_outside_every_allow_list_is_refused_before_anything_opens() {
    let upstream = Upstream::default();
    let mut config = two_providers();
    config.routes.pop(); // no catch-all
    let pool = Pool::new(config, upstream.clone()).unwrap();
    for topic in ["GOOG", "BTC_USD", "EURUSDT"] {
        assert_eq!(
            pool.check_topic(topic),
            Err(PoolError::UnknownStream(topic.into())),
            "{topic}: checked before any subscription"
        );
        assert_eq!(
            pool.subscribe(topic).err(),
            Some(PoolError::UnknownStream(topic.into()))
        );
    }
    // Paused time: long enough for any connection attempt to be made.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(upstream.opened.load(Ordering::SeqCst), 0, "nothing opened");
    assert!(pool.snapshot().is_empty(), "nothing half-created");
    assert_eq!(pool.check_topic("MSFT"), Ok(()));
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn each_route_has_its_own_cap_within_the_pool_cap() {
    let upstream = Upstream::default();
    let mut config = two_providers();
    config.routes[0].max_streams = Some(1);
    config.idle_linger = Duration::from_secs(60);
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let btc = pool.subscribe("BTC-USD").unwrap();
    assert_eq!(
        pool.subscribe("ETH-USD").err(),
        Some(PoolError::RouteAtCapacity {
            route: "crypto".into(),
            limit: 1,
            retry_after: Duration::from_secs(60),
        })
    );
    let also_btc = pool
        .subscribe("BTC-USD")
        .expect("an open stream is joined at the cap");
    let aapl = pool.subscribe("AAPL").expect("another route has room");
    drop((btc, also_btc));
    // Paused time: past the linger, the slot is the route's again.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let eth = pool.subscribe("ETH-USD").expect("room after the linger");
    drop((aapl, eth));
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_routes_health_rules_apply_to_its_streams_only() {
    let upstream = Upstream::default();
    let mut config = two_providers();
    // Ten events a second is 600 a minute: under the crypto route's rule.
    config.routes[0].health = Some(sse_health::HealthConfig {
        min_events_per_min: Some(1_000),
        ..sse_health::HealthConfig::default()
    });
    let pool = Pool::new(config, upstream).unwrap();
    let btc = pool.subscribe("BTC-USD").unwrap();
    let aapl = pool.subscribe("AAPL").unwrap();
    // Paused time: a full window (60 s) and `degrade_after` (10 s).
    tokio::time::sleep(Duration::from_secs(90)).await;
    let health = |topic: &str| {
        pool.snapshot()
            .into_iter()
            .find(|s| s.topic == topic)
            .map(|s| (s.state.health, s.state.causes))
            .expect("a stream")
    };
    let (level, causes) = health("BTC-USD");
    assert_eq!(level, sse_health::Level::Degraded, "{causes:?}");
    assert!(causes.iter().any(|c| c.contains("events")), "{causes:?}");
    assert_eq!(health("AAPL").0, sse_health::Level::Healthy);
    drop((btc, aapl));
    pool.close().await;
}

#[test]
fn routes_are_validated_with_the_key_at_fault() {
    let key = |config: PoolConfig| config.validate().map_err(|e| e.key);
    assert_eq!(key(two_providers()), Ok(()));
    let mut twice = two_providers();
    twice.routes[1].name = "crypto".into();
    assert_eq!(key(twice), Err("routes.1.name".into()));
    let mut bad = two_providers();
    bad.routes[2].url_template = "ftp://fx.test/{topic}".into();
    assert_eq!(key(bad), Err("routes.2.url_template".into()));
    let mut none = PoolConfig::new("");
    none.routes.clear();
    assert_eq!(
        key(none),
        Err("url_template".into()),
        "nothing serves any topic"
    );
}

/// `old.test` moved its streams to `new.test` (another origin); `new.test`
/// serves them.
#[derive(Clone, Default)]
struct Moved {
    seen: Arc<parking_lot::Mutex<Vec<Seen>>>,
}

impl Connector for Moved {
    type Io = TokioIo<tokio::io::DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let seen = self.seen.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let request = Seen::of(&req);
                let old = request.host == "old.test";
                seen.lock().push(request);
                let response = if old {
                    let location = format!("http://new.test{}", req.uri());
                    let mut moved = hyper::Response::new(http_body_util::Either::Left(
                        http_body_util::Empty::<Bytes>::new(),
                    ));
                    *moved.status_mut() = http::StatusCode::TEMPORARY_REDIRECT;
                    moved.headers_mut().insert(
                        "location",
                        HeaderValue::from_str(&location).expect("a URL is a header value"),
                    );
                    moved
                } else {
                    common::event_stream(http_body_util::Either::Right(Ticks::new(
                        TICK, TICK, None,
                    )))
                };
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        Ok(TokioIo::new(client))
    }
}

#[tokio::test(start_paused = true)]
async fn a_cross_origin_redirect_drops_every_header_the_route_configured() {
    let upstream = Moved::default();
    let mut config = PoolConfig::new("");
    let mut route = Route::new(
        "old",
        TopicMatch::Patterns(vec!["*".into()]),
        "http://old.test/s/{topic}",
    );
    route.headers = header("x-api-key", "old-secret");
    route
        .headers
        .insert("x-client-id", HeaderValue::from_static("tenant-7"));
    route
        .headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    config.routes = vec![route];
    config.stream.redirects.hosts = vec!["new.test".to_string()].into();
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    next_event(&mut sub).await;
    let seen = upstream.seen.lock().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (
            seen[0].host.as_str(),
            seen[0].headers["x-api-key"].to_str().unwrap()
        ),
        ("old.test", "old-secret")
    );
    assert_eq!(seen[1].host, "new.test");
    assert_eq!(seen[1].path, "/s/AAPL");
    for name in ["x-api-key", "x-client-id"] {
        assert!(
            seen[1].headers.get(name).is_none(),
            "{name} went to another origin"
        );
    }
    drop(sub);
    pool.close().await;
}
