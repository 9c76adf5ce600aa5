//! Subscriber auth end to end: static tokens and JWT (HS256, RS256, ES256)
//! from the header, a cookie or a query parameter; 401 and 403 with clear
//! bodies; topic patterns; resumes authorised like live events; streams
//! ended when their token expires; the per-token registry.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{WAIT, bridge_config, eventually, gateway, get, pool_config, reload, request, sim};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sse_bridge::{AuthConfig, BridgeConfig, JwtConfig, Secret};
use sse_parser::Item;

const ALICE: &str = "alice-0123456789abcdef";
const BOB: &str = "bob-fedcba9876543210";
const HS_SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/jwt")
        .join(name)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Alice may read `BTC-*`; Bob everything. JWT with all three algorithms,
/// audience `ssegate`, no leeway.
fn auth_config() -> AuthConfig {
    AuthConfig {
        tokens: Some(Secret::new(format!("alice {ALICE} BTC-*; bob {BOB}"))),
        jwt: Some(JwtConfig {
            algorithms: vec!["HS256".into(), "RS256".into(), "ES256".into()],
            hs256_secret: Some(Secret::new(HS_SECRET)),
            rs256_public_key_file: Some(fixture("rs256-public.pem")),
            es256_public_key_file: Some(fixture("es256-public.pem")),
            audience: vec!["ssegate".into()],
            leeway: Duration::ZERO,
            ..JwtConfig::default()
        }),
        cookie: Some("ssegate_token".into()),
        query_param: Some("access_token".into()),
        max_streams_per_token: 2,
        ..AuthConfig::default()
    }
}

fn config() -> BridgeConfig {
    BridgeConfig {
        auth: auth_config(),
        debug_vars: true,
        ..bridge_config()
    }
}

fn jwt(alg: Algorithm, claims: &serde_json::Value) -> String {
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET.as_bytes()),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(
            &std::fs::read(fixture("rs256-private.pem")).expect("the RSA fixture"),
        )
        .expect("an RSA key"),
        Algorithm::ES256 => EncodingKey::from_ec_pem(
            &std::fs::read(fixture("es256-private.pem")).expect("the EC fixture"),
        )
        .expect("an EC key"),
        other => panic!("no key for {other:?}"),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &key).expect("a token")
}

fn claims(topics: &[&str]) -> serde_json::Value {
    json!({"sub": "carol", "aud": "ssegate", "exp": now() + 600, "topics": topics})
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// GETs `path` with `Authorization: Bearer <token>`.
async fn get_as(addr: std::net::SocketAddr, path: &str, token: &str) -> common::Client {
    get(addr, path, &[("authorization", &bearer(token))]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_tokens_are_checked_and_scoped_to_their_topics() {
    let sim = sim(&["AAPL", "BTC-USD"], 100.0).await;
    let gw = gateway(pool_config(&sim), config()).await;
    let addr = gw.addr();

    let none = get(addr, "/v1/stream/AAPL", &[]).await;
    assert_eq!(none.status, 401);
    let challenge = none.headers["www-authenticate"].to_str().expect("ASCII");
    assert!(
        challenge.starts_with("Bearer realm=\"ssegate\""),
        "{challenge}"
    );
    assert_eq!(none.text().await, "unauthorized: no token\n");

    let wrong = get(
        addr,
        "/v1/stream/AAPL",
        &[("authorization", "Bearer not-a-known-token")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.text().await, "unauthorized: unknown token\n");

    let alice = bearer(ALICE);
    let forbidden = get(addr, "/v1/stream/AAPL", &[("authorization", &alice)]).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        forbidden.text().await,
        "forbidden: this token may not read the topic `AAPL`\n"
    );
    // One forbidden topic among allowed ones refuses the whole stream.
    let mixed = get(
        addr,
        "/v1/stream?topic=BTC-USD&topic=AAPL",
        &[("authorization", &alice)],
    )
    .await;
    assert_eq!(mixed.status, 403);

    let mut ok = get(addr, "/v1/stream/BTC-USD", &[("authorization", &alice)]).await;
    assert_eq!(ok.status, 200);
    assert_eq!(common::quote_symbol(&ok.next_event().await), "BTC-USD");
    let mut bob = get_as(addr, "/v1/stream/AAPL", BOB).await;
    assert_eq!(bob.status, 200);
    assert_eq!(common::quote_symbol(&bob.next_event().await), "AAPL");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_of_each_algorithm_are_verified_with_their_claims() {
    let sim = sim(&["AAPL", "BTC-USD"], 100.0).await;
    let gw = gateway(pool_config(&sim), config()).await;
    let addr = gw.addr();

    for alg in [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256] {
        let token = jwt(alg, &claims(&["AAPL", "ETH-*"]));
        let mut ok = get_as(addr, "/v1/stream/AAPL", &token).await;
        assert_eq!(ok.status, 200, "{alg:?}");
        assert_eq!(common::quote_symbol(&ok.next_event().await), "AAPL");
        let no = get_as(addr, "/v1/stream/BTC-USD", &token).await;
        assert_eq!(
            no.status, 403,
            "{alg:?}: BTC-USD is not in the token's topics"
        );
    }

    let refused = [
        (
            json!({"sub": "x", "aud": "ssegate", "exp": now() - 5, "topics": ["*"]}),
            "token expired",
        ),
        (
            json!({"sub": "x", "aud": "ssegate", "exp": now() + 600, "nbf": now() + 300, "topics": ["*"]}),
            "token not valid yet (nbf)",
        ),
        (
            json!({"sub": "x", "aud": "other", "exp": now() + 600, "topics": ["*"]}),
            "wrong audience",
        ),
        (
            json!({"sub": "x", "exp": now() + 600, "topics": ["*"]}),
            "missing claim `aud`",
        ),
        (
            json!({"sub": "x", "aud": "ssegate", "topics": ["*"]}),
            "missing claim `exp`",
        ),
    ];
    for (claims, why) in refused {
        let token = jwt(Algorithm::ES256, &claims);
        let reply = get_as(addr, "/v1/stream/AAPL", &token).await;
        assert_eq!(reply.status, 401, "{why}");
        assert_eq!(reply.text().await, format!("unauthorized: {why}\n"));
    }

    // A token without the topics claim may read nothing.
    let bare = jwt(
        Algorithm::HS256,
        &json!({"sub": "x", "aud": "ssegate", "exp": now() + 600}),
    );
    let reply = get_as(addr, "/v1/stream/AAPL", &bare).await;
    assert_eq!(reply.status, 403);

    // A signature from another key, and `alg: none`, are refused.
    let mut forged = jwt(Algorithm::HS256, &claims(&["*"]));
    forged.truncate(forged.rfind('.').expect("three parts") + 1);
    forged.push_str("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let reply = get_as(addr, "/v1/stream/AAPL", &forged).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.text().await, "unauthorized: bad signature\n");
    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(&["*"]))
    );
    let reply = get_as(addr, "/v1/stream/AAPL", &unsigned).await;
    assert_eq!(reply.status, 401, "alg none is never accepted");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_algorithm_outside_the_allow_list_is_refused() {
    let sim = sim(&["AAPL"], 50.0).await;
    let mut bridge = config();
    bridge.auth.jwt.as_mut().expect("jwt").algorithms = vec!["ES256".into()];
    let gw = gateway(pool_config(&sim), bridge).await;
    // Signed with the right HS256 secret, but HS256 is not on the list.
    let token = jwt(Algorithm::HS256, &claims(&["*"]));
    let reply = get_as(gw.addr(), "/v1/stream/AAPL", &token).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.text().await,
        "unauthorized: algorithm HS256 is not accepted\n"
    );
    let token = jwt(Algorithm::ES256, &claims(&["*"]));
    let reply = get_as(gw.addr(), "/v1/stream/AAPL", &token).await;
    assert_eq!(reply.status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_may_send_the_token_in_a_cookie_or_the_query() {
    let sim = sim(&["AAPL"], 100.0).await;
    let gw = gateway(pool_config(&sim), config()).await;
    let addr = gw.addr();
    let token = jwt(Algorithm::RS256, &claims(&["AAPL"]));
    let cookie = format!("theme=dark; ssegate_token={token}; other=1");
    let mut by_cookie = get(addr, "/v1/stream/AAPL", &[("cookie", &cookie)]).await;
    assert_eq!(by_cookie.status, 200);
    by_cookie.next_event().await;
    let path = format!("/v1/stream/AAPL?access_token={token}");
    let mut by_query = get(addr, &path, &[]).await;
    assert_eq!(by_query.status, 200);
    by_query.next_event().await;
    // Another scheme in `Authorization` (a proxy's Basic) does not hide
    // the cookie. (The holder may have two streams: one goes first.)
    drop(by_cookie);
    eventually("a stream released", || gw.streams() == 1).await;
    let mut both = get(
        addr,
        "/v1/stream/AAPL",
        &[("authorization", "Basic cHJveHk6cHc="), ("cookie", &cookie)],
    )
    .await;
    assert_eq!(both.status, 200);
    both.next_event().await;
    // Another cookie's name carries nothing.
    let other = format!("session={token}");
    let reply = get(addr, "/v1/stream/AAPL", &[("cookie", &other)]).await;
    assert_eq!(reply.status, 401);
    gw.shutdown().await;

    // Without `cookie` and `query_param` configured, both are ignored.
    let mut bridge = config();
    bridge.auth.cookie = None;
    bridge.auth.query_param = None;
    let gw = gateway(pool_config(&sim), bridge).await;
    let reply = get(gw.addr(), "/v1/stream/AAPL", &[("cookie", &cookie)]).await;
    assert_eq!(reply.status, 401);
    let reply = get(gw.addr(), &path, &[]).await;
    assert_eq!(reply.status, 401);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_replays_only_what_the_token_may_read() {
    let sim = sim(&["AAPL", "BTC-USD"], 200.0).await;
    let gw = gateway(pool_config(&sim), config()).await;
    let addr = gw.addr();
    let bob = bearer(BOB);
    let mut first = get(
        addr,
        "/v1/stream?topic=AAPL&topic=BTC-USD",
        &[("authorization", &bob)],
    )
    .await;
    let events = first.events(10).await;
    let last = events.last().expect("ten").id.to_string();
    // Someone stays on both topics, so the replay buffers are kept.
    let mut stays = get(
        addr,
        "/v1/stream?topic=AAPL&topic=BTC-USD",
        &[("authorization", &bob)],
    )
    .await;
    stays.next_event().await;
    drop(first);
    // Alice may read BTC-* only: her resume of both topics replays nothing.
    let alice = bearer(ALICE);
    let refused = get(
        addr,
        "/v1/stream?topic=AAPL&topic=BTC-USD",
        &[("authorization", &alice), ("last-event-id", &last)],
    )
    .await;
    assert_eq!(refused.status, 403);
    assert!(refused.text().await.contains("`AAPL`"));
    // Bob resumes with no gap.
    let mut again = get(
        addr,
        "/v1/stream?topic=AAPL&topic=BTC-USD",
        &[("authorization", &bob), ("last-event-id", &last)],
    )
    .await;
    assert_eq!(again.status, 200);
    let next = again.next_event().await;
    assert_ne!(&*next.event_type, "ssegate-reset", "resumed, not reset");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_token_expires() {
    let sim = sim(&["AAPL"], 50.0).await;
    let gw = gateway(pool_config(&sim), config()).await;
    // `exp` has a resolution of seconds: this one is 2-3 s away.
    let token = jwt(
        Algorithm::HS256,
        &json!({"sub": "dave", "aud": "ssegate", "exp": now() + 3, "topics": ["AAPL"]}),
    );
    let mut client = get_as(gw.addr(), "/v1/stream/AAPL", &token).await;
    assert_eq!(client.status, 200);
    let items = tokio::time::timeout(WAIT, client.drain())
        .await
        .expect("the stream ends at the token's expiry, not later");
    let expired = items.iter().any(|item| {
        matches!(item, Item::Event(e) if &*e.event_type == "ssegate-expired"
            && &*e.data == r#"{"reason":"token expired"}"#)
    });
    assert!(expired, "the client is told why");
    assert!(
        matches!(items.last(), Some(Item::Retry(_))),
        "a retry hint ends it: the client comes back with a fresh token"
    );
    let events = items
        .iter()
        .filter(|i| matches!(i, Item::Event(e) if !e.event_type.starts_with("ssegate-")))
        .count();
    assert!(events > 10, "events flowed until then ({events})");
    eventually("the holder is released", || gw.streams() == 0).await;
    // The same token is now refused.
    let reply = get_as(gw.addr(), "/v1/stream/AAPL", &token).await;
    assert_eq!(reply.status, 401);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_holder_has_a_bounded_number_of_streams_and_is_forgotten_after() {
    let sim = sim(&["AAPL", "BTC-USD"], 50.0).await;
    let gw = gateway(pool_config(&sim), config()).await;
    let (addr, admin) = (gw.addr(), gw.admin_addr());
    let bob = bearer(BOB);
    let one = get(addr, "/v1/stream/AAPL", &[("authorization", &bob)]).await;
    let two = get(addr, "/v1/stream/BTC-USD", &[("authorization", &bob)]).await;
    assert_eq!((one.status.as_u16(), two.status.as_u16()), (200, 200));
    let third = get(addr, "/v1/stream/AAPL", &[("authorization", &bob)]).await;
    assert_eq!(third.status, 429);
    assert!(third.headers.contains_key("retry-after"));
    // Another holder is not affected.
    let alice = get_as(addr, "/v1/stream/BTC-USD", ALICE).await;
    assert_eq!(alice.status, 200);

    let vars = |body: String| -> serde_json::Value { serde_json::from_str(&body).expect("JSON") };
    let auth = vars(
        request(admin, http::Method::GET, "/debug/vars", &[])
            .await
            .text()
            .await,
    )["auth"]
        .clone();
    assert_eq!(auth["principals"], 2);
    assert_eq!(auth["streams"], 3);
    drop((one, two, alice));
    eventually("every stream released", || gw.streams() == 0).await;
    let auth = vars(
        request(admin, http::Method::GET, "/debug/vars", &[])
            .await
            .text()
            .await,
    )["auth"]
        .clone();
    assert_eq!(auth["principals"], 0, "no entry outlives its streams");
    assert_eq!(auth["admitted"], auth["released"]);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_revokes_a_token_for_newcomers_and_keeps_open_streams() {
    let sim = sim(&["AAPL"], 100.0).await;
    let dir = std::env::temp_dir().join(format!("ssegate-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let file = dir.join("tokens");
    std::fs::write(&file, format!("# holders\nalice {ALICE}\nbob {BOB}\n")).expect("written");
    let mut bridge = bridge_config();
    bridge.auth = AuthConfig {
        tokens_file: Some(file.clone()),
        ..AuthConfig::default()
    };
    let gw = gateway(pool_config(&sim), bridge.clone()).await;
    let mut open = get_as(gw.addr(), "/v1/stream/AAPL", ALICE).await;
    assert_eq!(open.status, 200);
    open.next_event().await;

    std::fs::write(&file, format!("bob {BOB}\n")).expect("written");
    let (applied, _) = reload(&gw, &bridge, 50).expect("a valid reload");
    assert!(applied.iter().any(|k| k == "auth"), "{applied:?}");
    let refused = get_as(gw.addr(), "/v1/stream/AAPL", ALICE).await;
    assert_eq!(refused.status, 401);
    let ok = get_as(gw.addr(), "/v1/stream/AAPL", BOB).await;
    assert_eq!(ok.status, 200);
    // The open stream goes on.
    open.events(5).await;

    // A file that cannot be used is refused and changes nothing.
    std::fs::write(&file, "bob short\n").expect("written");
    let e = reload(&gw, &bridge, 50).expect_err("refused");
    assert!(e.to_string().contains("shorter than 16"), "{e}");
    let still = get_as(gw.addr(), "/v1/stream/AAPL", BOB).await;
    assert_eq!(still.status, 200);
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_auth_settings_are_refused_with_the_key() {
    let mut bridge = bridge_config();
    bridge.auth.tokens_file = Some(PathBuf::from("/nonexistent/ssegate-tokens"));
    let e = bridge.validate().expect_err("refused");
    // The key is the `[bridge]` table's (the binary prefixes `bridge.`).
    assert_eq!(e.key, "auth.tokens_file");
    assert!(
        e.to_string()
            .starts_with("auth.tokens_file: cannot read /nonexistent"),
        "{e}"
    );
    let mut bridge = bridge_config();
    bridge.auth.jwt = Some(JwtConfig {
        algorithms: vec!["RS256".into()],
        rs256_public_key_file: Some(fixture("es256-public.pem")),
        ..JwtConfig::default()
    });
    let e = bridge.validate().expect_err("an EC key is not an RSA key");
    assert_eq!(e.key, "auth.jwt.rs256_public_key_file");
    let mut bridge = bridge_config();
    bridge.auth.cookie = Some("a b".into());
    assert!(bridge.validate().is_err());
}

/// A token signed with the private key in `fixture` under `alg`, with
/// `kid` in its header when given.
fn jwt_with_kid(alg: Algorithm, private: &str, kid: Option<&str>) -> String {
    let pem = std::fs::read(fixture(private)).expect("the fixture");
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).expect("an RSA key"),
        _ => EncodingKey::from_ec_pem(&pem).expect("an EC key"),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, &claims(&["*"]), &key).expect("a token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwk_set_picks_keys_by_kid_and_a_reload_rotates_them() {
    let sim = sim(&["AAPL"], 100.0).await;
    let dir = std::env::temp_dir().join(format!("ssegate-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let jwks = dir.join("jwks.json");
    std::fs::copy(fixture("jwks.json"), &jwks).expect("copied");
    let mut bridge = BridgeConfig {
        debug_vars: true,
        ..bridge_config()
    };
    bridge.auth = AuthConfig {
        jwt: Some(JwtConfig {
            algorithms: vec!["ES256".into(), "RS256".into()],
            jwks_file: Some(jwks.clone()),
            audience: vec!["ssegate".into()],
            ..JwtConfig::default()
        }),
        ..AuthConfig::default()
    };
    let gw = gateway(pool_config(&sim), bridge.clone()).await;
    let addr = gw.addr();
    let status = |token: String| async move {
        let client = get_as(addr, "/v1/stream/AAPL", &token).await;
        let status = client.status.as_u16();
        (
            status,
            if status == 200 {
                String::new()
            } else {
                client.text().await
            },
        )
    };

    let old = jwt_with_kid(Algorithm::ES256, "es256-private.pem", Some("ec-2026-10"));
    let new = jwt_with_kid(
        Algorithm::ES256,
        "es256-next-private.pem",
        Some("ec-2026-11"),
    );
    assert_eq!(status(old.clone()).await.0, 200, "the current key");
    assert_eq!(
        status(new.clone()).await.0,
        200,
        "the next key, during the rotation"
    );
    let rsa = jwt_with_kid(Algorithm::RS256, "rs256-private.pem", Some("rsa-1"));
    assert_eq!(
        status(rsa).await.0,
        200,
        "another algorithm in the same set"
    );
    let no_kid = jwt_with_kid(Algorithm::ES256, "es256-next-private.pem", None);
    assert_eq!(
        status(no_kid).await.0,
        200,
        "without a kid each key is tried"
    );

    // A kid names the key: another key's signature under it is not taken.
    let forged = jwt_with_kid(
        Algorithm::ES256,
        "es256-next-private.pem",
        Some("ec-2026-10"),
    );
    let (code, body) = status(forged).await;
    assert_eq!(code, 401);
    assert!(body.contains("bad signature"), "{body}");
    let unknown = jwt_with_kid(Algorithm::ES256, "es256-private.pem", Some("ec-1999"));
    let (code, body) = status(unknown).await;
    assert_eq!(code, 401);
    assert!(body.contains("unknown key id `ec-1999`"), "{body}");

    let kids = |vars: String| -> Vec<String> {
        let vars: serde_json::Value = serde_json::from_str(&vars).expect("JSON");
        vars["auth"]["jwt_keys"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|k| {
                format!(
                    "{} {}",
                    k["alg"].as_str().unwrap_or("?"),
                    k["kid"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    let admin = gw.admin_addr();
    let before = kids(
        request(admin, http::Method::GET, "/debug/vars", &[])
            .await
            .text()
            .await,
    );
    assert_eq!(
        before,
        ["ES256 ec-2026-10", "ES256 ec-2026-11", "RS256 rsa-1"]
    );

    // The old key leaves the set: its tokens are refused from the reload on.
    let mut open = get_as(addr, "/v1/stream/AAPL", &old).await;
    assert_eq!(open.status, 200);
    std::fs::copy(fixture("jwks-rotated.json"), &jwks).expect("copied");
    let (applied, _) = reload(&gw, &bridge, 50).expect("a valid reload");
    assert!(applied.iter().any(|k| k == "auth"), "{applied:?}");
    let (code, body) = status(old).await;
    assert_eq!(code, 401);
    assert!(body.contains("unknown key id `ec-2026-10`"), "{body}");
    assert_eq!(status(new).await.0, 200);
    let after = kids(
        request(admin, http::Method::GET, "/debug/vars", &[])
            .await
            .text()
            .await,
    );
    assert_eq!(after, ["ES256 ec-2026-11", "RS256 rsa-1"]);
    // A stream opened under the old key goes on until its token expires.
    open.events(3).await;
    drop(open);
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unusable_jwk_sets_are_refused_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("ssegate-jwks-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let refused = |name: &str, text: String, algorithms: &[&str]| -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("written");
        let mut bridge = bridge_config();
        bridge.auth.jwt = Some(JwtConfig {
            algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
            jwks_file: Some(path),
            ..JwtConfig::default()
        });
        bridge.validate().expect_err("refused").to_string()
    };
    let set: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).expect("read"))
            .expect("JSON");
    let ec = set["keys"][0].clone();
    let rsa = set["keys"][2].clone();

    let e = refused("garbage", "{not json".into(), &["ES256"]);
    assert!(e.contains("jwks_file") && e.contains("not JSON"), "{e}");
    let e = refused("notaset", json!([ec]).to_string(), &["ES256"]);
    assert!(e.contains("not a JWK set"), "{e}");
    let e = refused("twice", json!({"keys": [ec, ec]}).to_string(), &["ES256"]);
    assert!(e.contains("key `ec-2026-10` appears twice"), "{e}");
    let many: Vec<serde_json::Value> = (0..33)
        .map(|i| {
            let mut k = ec.clone();
            k["kid"] = json!(format!("k{i}"));
            k
        })
        .collect();
    let e = refused("many", json!({ "keys": many }).to_string(), &["ES256"]);
    assert!(e.contains("33 keys; at most 32"), "{e}");
    // Only an RSA key, but only ES256 allowed: nothing usable.
    let e = refused("none", json!({"keys": [rsa]}).to_string(), &["ES256"]);
    assert!(e.contains("no key in it is usable"), "{e}");
    // A symmetric key shorter than SHA-256's output.
    let short = json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2hvcnQ"}]});
    let e = refused("short", short.to_string(), &["HS256"]);
    assert!(e.contains("at least 32 bytes"), "{e}");
    // Keys of other kinds or uses are skipped, not fatal, when one is usable.
    let mixed = json!({"keys": [
        {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa["n"], "e": rsa["e"]},
        {"kty": "weird", "kid": "w"},
        ec,
    ]});
    let path = dir.join("mixed");
    std::fs::write(&path, mixed.to_string()).expect("written");
    let mut bridge = bridge_config();
    bridge.auth.jwt = Some(JwtConfig {
        algorithms: vec!["ES256".into()],
        jwks_file: Some(path),
        ..JwtConfig::default()
    });
    bridge
        .validate()
        .expect("the EC P-256 key is used, the rest skipped");
    let _ = std::fs::remove_dir_all(&dir);
}
