//! TLS on the stream listener, over in-memory connections with a test CA:
//! ALPN, a renewed pair reaching new connections while open streams go on,
//! and pairs that must be refused (mismatched, not PEM, expired) changing
//! nothing.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Feed, WAIT, addr, gateway_with, until};
use rustls::pki_types::CertificateDer;
use sse_bridge::{BridgeConfig, Hooks, Reload, TlsFiles};
use ssegate_tests::tls::{TestCa, loopback_name};
use tokio::io::DuplexStream;
use tokio_rustls::client::TlsStream;

fn config() -> BridgeConfig {
    BridgeConfig {
        replay_linger: Duration::ZERO,
        ..BridgeConfig::default()
    }
}

/// A directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ssegate-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// A TLS connection to the stream listener from `port`, offering `alpn`;
/// with the certificate the gateway presented.
async fn connect(
    gw: &common::Gateway,
    ca: &TestCa,
    port: u16,
    alpn: &[&[u8]],
) -> (TlsStream<DuplexStream>, CertificateDer<'static>) {
    let io = gw.streams.connect(addr(port)).await.expect("accepted");
    let tls = ca
        .client(alpn)
        .connect(loopback_name(), io)
        .await
        .expect("a TLS handshake with a certificate the CA signed");
    let presented = tls.get_ref().1.peer_certificates().expect("a chain")[0].clone();
    (tls, presented)
}

/// A gateway with TLS from `dir/pair.{crt,key}`, reloading from the same
/// files.
fn tls_gateway(feed: &Feed, dir: &std::path::Path) -> common::Gateway {
    let bridge = BridgeConfig {
        tls: Some(TlsFiles {
            cert_file: dir.join("pair.crt"),
            key_file: dir.join("pair.key"),
        }),
        ..config()
    };
    let source = bridge.clone();
    let hooks = Hooks::default().reload(move || {
        Ok(Reload {
            source: "the test".into(),
            bridge: source.clone(),
            max_streams: 100,
            log_level: None,
            restart: Vec::new(),
        })
    });
    gateway_with(feed, bridge, common::pool_config(), hooks)
}

#[tokio::test(start_paused = true)]
async fn a_renewed_pair_reaches_new_connections_while_open_streams_go_on() {
    let dir = scratch("renew");
    let ca = TestCa::new();
    let first = ca.leaf(&["127.0.0.1"]);
    first.write(&dir, "pair");
    let feed = Feed::default();
    let gw = tls_gateway(&feed, &dir);

    let (io, presented) = connect(&gw, &ca, 51000, &[b"http/1.1"]).await;
    assert_eq!(presented, first.der);
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut open = ssegate_tests::client::get(io, "127.0.0.1:8080", "/v1/stream/AAPL", WAIT).await;
    assert_eq!(open.status, 200);
    until(Duration::from_secs(5), "the upstream is connected", || {
        feed.listeners("AAPL") > 0
    })
    .await;
    feed.publish("AAPL", "before");
    assert_eq!(open.next_event().await.data.as_str(), "before");

    let second = ca.leaf(&["127.0.0.1"]);
    second.write(&dir, "pair");
    let said = gw.handle.reloader().reload().expect("the new pair loads");
    assert!(said.contains("tls"), "the reload names the key: {said}");
    let (_, presented) = connect(&gw, &ca, 51001, &[b"http/1.1"]).await;
    assert_eq!(presented, second.der, "a new connection gets the new pair");
    feed.publish("AAPL", "after");
    assert_eq!(
        open.next_event().await.data.as_str(),
        "after",
        "the stream opened under the old pair goes on"
    );

    // Pairs that must be refused; each leaves the pair in force alone.
    let other = ca.leaf(&["127.0.0.1"]);
    let expired = ca.leaf_until(&["127.0.0.1"], (2021, 1, 1));
    let bad: [(&str, &dyn Fn()); 3] = [
        ("does not go with", &|| {
            std::fs::write(dir.join("pair.key"), &other.key_pem).expect("write");
        }),
        ("not PEM", &|| {
            std::fs::write(
                dir.join("pair.crt"),
                "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            )
            .expect("write");
        }),
        ("expired", &|| {
            expired.write(&dir, "pair");
        }),
    ];
    for (port, (why, spoil)) in (51002..).zip(bad) {
        second.write(&dir, "pair");
        spoil();
        let refused = gw.handle.reloader().reload().expect_err(why);
        assert!(refused.to_string().contains(why), "{why}: {refused}");
        let (_, presented) = connect(&gw, &ca, port, &[b"h2", b"http/1.1"]).await;
        assert_eq!(presented, second.der, "{why}: the pair in force stays");
    }
    feed.publish("AAPL", "still");
    assert_eq!(open.next_event().await.data.as_str(), "still");
    drop(open);
    gw.handle.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn a_browser_offering_h2_gets_http2_and_a_gateway_will_not_start_on_a_bad_pair() {
    let dir = scratch("alpn");
    let ca = TestCa::new();
    ca.leaf(&["127.0.0.1"]).write(&dir, "pair");
    let feed = Feed::default();
    let gw = tls_gateway(&feed, &dir);
    let (io, _) = connect(&gw, &ca, 52000, &[b"h2", b"http/1.1"]).await;
    assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .expect("HTTP/2 over TLS");
    tokio::spawn(connection);
    let request = hyper::Request::get("https://127.0.0.1:8080/v1/stream/AAPL")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .expect("a request");
    let response = sender.send_request(request).await.expect("a response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    let mut client = common::Client::from_response(response, WAIT);
    assert_eq!(client.status, 200);
    until(Duration::from_secs(5), "the upstream is connected", || {
        feed.listeners("AAPL") > 0
    })
    .await;
    feed.publish("AAPL", "over h2");
    assert_eq!(client.next_event().await.data.as_str(), "over h2");
    drop(client);
    gw.handle.shutdown().await;

    // A key that is not the certificate's: the gateway does not start,
    // and says which file.
    std::fs::write(dir.join("pair.key"), ca.leaf(&["127.0.0.1"]).key_pem).expect("write");
    let (streams, _) = sse_bridge::memory(addr(8080), common::PIPE);
    let (admin, _) = sse_bridge::memory(addr(9090), common::PIPE);
    let pool = sse_conn_pool::Pool::new(common::pool_config(), feed.clone()).expect("a pool");
    let bridge = BridgeConfig {
        tls: Some(TlsFiles {
            cert_file: dir.join("pair.crt"),
            key_file: dir.join("pair.key"),
        }),
        ..config()
    };
    let Err(e) = sse_bridge::start(bridge, pool, streams, admin, Hooks::default()) else {
        panic!("started with a mismatched pair");
    };
    assert!(e.to_string().contains("tls.key_file"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
