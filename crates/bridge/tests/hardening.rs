//! What one client must not be able to do to the gateway (the outside
//! audit's findings), on paused time over in-memory connections: hold
//! connections open forever, exhaust descriptors, burn CPU on bad tokens,
//! guess the admin token or lock the operator out, make an operator's
//! browser act, outlive a token, panic a connection.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Feed, addr, gateway, gateway_with, get, request, settle, until};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{EncodingKey, Header};
use sse_bridge::{AdminToken, AuthConfig, BridgeConfig, Hooks, JwtConfig, ProcessProbe, Secret};
use sse_parser::Item;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

const ACT: (&str, &str) = ("x-ssegate-action", "1");
const SECRET: &str = "a-hs256-secret-of-at-least-thirty-two-bytes";

fn config() -> BridgeConfig {
    BridgeConfig {
        replay_linger: Duration::ZERO,
        ..BridgeConfig::default()
    }
}

/// An HTTP/2 (prior knowledge) client connection; its task ends when the
/// gateway closes the connection.
async fn h2(
    gw: &common::Gateway,
    port: u16,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let io = gw.streams.connect(addr(port)).await.expect("accepted");
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await
        .expect("an HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, task)
}

fn h2_get(path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(format!("http://127.0.0.1:8080{path}"))
        .body(Empty::new())
        .expect("a request")
}

#[tokio::test(start_paused = true)]
async fn an_http2_connection_without_a_stream_is_closed_at_the_deadlines() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    // No request at all: closed at the header deadline (10 s).
    let started = Instant::now();
    let (_sender, connection) = h2(&gw, 47000).await;
    tokio::time::timeout(Duration::from_secs(30), connection)
        .await
        .expect("closed within 30 s")
        .expect("the connection ends");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(12),
        "{took:?}"
    );
    assert_eq!(gw.handle.connections(), 0);
    // A stream, then none: closed at the idle deadline (60 s) after it.
    let (mut sender, connection) = h2(&gw, 47001).await;
    let response = sender
        .send_request(h2_get("/v1/stream/AAPL"))
        .await
        .expect("a stream");
    assert_eq!(response.status(), 200);
    // Paused time: two minutes with the stream open.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert!(
        !connection.is_finished(),
        "a stream keeps its connection busy"
    );
    drop(response);
    let ended = Instant::now();
    tokio::time::timeout(Duration::from_secs(90), connection)
        .await
        .expect("closed within 90 s")
        .expect("the connection ends");
    let idle = ended.elapsed();
    assert!(
        idle >= Duration::from_secs(60) && idle < Duration::from_secs(62),
        "{idle:?}"
    );
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn http2_streams_per_connection_are_bounded() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        h2_max_concurrent_streams: 2,
        ..config()
    };
    let gw = gateway(&feed, bridge);
    let (sender, _connection) = h2(&gw, 48000).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let response = sender
            .clone()
            .send_request(h2_get("/v1/stream/AAPL"))
            .await
            .expect("a stream");
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    let mut third = sender.clone();
    let waiting = tokio::spawn(async move { third.send_request(h2_get("/v1/stream/AAPL")).await });
    // Paused time: five seconds for a third stream that must not come.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!waiting.is_finished(), "a third stream waits for room");
    assert_eq!(gw.handle.streams(), 2);
    open.pop();
    let third = waiting.await.expect("joined").expect("a response");
    assert_eq!(third.status(), 200, "room again");
    drop((open, third));
    gw.handle.shutdown().await;
}

struct Limit(u64);

impl ProcessProbe for Limit {
    fn rss_bytes(&self) -> u64 {
        0
    }
    fn open_fds(&self) -> u64 {
        0
    }
    fn max_fds(&self) -> u64 {
        self.0
    }
}

#[tokio::test(start_paused = true)]
async fn client_connections_stop_below_the_descriptor_limit_and_the_admin_listener_still_answers() {
    let feed = Feed::default();
    // 520 descriptors, 512 reserved: room for 8 clients.
    let hooks = Hooks::default().process_probe(Limit(520));
    let gw = gateway_with(&feed, config(), common::pool_config(), hooks);
    let mut held = Vec::new();
    for i in 0..8 {
        let client = get(&gw.streams, addr(49000 + i), "/v1/stream/AAPL", &[]).await;
        assert_eq!(client.status, 200);
        held.push(client);
    }
    // Over the cap: closed at once, nothing read.
    let mut over = gw.streams.connect(addr(49100)).await.expect("accepted");
    over.write_all(b"GET /v1/stream/AAPL HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .ok();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), over.read(&mut buf)).await;
    assert_eq!(read.expect("closed at once").expect("closed"), 0);
    for path in ["/healthz", "/readyz"] {
        let probe = get(&gw.admin, addr(49200), path, &[]).await;
        assert_eq!(probe.status, 200, "{path} answers at the cap");
    }
    let vars_config = get(&gw.admin, addr(49200), "/admin/streams", &[]).await;
    assert_eq!(vars_config.status, 200);
    // A place frees: a newcomer is served.
    held.pop();
    until(Duration::from_secs(1), "a place freed", || {
        gw.handle.connections() == 7
    })
    .await;
    let back = get(&gw.streams, addr(49300), "/v1/stream/AAPL", &[]).await;
    assert_eq!(back.status, 200);
    drop((held, back));
    gw.handle.shutdown().await;
}

fn jwt_config() -> BridgeConfig {
    BridgeConfig {
        auth: AuthConfig {
            jwt: Some(JwtConfig {
                algorithms: vec!["HS256".into()],
                hs256_secret: Some(Secret::new(SECRET)),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        },
        ..config()
    }
}

/// An HS256 token for every topic that expires at `exp` (seconds since the
/// epoch, maybe fractional).
fn token(exp: serde_json::Value) -> String {
    let claims = serde_json::json!({"sub": "alice", "topics": ["*"], "exp": exp});
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("a token")
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

#[tokio::test(start_paused = true)]
async fn bad_tokens_cost_the_sender_its_own_budget_not_the_gateways_cpu() {
    let feed = Feed::default();
    let gw = gateway(&feed, jwt_config());
    let bad = format!("Bearer {}x", token(serde_json::json!(now_secs() + 600.0)));
    let (mut unauthorized, mut throttled) = (0, 0);
    for _ in 0..500 {
        let reply = get(
            &gw.streams,
            addr(50000),
            "/v1/stream/AAPL",
            &[("authorization", &bad)],
        )
        .await;
        match reply.status.as_u16() {
            401 => unauthorized += 1,
            429 => throttled += 1,
            other => panic!("{other}"),
        }
    }
    // The burst (twice the per-second rate of 50) was checked; the rest
    // refused before any signature check.
    assert!(unauthorized <= 101, "{unauthorized} checked");
    assert_eq!(unauthorized + throttled, 500);
    // Another address is not affected.
    let good = format!("Bearer {}", token(serde_json::json!(now_secs() + 600.0)));
    let other_ip = std::net::SocketAddr::from(([127, 0, 0, 2], 50001));
    let mine = get(
        &gw.streams,
        other_ip,
        "/v1/stream/AAPL",
        &[("authorization", &good)],
    )
    .await;
    assert_eq!(mine.status, 200);
    drop(mine);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_fractional_exp_ends_the_stream_and_an_absurd_one_panics_nothing() {
    let feed = Feed::default();
    let gw = gateway(&feed, jwt_config());
    let soon = format!("Bearer {}", token(serde_json::json!(now_secs() + 20.5)));
    let mut client = get(
        &gw.streams,
        addr(51000),
        "/v1/stream/AAPL",
        &[("authorization", &soon)],
    )
    .await;
    assert_eq!(client.status, 200);
    let started = Instant::now();
    let mut expired = false;
    while let Some(item) = client.next_item().await {
        if matches!(&item, Item::Event(e) if e.event_type.as_str() == "ssegate-expired") {
            expired = true;
        }
    }
    assert!(expired, "told why it ended");
    // Paused time: the 30 s leeway plus the 20.5 s left.
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_secs(49) && lasted <= Duration::from_secs(52),
        "{lasted:?}"
    );
    // exp = 2^64 - 1: valid for ever, no overflow, nothing leaked.
    let absurd = format!("Bearer {}", token(serde_json::json!(u64::MAX)));
    let forever = get(
        &gw.streams,
        addr(51001),
        "/v1/stream/AAPL",
        &[("authorization", &absurd)],
    )
    .await;
    assert_eq!(forever.status, 200);
    drop(forever);
    until(Duration::from_secs(1), "released", || {
        gw.handle.connections() == 0
    })
    .await;
    assert_eq!(gw.handle.streams(), 0);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_connection_releases_what_it_held() {
    let feed = Feed::default();
    let bridge = BridgeConfig {
        debug_vars: true,
        ..config()
    };
    let hooks = Hooks::default().metrics(|| panic!("an injected panic while rendering"));
    let gw = gateway_with(&feed, bridge, common::pool_config(), hooks);
    let mut io = gw.admin.connect(addr(52000)).await.expect("accepted");
    io.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9090\r\n\r\n")
        .await
        .expect("sent");
    let mut buf = [0u8; 64];
    assert_eq!(
        io.read(&mut buf).await.expect("closed"),
        0,
        "the connection died"
    );
    settle().await;
    let vars = get(&gw.admin, addr(52001), "/debug/vars", &[])
        .await
        .text()
        .await;
    let vars: serde_json::Value = serde_json::from_str(&vars).expect("JSON");
    assert_eq!(
        vars["admin_connections"], 1,
        "only this one: the panicked one was released"
    );
    gw.handle.shutdown().await;
}

fn admin_token_config() -> BridgeConfig {
    BridgeConfig {
        admin_token: Some(AdminToken::new("the-right-admin-token")),
        ..config()
    }
}

#[tokio::test(start_paused = true)]
async fn wrong_admin_tokens_throttle_their_address_only() {
    let feed = Feed::default();
    let gw = gateway(&feed, admin_token_config());
    let guesser = addr(53000);
    let operator = std::net::SocketAddr::from(([127, 0, 0, 2], 53001));
    let right = [("authorization", "Bearer the-right-admin-token")];
    for i in 0..20 {
        let guess = format!("Bearer guess-number-{i:04}");
        let reply = get(&gw.admin, guesser, "/metrics", &[("authorization", &guess)]).await;
        assert_eq!(reply.status, 401);
    }
    let blocked = get(&gw.admin, guesser, "/admin/streams", &right).await;
    assert_eq!(
        blocked.status, 429,
        "the guesser is throttled, even with the right token"
    );
    let fine = get(&gw.admin, operator, "/admin/streams", &right).await;
    assert_eq!(fine.status, 200, "the operator is not locked out");
    // The login form counts against the same address.
    let form = request(&gw.admin, guesser, http::Method::POST, "/admin/login", &[]).await;
    assert_eq!(form.status, 429);
    // Paused time: the guesser's minute ends.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let again = get(&gw.admin, guesser, "/admin/streams", &right).await;
    assert_eq!(again.status, 200);
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn admin_actions_refuse_foreign_pages_foreign_hosts_and_simple_requests() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let peer = addr(54000);
    let act = |headers: Vec<(&'static str, &'static str)>| {
        let admin = gw.admin.clone();
        async move {
            let io = admin.connect(peer).await.expect("accepted");
            let host = headers
                .iter()
                .find(|(n, _)| *n == "host")
                .map_or("127.0.0.1:9090", |(_, v)| *v);
            let rest: Vec<(&str, &str)> =
                headers.into_iter().filter(|(n, _)| *n != "host").collect();
            let reply = ssegate_tests::client::request(
                io,
                host,
                http::Method::POST,
                "/admin/disconnect",
                &rest,
                Bytes::new(),
                Duration::from_secs(5),
            )
            .await;
            (reply.status.as_u16(), reply.text().await)
        }
    };
    // A form post from another site (a simple request: no custom header).
    let (status, body) = act(vec![("origin", "https://evil.example")]).await;
    assert_eq!(status, 403, "{body}");
    // The custom header, but a page of another site sent it.
    let (status, body) = act(vec![ACT, ("origin", "https://evil.example")]).await;
    assert_eq!(status, 403, "{body}");
    // DNS rebinding: a name that now points here.
    let (status, body) = act(vec![ACT, ("host", "rebound.evil.example:9090")]).await;
    assert_eq!(status, 403, "{body}");
    // No header at all (curl without it).
    let (status, body) = act(vec![]).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("X-Ssegate-Action"), "{body}");
    // Meant: the header, the listener's own host, its own origin or none.
    let (status, body) = act(vec![ACT]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = act(vec![ACT, ("origin", "http://127.0.0.1:9090")]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = act(vec![ACT, ("host", "localhost:9090")]).await;
    assert_eq!(status, 200, "{body}");
    gw.handle.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_public_admin_listener_needs_a_token_or_an_explicit_yes() {
    let feed = Feed::default();
    let start = |bridge: BridgeConfig| {
        let (streams, _) = sse_bridge::memory(addr(8080), common::PIPE);
        let (admin, _) =
            sse_bridge::memory("10.1.2.3:9090".parse().expect("an address"), common::PIPE);
        let pool = sse_conn_pool::Pool::new(common::pool_config(), feed.clone()).expect("a pool");
        sse_bridge::start(bridge, pool, streams, admin, Hooks::default())
    };
    let refused = start(config()).err().expect("refused");
    assert!(
        refused.to_string().contains("admin_public_read"),
        "{refused}"
    );
    let open = start(BridgeConfig {
        admin_public_read: true,
        ..config()
    })
    .expect("said so explicitly");
    open.shutdown().await;
    let guarded = start(admin_token_config()).expect("with a token");
    guarded.shutdown().await;
    // The configuration check says so too.
    let listen_anywhere = BridgeConfig {
        admin_listen: "0.0.0.0:9090".parse().expect("an address"),
        ..config()
    };
    let e = listen_anywhere.validate().expect_err("refused");
    assert_eq!(e.key, "admin_listen");
}
