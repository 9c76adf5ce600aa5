//! Sockets: TLS with a self-signed certificate (and F13, its failure),
//! HTTP/2 sharing one connection per origin, the per-host cap, and F7 (name
//! resolution failing or hanging) with an in-memory resolver.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;

use common::{FakeResolver, MemoryUpstream, Script, Step};
use sse_conn_pool::{
    AttemptLimits, Connections, Connector, Http2PriorKnowledge, HttpsConnector, StreamConfig,
    StreamHandle, StreamItem, TcpConnector, Throttled, TlsConfig, UpstreamRequest, spawn_stream,
};
use sse_state_machine::{FailureKind, Jitter, Phase, Reason, TimeoutKind};
use sse_upstream_sim::{Sim, SimHandle, TlsIdentity};
use tokio::sync::broadcast;
use tokio::time::timeout;

/// Bounded waits on loopback (real time).
const WAIT: Duration = Duration::from_secs(10);

fn quick(connections: &Connections) -> StreamConfig {
    let mut config = StreamConfig {
        connections: connections.clone(),
        ..StreamConfig::default()
    };
    config.machine.backoff.initial = Duration::from_millis(20);
    config.machine.backoff.jitter = Jitter::None;
    config.machine.backoff.reconnect_spread = Duration::ZERO;
    config
}

/// The next status other than the start, within `bound`.
async fn status(
    items: &mut broadcast::Receiver<StreamItem>,
    bound: Duration,
) -> sse_conn_pool::Status {
    timeout(bound, async {
        loop {
            if let Ok(StreamItem::Status(status)) = items.recv().await
                && status.reason != Reason::Start
            {
                return status;
            }
        }
    })
    .await
    .expect("a status update in time")
}

/// Waits for `n` events.
async fn events(items: &mut broadcast::Receiver<StreamItem>, n: usize) {
    timeout(WAIT, async {
        let mut seen = 0;
        while seen < n {
            if let Ok(StreamItem::Event(_)) = items.recv().await {
                seen += 1;
            }
        }
    })
    .await
    .expect("events in time");
}

/// A PEM file holding `identity`'s certificate, removed on drop.
struct CaFile(PathBuf);

impl CaFile {
    fn new(identity: &TlsIdentity, name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ssegate-{name}-{}.pem", std::process::id()));
        std::fs::write(&path, &identity.cert_pem).expect("write the CA file");
        Self(path)
    }
}

impl Drop for CaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn tls_sim() -> (SimHandle, TlsIdentity) {
    let identity = TlsIdentity::self_signed(&["127.0.0.1", "localhost"]).expect("a certificate");
    let sim = Sim::builder()
        .topics(["AAPL", "MSFT", "GOOG"])
        .events_per_sec(100.0)
        .tls(identity.clone())
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts");
    (sim, identity)
}

fn stream<C: Connector>(
    connector: C,
    sim: &SimHandle,
    topic: &str,
    connections: &Connections,
) -> StreamHandle {
    let request = UpstreamRequest::get(&sim.stream_url(topic)).expect("a valid URL");
    spawn_stream(connector, request, quick(connections)).expect("a valid config")
}

/// Three streams, each delivering events, then all stopped; returns the
/// sockets that were open while they ran.
async fn three_streams<C: Connector>(connector: C, sim: &SimHandle) -> usize {
    let connections = Connections::default();
    let streams: Vec<StreamHandle> = ["AAPL", "MSFT", "GOOG"]
        .iter()
        .map(|topic| stream(connector.clone(), sim, topic, &connections))
        .collect();
    for handle in &streams {
        let mut items = handle.subscribe();
        events(&mut items, 3).await;
    }
    let sockets = connections.open_sockets();
    for handle in streams {
        handle.stop().await;
    }
    // Back to baseline: no socket, no registry entry.
    assert_eq!(connections.open_sockets(), 0);
    assert_eq!(connections.hosts(), 0);
    sockets
}

#[tokio::test]
async fn tls_with_a_private_ca_shares_one_h2_connection_per_origin() {
    let (sim, identity) = tls_sim().await;
    let ca = CaFile::new(&identity, "h2");
    let config = TlsConfig {
        extra_ca_file: Some(ca.0.clone()),
        ..TlsConfig::default()
    };
    let connector = HttpsConnector::new(&config).expect("a valid TLS config");
    assert_eq!(three_streams(connector, &sim).await, 1, "one shared socket");
    assert_eq!(sim.connections(), 1, "the server saw one TCP connection");
    sim.shutdown().await;
}

#[tokio::test]
async fn behind_the_attempt_limiter_https_still_speaks_http2() {
    // The gateway's connector is a `Throttled` HTTPS one: the limiter must
    // pass on what ALPN chose, or an h2 server is spoken HTTP/1.1 to.
    let (sim, identity) = tls_sim().await;
    let ca = CaFile::new(&identity, "throttled");
    let config = TlsConfig {
        extra_ca_file: Some(ca.0.clone()),
        ..TlsConfig::default()
    };
    let https = HttpsConnector::new(&config).expect("a valid TLS config");
    let connector = Throttled::new(https, AttemptLimits::default());
    assert_eq!(
        three_streams(connector, &sim).await,
        1,
        "one shared h2 socket"
    );
    assert_eq!(sim.connections(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn tls_without_http2_uses_a_socket_per_stream() {
    let (sim, identity) = tls_sim().await;
    let ca = CaFile::new(&identity, "h1");
    let config = TlsConfig {
        extra_ca_file: Some(ca.0.clone()),
        http2: false,
        ..TlsConfig::default()
    };
    let connector = HttpsConnector::new(&config).expect("a valid TLS config");
    assert_eq!(three_streams(connector, &sim).await, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn h2c_with_prior_knowledge_shares_one_connection() {
    let sim = Sim::builder()
        .topics(["AAPL", "MSFT", "GOOG"])
        .events_per_sec(100.0)
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts");
    assert_eq!(
        three_streams(Http2PriorKnowledge(TcpConnector), &sim).await,
        1
    );
    assert_eq!(sim.connections(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_tls_configuration_is_a_clear_error() {
    let missing = TlsConfig {
        extra_ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
        ..TlsConfig::default()
    };
    let err = HttpsConnector::new(&missing).expect_err("a missing file");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    let empty =
        CaFile(std::env::temp_dir().join(format!("ssegate-empty-{}.pem", std::process::id())));
    std::fs::write(&empty.0, "not a certificate\n").expect("write");
    let config = TlsConfig {
        extra_ca_file: Some(empty.0.clone()),
        ..TlsConfig::default()
    };
    let err = HttpsConnector::new(&config).expect_err("no certificate");
    assert!(err.to_string().contains("no certificate"), "{err}");
    let nothing = TlsConfig {
        webpki_roots: false,
        ..TlsConfig::default()
    };
    assert!(HttpsConnector::new(&nothing).is_err(), "no root at all");
}

#[tokio::test]
async fn f13_an_untrusted_certificate_is_a_tls_failure_with_backoff_and_no_plaintext() {
    let (sim, _identity) = tls_sim().await;
    // Only the public roots: the self-signed certificate is not trusted.
    let connector = HttpsConnector::new(&TlsConfig::default()).expect("valid");
    let connections = Connections::default();
    let handle = stream(connector, &sim, "AAPL", &connections);
    let mut items = handle.subscribe();
    for _ in 0..3 {
        let failed = status(&mut items, WAIT).await;
        assert_eq!(
            (failed.phase, failed.reason),
            (Phase::BackingOff, Reason::Failed(FailureKind::Tls))
        );
        assert!(!failed.terminal, "TLS failures are retried");
        assert_eq!(status(&mut items, WAIT).await.phase, Phase::Connecting);
    }
    assert!(
        sim.requests().is_empty(),
        "no HTTP request ever reached the server: no plaintext fallback"
    );
    assert!(handle.state().attempts >= 3);
    handle.stop().await;
    assert_eq!((connections.open_sockets(), connections.hosts()), (0, 0));

    // An https URL through the plain connector is refused, never sent as http.
    let request = UpstreamRequest::get(&sim.stream_url("AAPL")).expect("valid");
    let handle = spawn_stream(TcpConnector, request, quick(&connections)).expect("valid");
    let mut items = handle.subscribe();
    let failed = status(&mut items, WAIT).await;
    assert_eq!(failed.phase, Phase::BackingOff);
    handle.stop().await;
    assert!(sim.requests().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn f13_a_stalled_tls_handshake_is_bounded_by_the_connect_deadline() {
    // A server that accepts TCP and never answers the ClientHello.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let connector = HttpsConnector::new(&TlsConfig::default()).expect("valid");
    let connections = Connections::default();
    let mut config = quick(&connections);
    config.machine.connect_timeout = Duration::from_millis(300);
    let request =
        UpstreamRequest::get(&format!("https://{addr}/v1/quotes/AAPL/stream")).expect("valid");
    let handle = spawn_stream(connector, request, config).expect("valid");
    let mut items = handle.subscribe();
    let failed = status(&mut items, WAIT).await;
    assert_eq!(failed.reason, Reason::Timeout(TimeoutKind::Connect));
    handle.stop().await;
    assert_eq!((connections.open_sockets(), connections.hosts()), (0, 0));
    held.abort();
}

#[tokio::test(start_paused = true)]
async fn the_per_host_cap_queues_connections_until_a_socket_closes() {
    let upstream = MemoryUpstream::new(
        Vec::new(),
        Script::stream(vec![
            Step::Send("id: 1\ndata: a\n\n"),
            Step::Send("id: 2\ndata: b\n\n"),
            Step::Hang,
        ]),
    );
    let connections = Connections::new(1);
    let spawn = |topic: &str| {
        let url = format!("http://upstream.test/v1/quotes/{topic}/stream");
        let request = UpstreamRequest::get(&url).expect("a valid URL");
        spawn_stream(upstream.clone(), request, quick(&connections)).expect("a valid config")
    };
    let first = spawn("AAPL");
    events(&mut first.subscribe(), 2).await;
    let second = spawn("MSFT");
    let mut items = second.subscribe();
    // Paused time: three seconds pass at once, within the 5 s connect
    // deadline; the second is still waiting for the host's one socket.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (second.state().opened, upstream.attempts()),
        (0, 1),
        "the second waits for the host's one slot"
    );
    assert_eq!(connections.open_sockets(), 1);
    first.stop().await;
    events(&mut items, 2).await;
    assert_eq!(connections.open_sockets(), 1);
    second.stop().await;
    assert_eq!((connections.open_sockets(), connections.hosts()), (0, 0));
}

fn fake_stream(resolver: &FakeResolver, connections: &Connections) -> StreamHandle {
    let connector = HttpsConnector::new(&TlsConfig::default())
        .expect("valid")
        .with_resolver(resolver.clone());
    // `.test` is reserved: even a real resolver would never find it.
    let request = UpstreamRequest::get("http://upstream.test/v1/quotes/AAPL/stream").expect("ok");
    let mut config = StreamConfig {
        connections: connections.clone(),
        ..StreamConfig::default()
    };
    config.machine.backoff.jitter = Jitter::None;
    spawn_stream(connector, request, config).expect("valid")
}

#[tokio::test(start_paused = true)]
async fn f7_a_failing_resolver_is_a_dns_failure_with_growing_backoff() {
    let resolver = FakeResolver::default();
    let connections = Connections::default();
    let handle = fake_stream(&resolver, &connections);
    let mut items = handle.subscribe();
    let mut waits = Vec::new();
    for _ in 0..5 {
        let failed = status(&mut items, Duration::from_secs(3600)).await;
        assert_eq!(failed.reason, Reason::Failed(FailureKind::Dns));
        let at = tokio::time::Instant::now();
        assert_eq!(
            status(&mut items, Duration::from_secs(3600)).await.phase,
            Phase::Connecting
        );
        waits.push(at.elapsed());
    }
    assert_eq!(
        waits,
        [1, 2, 4, 8, 16].map(Duration::from_secs),
        "exponential backoff between failed lookups"
    );
    handle.stop().await;
    assert_eq!(resolver.in_flight.load(Ordering::SeqCst), 0);
    assert_eq!((connections.open_sockets(), connections.hosts()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn f7_a_hanging_resolver_is_cut_by_the_connect_deadline_without_pile_up() {
    let resolver = FakeResolver {
        hang: true,
        ..FakeResolver::default()
    };
    let connections = Connections::default();
    let handle = fake_stream(&resolver, &connections);
    let mut items = handle.subscribe();
    for _ in 0..10 {
        let failed = status(&mut items, Duration::from_secs(3600)).await;
        assert_eq!(failed.reason, Reason::Timeout(TimeoutKind::Connect));
        // The abandoned lookup is gone, not left running beside the next.
        assert_eq!(resolver.in_flight.load(Ordering::SeqCst), 0);
        status(&mut items, Duration::from_secs(3600)).await;
    }
    assert!(resolver.started.load(Ordering::SeqCst) >= 10);
    handle.stop().await;
    assert_eq!(resolver.in_flight.load(Ordering::SeqCst), 0);
    assert_eq!((connections.open_sockets(), connections.hosts()), (0, 0));
}
