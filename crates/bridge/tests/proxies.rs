//! The client's real address behind a balancer, over in-memory connections
//! from chosen peer addresses: `X-Forwarded-For` / `Forwarded` from a
//! trusted peer names the client, from anyone else it is ignored; the
//! PROXY protocol (v1, v2; malformed, late); per-IP limits and
//! `/admin/streams` follow the real client.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Feed, WAIT, addr, gateway, get};
use sse_bridge::BridgeConfig;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn config() -> BridgeConfig {
    BridgeConfig {
        replay_linger: Duration::ZERO,
        max_per_ip: 1,
        trusted_proxies: vec!["10.0.0.0/8".parse().expect("a range")],
        ..BridgeConfig::default()
    }
}

fn peer(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// The client addresses `/admin/streams` lists.
async fn busiest(gw: &common::Gateway) -> Vec<String> {
    let view = get(&gw.admin, addr(40000), "/admin/streams", &[]).await;
    let view: serde_json::Value = serde_json::from_str(&view.text().await).expect("JSON");
    let mut ips: Vec<String> = view["busiest_clients"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["ip"].as_str().expect("an ip").to_string())
        .collect();
    ips.sort();
    ips
}

#[tokio::test(start_paused = true)]
async fn a_trusted_proxy_names_the_client_and_limits_follow_it() {
    let feed = Feed::default();
    let gw = gateway(&feed, config());
    let balancer = peer([10, 0, 0, 1], 5000);
    let other_balancer = peer([10, 0, 0, 2], 5000);
    let xff = |ip: &'static str| [("x-forwarded-for", ip)];

    let a = get(
        &gw.streams,
        balancer,
        "/v1/stream/AAPL",
        &xff("203.0.113.1"),
    )
    .await;
    assert_eq!(a.status, 200);
    // Another client behind the same balancer: its own budget.
    let b = get(
        &gw.streams,
        balancer,
        "/v1/stream/AAPL",
        &xff("1.2.3.4, 203.0.113.2"),
    )
    .await;
    assert_eq!(
        b.status, 200,
        "the right-most untrusted address is the client"
    );
    // The first client again, through another balancer: over its limit.
    let again = get(
        &gw.streams,
        other_balancer,
        "/v1/stream/AAPL",
        &xff("203.0.113.1, 10.9.9.9"),
    )
    .await;
    assert_eq!(again.status, 429, "max_per_ip counts the real client");
    // Forwarded (RFC 7239) works the same way.
    let c = get(
        &gw.streams,
        other_balancer,
        "/v1/stream/AAPL",
        &[("forwarded", r#"for="[2001:db8::7]:4711";proto=https"#)],
    )
    .await;
    assert_eq!(c.status, 200);

    // A peer that is not trusted: its headers are ignored (spoofing).
    let spoofer = peer([198, 51, 100, 7], 6000);
    let d = get(
        &gw.streams,
        spoofer,
        "/v1/stream/AAPL",
        &xff("203.0.113.50"),
    )
    .await;
    assert_eq!(d.status, 200);
    let e = get(
        &gw.streams,
        spoofer,
        "/v1/stream/AAPL",
        &xff("203.0.113.51"),
    )
    .await;
    assert_eq!(e.status, 429, "a forged header does not buy another budget");

    assert_eq!(
        busiest(&gw).await,
        ["198.51.100.7", "2001:db8::7", "203.0.113.1", "203.0.113.2"]
    );
    drop((a, b, c, d));
    gw.handle.shutdown().await;
}

/// Sends `header` then a stream request on one connection from `from`;
/// the response's status, or `None` when the gateway closed the
/// connection without answering.
async fn proxied(gw: &common::Gateway, from: SocketAddr, header: &[u8]) -> Option<u16> {
    let mut io = gw.streams.connect(from).await.expect("accepted");
    io.write_all(header).await.expect("sent");
    io.write_all(b"GET /v1/stream/AAPL HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .expect("sent");
    let mut head = vec![0; 12];
    match tokio::time::timeout(WAIT, io.read_exact(&mut head)).await {
        Ok(Ok(_)) => {
            let status = std::str::from_utf8(&head[9..12]).expect("a status");
            let status = status.parse().expect("a number");
            // Keep the stream open: its admission stays.
            tokio::spawn(async move {
                let mut sink = vec![0; 4096];
                while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
            });
            Some(status)
        }
        Ok(Err(_)) => None,
        Err(_) => panic!("neither an answer nor a close in time"),
    }
}

fn v2(source: [u8; 4], port: u16) -> Vec<u8> {
    use ppp::v2::{Addresses, Builder, Command, IPv4, Protocol, Version};
    let addresses = Addresses::IPv4(IPv4::new(source, [10, 0, 0, 1], port, 8080));
    Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses)
        .build()
        .expect("a header")
}

#[tokio::test(start_paused = true)]
async fn the_proxy_protocol_names_the_client_and_a_bad_or_late_header_is_closed() {
    let feed = Feed::default();
    let gw = gateway(
        &feed,
        BridgeConfig {
            proxy_protocol: true,
            ..config()
        },
    );
    let balancer = peer([10, 0, 0, 1], 5000);
    let v1 = b"PROXY TCP4 203.0.113.5 10.0.0.1 40000 8080\r\n";
    assert_eq!(proxied(&gw, balancer, v1).await, Some(200));
    // The same client through v2: over its limit, so it was its address.
    assert_eq!(
        proxied(&gw, balancer, &v2([203, 0, 113, 5], 40001)).await,
        Some(429)
    );
    assert_eq!(
        proxied(&gw, balancer, &v2([203, 0, 113, 6], 40002)).await,
        Some(200)
    );
    // A health check (`LOCAL`): the balancer's own address.
    let local = {
        use ppp::v2::{Addresses, Builder, Command, Protocol, Version};
        Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Unspecified,
            Addresses::Unspecified,
        )
        .build()
        .expect("a header")
    };
    assert_eq!(proxied(&gw, balancer, &local).await, Some(200));
    // A peer that is not a trusted proxy: its header's address is not
    // believed, its own is used.
    let stranger = peer([192, 0, 2, 1], 5000);
    assert_eq!(
        proxied(&gw, stranger, b"PROXY TCP4 203.0.113.77 10.0.0.1 1 2\r\n").await,
        Some(200)
    );
    assert_eq!(
        proxied(&gw, stranger, b"PROXY TCP4 203.0.113.78 10.0.0.1 1 2\r\n").await,
        Some(429)
    );
    assert_eq!(
        busiest(&gw).await,
        ["10.0.0.1", "192.0.2.1", "203.0.113.5", "203.0.113.6"]
    );
    let streams = gw.handle.streams();

    // No header, a broken one: closed unanswered, at once (paused time:
    // no deadline passed).
    let started = tokio::time::Instant::now();
    assert_eq!(proxied(&gw, balancer, b"").await, None, "no header");
    assert_eq!(
        proxied(&gw, balancer, b"PROXY TCP4 nonsense\r\n").await,
        None
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // A header that never finishes: closed at the header deadline (10 s).
    let mut slow = gw.streams.connect(balancer).await.expect("accepted");
    slow.write_all(b"PROXY TCP4 203.0.113.9 ")
        .await
        .expect("sent");
    let started = tokio::time::Instant::now();
    let mut byte = [0; 1];
    let read = tokio::time::timeout(WAIT, slow.read(&mut byte))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
        "at the header deadline: {waited:?}"
    );
    assert_eq!(gw.handle.streams(), streams, "nothing admitted for them");
    gw.handle.shutdown().await;
}
