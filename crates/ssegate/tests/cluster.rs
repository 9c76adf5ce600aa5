//! Cluster mode from outside: `ssegate` processes with `[cluster]` on, one
//! real `nats-server -js` and the upstream simulator, all on loopback. The
//! simulator's own records (stream starts and ends, request headers) say
//! how many upstream connections the cluster opened and where they
//! resumed; its sequence numbers (`"n"` in every event) say whether a
//! subscriber missed or repeated anything. Every wait is bounded.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::time::Duration;

use sse_upstream_sim::{Sim, SimHandle};
use ssegate_tests::nats::{NatsServer, Proxy, free_port};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio::time::Instant;

/// The bound on each step.
const WAIT: Duration = Duration::from_secs(20);
/// The lease time the instances run with (the default).
const LEASE_TTL: Duration = Duration::from_secs(3);

/// One `ssegate run` in cluster mode; killed (SIGKILL) when dropped.
struct Gateway {
    child: Child,
    listen: u16,
    admin: u16,
    file: std::path::PathBuf,
}

fn spawn(file: &std::path::Path) -> Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ssegate"))
        .args(["run", "--config"])
        .arg(file)
        .env(
            "SSEGATE_LOG",
            std::env::var("TEST_GW_LOG").unwrap_or("warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("ssegate runs")
}

async fn listening(port: u16) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the gateway never listened");
        // Wall clock: another process starting; a bounded poll.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_file(&self.file);
    }
}

impl Gateway {
    async fn start(nats: &str, sim: &SimHandle, cluster: &str, max_streams: usize) -> Self {
        Self::start_with(nats, sim, cluster, max_streams, "", "").await
    }

    /// As `start`, with more keys for `[upstream]` and `[bridge]`.
    async fn start_with(
        nats: &str,
        sim: &SimHandle,
        cluster: &str,
        max_streams: usize,
        upstream: &str,
        bridge: &str,
    ) -> Self {
        let (listen, admin) = (free_port(), free_port());
        let file = std::env::temp_dir().join(format!(
            "ssegate-cluster-{}-{listen}.toml",
            std::process::id()
        ));
        std::fs::write(
            &file,
            format!(
                "[upstream]\nurl_template = \"{}/v1/quotes/{{topic}}/stream\"\nmax_streams = {max_streams}\n{upstream}\n\
                 [bridge]\nlisten = \"127.0.0.1:{listen}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
                 drain_spread = \"500ms\"\ndrain_deadline = \"2s\"\nretry_hint = \"200ms\"\n{bridge}\n\
                 [cluster]\nenabled = true\nname = \"{cluster}\"\ninstance = \"gw-{listen}\"\n\
                 nats_urls = [\"{}\"]\n",
                sim.url(),
                nats
            ),
        )
        .expect("write the config");
        let child = spawn(&file);
        listening(listen).await;
        Self {
            child,
            listen,
            admin,
            file,
        }
    }

    /// A deploy: SIGTERM, its drain to the end, and a new process on the
    /// same ports and configuration.
    async fn restart(&mut self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let exited = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("it exits after its drain")
            .expect("an exit status");
        assert!(exited.success(), "{exited:?}");
        self.child = spawn(&self.file);
        listening(self.listen).await;
    }

    async fn subscribe(&self, topic: &str, last_id: Option<&str>) -> ssegate_tests::client::Client {
        let io = TcpStream::connect(("127.0.0.1", self.listen))
            .await
            .expect("connects");
        let headers: Vec<(&str, &str)> = last_id
            .map(|id| ("last-event-id", id))
            .into_iter()
            .collect();
        ssegate_tests::client::request(
            io,
            &format!("127.0.0.1:{}", self.listen),
            http::Method::GET,
            &format!("/v1/stream/{topic}"),
            &headers,
            bytes::Bytes::new(),
            WAIT,
        )
        .await
    }

    /// `GET path` on the admin listener: the status and the body.
    async fn admin(&self, path: &str) -> (u16, String) {
        let io = TcpStream::connect(("127.0.0.1", self.admin))
            .await
            .expect("connects");
        let reply =
            ssegate_tests::client::get(io, &format!("127.0.0.1:{}", self.admin), path, WAIT).await;
        (reply.status.as_u16(), reply.text().await)
    }

    /// Whether this instance's pool holds `topic`'s upstream (it owns it).
    async fn owns(&self, topic: &str) -> bool {
        let (_, body) = self.admin("/admin/streams").await;
        let streams: serde_json::Value =
            serde_json::from_str(&body).expect("JSON from /admin/streams");
        streams["streams"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["topic"] == topic))
    }
}

/// `n` instances of cluster `name` on `nats`, in front of `sim`.
async fn instances(
    nats: &NatsServer,
    sim: &SimHandle,
    name: &str,
    n: usize,
    max_streams: usize,
) -> Vec<Gateway> {
    let mut gateways = Vec::with_capacity(n);
    for _ in 0..n {
        gateways.push(Gateway::start(&nats.url(), sim, name, max_streams).await);
    }
    gateways
}

/// An event as a subscriber saw it: the gateway's id and the upstream's
/// sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    id: String,
    n: u64,
}

async fn next(client: &mut ssegate_tests::client::Client) -> Seen {
    let event = client.next_event().await;
    let data: serde_json::Value = serde_json::from_str(&event.data).expect("a quote");
    Seen {
        id: event.id.to_string(),
        n: data["n"].as_u64().expect("a sequence number"),
    }
}

/// Upstream stream responses per topic: (started, still open).
fn upstreams(
    sim: &SimHandle,
    log: &mut Vec<sse_upstream_sim::StreamLog>,
) -> HashMap<String, (usize, usize)> {
    log.extend(sim.take_log().0);
    let mut out: HashMap<String, (usize, usize)> = HashMap::new();
    for entry in log.iter() {
        let counts = out.entry(entry.topic.clone()).or_default();
        if entry.ended {
            counts.1 -= 1;
        } else {
            counts.0 += 1;
            counts.1 += 1;
        }
    }
    out
}

async fn sim(topics: &[&str]) -> SimHandle {
    Sim::builder()
        .topics(topics.iter().copied())
        .events_per_sec(20.0)
        .history(10_000)
        .log_streams(true)
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts")
}

/// Asserts that `seen` counts up by one (no gap, no duplicate).
fn contiguous(seen: &[Seen], what: &str) {
    for pair in seen.windows(2) {
        assert_eq!(
            pair[1].n,
            pair[0].n + 1,
            "{what}: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_one_upstream_per_topic_and_give_the_same_ids() {
    let nats = NatsServer::start().await;
    let topics = ["AAPL", "MSFT", "GOOG"];
    let sim = sim(&topics).await;
    let gateways = instances(&nats, &sim, "t1", 3, 50).await;
    // A subscriber of every topic on every instance, asked for at once.
    let mut clients = Vec::new();
    for gateway in &gateways {
        for topic in topics {
            clients.push((topic, gateway.subscribe(topic, None)));
        }
    }
    let mut subscribers = Vec::new();
    for (topic, client) in clients {
        let client = client.await;
        assert_eq!(client.status, 200, "{topic}");
        subscribers.push((topic, client));
    }
    let mut seen: BTreeMap<&str, Vec<Vec<Seen>>> = BTreeMap::new();
    for (topic, client) in &mut subscribers {
        let mut events = Vec::new();
        for _ in 0..30 {
            events.push(next(client).await);
        }
        contiguous(&events, topic);
        seen.entry(*topic).or_default().push(events);
    }
    // The same event has the same id on every instance.
    for (topic, per_instance) in &seen {
        let by_n: HashMap<u64, &str> = per_instance[0]
            .iter()
            .map(|s| (s.n, s.id.as_str()))
            .collect();
        let mut common = 0;
        for other in &per_instance[1..] {
            for s in other {
                if let Some(id) = by_n.get(&s.n) {
                    assert_eq!(*id, s.id, "{topic}: event {} has two ids", s.n);
                    common += 1;
                }
            }
        }
        assert!(common > 0, "{topic}: the instances saw no event in common");
    }
    // One upstream per topic, cluster-wide, ever.
    let mut log = Vec::new();
    let counts = upstreams(&sim, &mut log);
    for topic in topics {
        assert_eq!(counts.get(topic), Some(&(1, 1)), "{topic}: {counts:?}");
    }
    let owners: usize = {
        let mut n = 0;
        for gateway in &gateways {
            for topic in topics {
                n += usize::from(gateway.owns(topic).await);
            }
        }
        n
    };
    assert_eq!(owners, topics.len(), "one owner per topic");
    // The operator's view agrees, from any instance.
    let (status, body) = gateways[2].admin("/admin/cluster").await;
    assert_eq!(status, 200);
    let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(view["nats_connected"], true);
    assert_eq!(view["members"].as_array().map(Vec::len), Some(3), "{view}");
    let leases = view["leases"].as_array().expect("leases");
    assert_eq!(leases.len(), 3, "{view}");
    for topic in &view["topics"].as_array().expect("topics")[..] {
        assert!(topic["owner"].is_string(), "{topic}");
        assert!(topic["lag"].as_u64().is_some(), "{topic}");
    }
    drop(subscribers);
    drop(gateways);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_replaced_within_the_lease_and_survivors_miss_nothing() {
    let nats = NatsServer::start().await;
    let sim = sim(&["AAPL"]).await;
    let mut gateways = instances(&nats, &sim, "t3", 3, 50).await;
    let mut subscribers = Vec::new();
    for gateway in &gateways {
        let client = gateway.subscribe("AAPL", None).await;
        assert_eq!(client.status, 200);
        subscribers.push(client);
    }
    // Under way: a few events everywhere before the kill.
    let mut seen: Vec<Vec<Seen>> = vec![Vec::new(); subscribers.len()];
    for (client, seen) in subscribers.iter_mut().zip(&mut seen) {
        for _ in 0..10 {
            seen.push(next(client).await);
        }
    }
    let mut owner = None;
    for (i, gateway) in gateways.iter().enumerate() {
        if gateway.owns("AAPL").await {
            owner = Some(i);
        }
    }
    let owner = owner.expect("an owner");
    let mut log = Vec::new();
    upstreams(&sim, &mut log);
    let mut dead = gateways.remove(owner);
    drop(subscribers.remove(owner));
    seen.remove(owner);
    let killed_at = std::time::SystemTime::now();
    dead.child.start_kill().expect("SIGKILL");
    let _ = dead.child.wait().await;
    // The survivors' subscribers read on, across the hand-over.
    for (client, seen) in subscribers.iter_mut().zip(&mut seen) {
        // Until well after a new owner can have started (20 events/s).
        for _ in 0..120 {
            seen.push(next(client).await);
        }
    }
    for (i, seen) in seen.iter().enumerate() {
        contiguous(seen, &format!("survivor {i}"));
    }
    // They joined at different moments: compared from the later start.
    let from = seen[0][0].n.max(seen[1][0].n);
    let tail = |s: &[Seen]| {
        s.iter()
            .filter(|e| e.n >= from)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (a, b) = (tail(&seen[0]), tail(&seen[1]));
    let common = a.len().min(b.len());
    assert_eq!(
        a[..common],
        b[..common],
        "both survivors saw the same events and ids"
    );
    // A new upstream, within the lease time and a second of the kill.
    log.extend(sim.take_log().0);
    let started = log
        .iter()
        .find(|e| !e.ended && e.at > killed_at)
        .expect("a new owner opened the upstream");
    let took = started.at.duration_since(killed_at).unwrap_or_default();
    println!("a new owner opened the upstream {took:?} after the kill");
    assert!(
        took <= LEASE_TTL + Duration::from_secs(1),
        "the new owner took {took:?}"
    );
    // It resumed where the log ended: the upstream was asked to continue.
    let request = sim
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.uri.contains("AAPL"))
        .expect("a request");
    let resumed: u64 = request
        .header("last-event-id")
        .expect("the new owner sent Last-Event-ID")
        .parse()
        .expect("a number");
    assert!(
        seen[0].iter().any(|s| s.n == resumed),
        "it resumed after {resumed}, an event the survivors saw"
    );
    drop(dead);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_instance_with_no_gap_and_no_duplicate() {
    let nats = NatsServer::start().await;
    let sim = sim(&["AAPL"]).await;
    let gateways = instances(&nats, &sim, "t2", 3, 50).await;
    // Read on A, then leave.
    let mut a = gateways[0].subscribe("AAPL", None).await;
    let mut before = Vec::new();
    for _ in 0..20 {
        before.push(next(&mut a).await);
    }
    drop(a);
    let left = before.last().expect("events").clone();
    // B gets its first subscriber after that: its window starts later than
    // the position, which only the cluster's log still covers.
    let mut b = gateways[1].subscribe("AAPL", None).await;
    for _ in 0..10 {
        next(&mut b).await;
    }
    for (name, gateway) in [
        ("B (window starts later)", &gateways[1]),
        ("C (no subscriber yet)", &gateways[2]),
    ] {
        let mut resumed = gateway.subscribe("AAPL", Some(&left.id)).await;
        assert_eq!(resumed.status, 200);
        let mut after = vec![left.clone()];
        for _ in 0..30 {
            let item = next_item(&mut resumed).await;
            after.push(item);
        }
        contiguous(&after, name);
    }
    drop(b);
    sim.shutdown().await;
}

/// The next event, which must be an upstream event: a reset or gap notice
/// fails the test.
async fn next_item(client: &mut ssegate_tests::client::Client) -> Seen {
    let event = client.next_event().await;
    assert!(
        !event.event_type.starts_with("ssegate-"),
        "a notice instead of an event: {} {}",
        event.event_type,
        event.data
    );
    let data: serde_json::Value = serde_json::from_str(&event.data).expect("a quote");
    Seen {
        id: event.id.to_string(),
        n: data["n"].as_u64().expect("a sequence number"),
    }
}

/// Reads `topic` as a browser's `EventSource` does: when a stream ends it
/// connects again (to the next instance, as a load balancer may send it)
/// with the last id it saw, until it has `want` events.
async fn event_source(
    ports: Vec<u16>,
    start: usize,
    topic: &str,
    want: usize,
    seen: std::sync::Arc<parking_lot::Mutex<Vec<Seen>>>,
) {
    let mut k = start;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().len() < want {
        assert!(
            Instant::now() < deadline,
            "{topic}: only {} events",
            seen.lock().len()
        );
        let port = ports[k % ports.len()];
        k += 1;
        let Ok(io) = TcpStream::connect(("127.0.0.1", port)).await else {
            // Wall clock: an instance restarting; try the next one soon.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let last = seen.lock().last().map(|s| s.id.clone());
        let headers: Vec<(&str, &str)> = last
            .as_deref()
            .map(|id| ("last-event-id", id))
            .into_iter()
            .collect();
        let mut client = ssegate_tests::client::request(
            io,
            &format!("127.0.0.1:{port}"),
            http::Method::GET,
            &format!("/v1/stream/{topic}"),
            &headers,
            bytes::Bytes::new(),
            WAIT,
        )
        .await;
        if client.status != 200 {
            continue;
        }
        // The count is read on its own: a guard in a `while let` chain
        // would live through the body, which locks again.
        let more = || seen.lock().len() < want;
        while more()
            && let Some(item) = client.next_item().await
        {
            let sse_parser::Item::Event(event) = item else {
                continue;
            };
            assert!(
                !event.event_type.starts_with("ssegate-"),
                "{topic}: a notice instead of an event: {} {}",
                event.event_type,
                event.data
            );
            let data: serde_json::Value = serde_json::from_str(&event.data).expect("a quote");
            seen.lock().push(Seen {
                id: event.id.to_string(),
                n: data["n"].as_u64().expect("a sequence number"),
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_loses_and_repeats_nothing_for_reconnecting_clients() {
    let nats = NatsServer::start().await;
    let topics = ["AAPL", "MSFT"];
    let sim = sim(&topics).await;
    let mut gateways = instances(&nats, &sim, "t2r", 3, 50).await;
    let ports: Vec<u16> = gateways.iter().map(|g| g.listen).collect();
    let mut clients = Vec::new();
    let mut logs = Vec::new();
    for (i, topic) in ["AAPL", "MSFT", "AAPL"].into_iter().enumerate() {
        let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        logs.push((topic, seen.clone()));
        clients.push(tokio::spawn(event_source(
            ports.clone(),
            i,
            topic,
            260,
            seen,
        )));
    }
    let progress = |logs: &[(&str, std::sync::Arc<parking_lot::Mutex<Vec<Seen>>>)]| -> usize {
        logs.iter().map(|(_, s)| s.lock().len()).min().unwrap_or(0)
    };
    for gateway in &mut gateways {
        // Every client a second of events further, then the next deploy.
        let target = progress(&logs) + 20;
        let deadline = Instant::now() + WAIT;
        while progress(&logs) < target {
            assert!(Instant::now() < deadline, "the clients stalled");
            // Wall clock: real processes streaming; a bounded poll.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gateway.restart().await;
    }
    for client in clients {
        tokio::time::timeout(Duration::from_secs(150), client)
            .await
            .expect("the clients finish")
            .expect("no client failed");
    }
    for (topic, seen) in &logs {
        contiguous(&seen.lock(), topic);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_cap_is_cluster_wide() {
    let nats = NatsServer::start().await;
    let topics = ["T1", "T2", "T3", "T4", "T5", "T6"];
    let sim = sim(&topics).await;
    let gateways = instances(&nats, &sim, "t4", 3, 5).await;
    // Five topics, spread over the instances: each gets its stream.
    let mut held = Vec::new();
    for (i, topic) in topics[..5].iter().enumerate() {
        let mut client = gateways[i % 3].subscribe(topic, None).await;
        assert_eq!(client.status, 200, "{topic}");
        next(&mut client).await;
        held.push(client);
    }
    // The sixth is refused wherever it is asked, with a time to come back.
    for gateway in &gateways {
        let client = gateway.subscribe("T6", None).await;
        assert_eq!(client.status, 503);
        let retry = client
            .headers
            .get("retry-after")
            .expect("Retry-After")
            .to_str()
            .expect("ASCII")
            .parse::<u64>()
            .expect("seconds");
        assert!(retry >= 1, "{retry}");
    }
    let mut log = Vec::new();
    let counts = upstreams(&sim, &mut log);
    assert!(!counts.contains_key("T6"), "{counts:?}");
    let open: usize = counts.values().map(|c| c.1).sum();
    assert_eq!(open, 5, "{counts:?}");
    drop(held);
    drop(gateways);
    sim.shutdown().await;
}

/// Polls `check` (bounded by `within`) until it holds.
async fn eventually<F: Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        // Wall clock: real processes and NATS; a bounded poll.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_nats_outage_events_keep_flowing_and_one_upstream_per_topic_is_back_within_10_s()
{
    let mut nats = NatsServer::start().await;
    let topics = ["AAPL", "MSFT"];
    let sim = sim(&topics).await;
    let gateways = instances(&nats, &sim, "t5", 2, 50).await;
    let mut subscribers = Vec::new();
    for gateway in &gateways {
        for topic in topics {
            let mut client = gateway.subscribe(topic, None).await;
            assert_eq!(client.status, 200);
            let first = next_item(&mut client).await;
            subscribers.push((topic, client, vec![first]));
        }
    }
    nats.stop().await;
    // Seen as degraded, and still ready: clients keep their streams.
    for gateway in &gateways {
        eventually(WAIT, "degraded", || async {
            gateway
                .admin("/metrics")
                .await
                .1
                .contains("ssegate_cluster_degraded 1")
        })
        .await;
        assert_eq!(gateway.admin("/readyz").await.0, 200);
    }
    // Every instance serves its subscribers from upstreams of its own (a
    // fallback per topic), and they go on getting every event.
    for gateway in &gateways {
        eventually(WAIT, "fallback upstreams", || async {
            gateway
                .admin("/metrics")
                .await
                .1
                .contains("ssegate_cluster_fallback_streams 2")
        })
        .await;
    }
    for (_, client, seen) in &mut subscribers {
        for _ in 0..20 {
            seen.push(next_item(client).await);
        }
    }
    let mut log = Vec::new();
    let during = upstreams(&sim, &mut log);
    nats.restart().await;
    let took = eventually(Duration::from_secs(10), "one upstream per topic", || {
        let counts = upstreams(&sim, &mut log);
        async move {
            topics
                .iter()
                .all(|t| counts.get(*t).is_some_and(|c| c.1 == 1))
        }
    })
    .await;
    println!(
        "during the outage: {during:?}; one upstream per topic again {took:?} after NATS returned"
    );
    // NATS is back: the log takes over from the fallbacks without a pause
    // (the followers make their consumers again at once; before, they
    // waited about 15 s for the client to notice missed heartbeats, while
    // the fallbacks had already closed).
    let mut longest = Duration::ZERO;
    for (topic, client, seen) in &mut subscribers {
        let mut at = Instant::now();
        let mut logged = 0;
        while logged < 20 {
            let item = next_item(client).await;
            longest = longest.max(at.elapsed());
            at = Instant::now();
            logged += usize::from(!item.id.contains('~'));
            seen.push(item);
        }
        contiguous(seen, &format!("{topic} across the outage"));
    }
    assert!(
        longest < LEASE_TTL,
        "a subscriber waited {longest:?} for an event after NATS returned"
    );
    for gateway in &gateways {
        eventually(WAIT, "not degraded", || async {
            let metrics = gateway.admin("/metrics").await.1;
            metrics.contains("ssegate_cluster_degraded 0")
                && metrics.contains("ssegate_cluster_fallback_streams 0")
        })
        .await;
    }
    drop(subscribers);
    drop(gateways);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_owner_stops_its_upstream_within_the_lease_and_never_overlaps_its_successor()
{
    let nats = NatsServer::start().await;
    let proxy = Proxy::start(&nats.url()).await;
    let sim = sim(&["AAPL"]).await;
    // A reaches NATS through the proxy; B directly.
    let a = Gateway::start(&proxy.url(), &sim, "t6", 50).await;
    let b = Gateway::start(&nats.url(), &sim, "t6", 50).await;
    let mut on_a = a.subscribe("AAPL", None).await;
    next(&mut on_a).await;
    assert!(
        a.owns("AAPL").await,
        "A subscribed first: it owns the topic"
    );
    let mut on_b = b.subscribe("AAPL", None).await;
    let mut seen = vec![next(&mut on_b).await];
    let mut log = Vec::new();
    upstreams(&sim, &mut log);
    log.clear();
    // A's NATS connection stalls; its upstream still works.
    let stalled_at = std::time::SystemTime::now();
    proxy.stall(true);
    while seen.len() < 120 {
        seen.push(next(&mut on_b).await);
    }
    contiguous(&seen, "B's subscriber across the hand-over");
    log.extend(sim.take_log().0);
    let ended = log.iter().find(|e| e.ended).expect("A's upstream ended");
    let started = log
        .iter()
        .find(|e| !e.ended)
        .expect("B opened the upstream");
    let fenced = ended.at.duration_since(stalled_at).unwrap_or_default();
    let taken = started.at.duration_since(stalled_at).unwrap_or_default();
    println!("partition: A closed its upstream after {fenced:?}, B opened it after {taken:?}");
    assert!(
        fenced <= LEASE_TTL,
        "A held its upstream {fenced:?} into the partition"
    );
    assert!(
        taken <= LEASE_TTL + Duration::from_secs(1),
        "B took {taken:?}"
    );
    assert!(
        started.at >= ended.at,
        "two upstreams at once: B started {:?} before A ended",
        ended.at.duration_since(started.at).unwrap_or_default()
    );
    drop((on_a, on_b, a, b));
    sim.shutdown().await;
}

/// The value of the metric line that starts with `name ` in `metrics`.
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_returns_to_baseline_when_the_subscribers_leave() {
    let nats = NatsServer::start().await;
    let topics = ["T1", "T2", "T3", "T4"];
    let sim = sim(&topics).await;
    // Short lingers, so that "afterwards" comes within the test.
    let (upstream, bridge) = ("idle_linger = \"1s\"", "replay_linger = \"1s\"");
    let mut gateways = Vec::new();
    for _ in 0..2 {
        gateways.push(Gateway::start_with(&nats.url(), &sim, "t7", 50, upstream, bridge).await);
    }
    let mut baseline = Vec::new();
    for gateway in &gateways {
        let metrics = gateway.admin("/metrics").await.1;
        baseline.push(metric(&metrics, "ssegate_runtime_tasks"));
    }
    let mut log = Vec::new();
    for round in 0..2 {
        let mut clients = Vec::new();
        for gateway in &gateways {
            for topic in topics {
                for _ in 0..3 {
                    let mut client = gateway.subscribe(topic, None).await;
                    assert_eq!(client.status, 200);
                    next_item(&mut client).await;
                    clients.push(client);
                }
            }
        }
        let (_, body) = gateways[0].admin("/admin/cluster").await;
        let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            view["leases"].as_array().map(Vec::len),
            Some(topics.len()),
            "round {round}"
        );
        drop(clients);
        for (gateway, tasks) in gateways.iter().zip(&baseline) {
            eventually(WAIT, "back to baseline", || async {
                let metrics = gateway.admin("/metrics").await.1;
                let (_, body) = gateway.admin("/admin/cluster").await;
                let view: serde_json::Value = serde_json::from_str(&body).expect("JSON");
                metric(&metrics, "ssegate_cluster_leases_held") == 0.0
                    && metric(&metrics, "ssegate_cluster_topics_followed") == 0.0
                    && metric(&metrics, "ssegate_cluster_fallback_streams") == 0.0
                    && metric(&metrics, "ssegate_upstream_sockets") == 0.0
                    && metric(&metrics, "ssegate_bridge_streams") == 0.0
                    && metric(&metrics, "ssegate_runtime_tasks") <= *tasks
                    && view["leases"].as_array().is_some_and(Vec::is_empty)
                    && view["topics"].as_array().is_some_and(Vec::is_empty)
                    && view["members"].as_array().is_some_and(|m| {
                        m.iter()
                            .all(|m| m["topics"].as_array().is_some_and(Vec::is_empty))
                    })
            })
            .await;
        }
        // The simulator sees each close when it next writes.
        eventually(WAIT, "no upstream open", || {
            let open: usize = upstreams(&sim, &mut log).values().map(|c| c.1).sum();
            async move { open == 0 }
        })
        .await;
    }
    drop(gateways);
    sim.shutdown().await;
}

/// The status page's feed (`/admin/events`) of `gateway` until a snapshot
/// satisfies `done` (bounded: a snapshot every 2 s, for at most `WAIT`).
async fn snapshot_until(
    gateway: &Gateway,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let io = TcpStream::connect(("127.0.0.1", gateway.admin))
        .await
        .expect("connects");
    let mut feed = ssegate_tests::client::request(
        io,
        &format!("127.0.0.1:{}", gateway.admin),
        http::Method::GET,
        "/admin/events",
        &[],
        bytes::Bytes::new(),
        WAIT,
    )
    .await;
    assert_eq!(feed.status, 200);
    let deadline = Instant::now() + WAIT;
    loop {
        let event = feed.next_event().await;
        let snapshot: serde_json::Value = serde_json::from_str(&event.data).expect("JSON");
        if done(&snapshot) {
            return snapshot;
        }
        assert!(Instant::now() < deadline, "no such snapshot: {snapshot}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_cluster_and_each_topics_owner() {
    let nats = NatsServer::start().await;
    let sim = sim(&["AAPL", "MSFT"]).await;
    let gateways = instances(&nats, &sim, "t9", 2, 50).await;
    let (a, b) = (&gateways[0], &gateways[1]);
    // a asks for AAPL first and owns it; b owns MSFT; each follows the other's.
    let mut aapl_a = a.subscribe("AAPL", None).await;
    next(&mut aapl_a).await;
    let mut msft_b = b.subscribe("MSFT", None).await;
    next(&mut msft_b).await;
    let mut msft_a = a.subscribe("MSFT", None).await;
    next(&mut msft_a).await;
    let name_a = format!("gw-{}", a.listen);
    let name_b = format!("gw-{}", b.listen);
    let owner = |snapshot: &serde_json::Value, topic: &str| {
        snapshot["cluster"]["topics"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["topic"] == topic).cloned())
            .unwrap_or_default()
    };
    let snapshot = snapshot_until(a, |s| owner(s, "MSFT")["owner"] == name_b.as_str()).await;
    let cluster = &snapshot["cluster"];
    assert_eq!(cluster["name"], "t9", "{cluster}");
    assert_eq!(cluster["instance"], name_a.as_str());
    assert_eq!(cluster["nats_connected"], true);
    assert_eq!(cluster["degraded"], false);
    assert_eq!(cluster["owned"], 1, "{cluster}");
    assert_eq!(owner(&snapshot, "AAPL")["owner"], name_a.as_str());
    assert_eq!(owner(&snapshot, "AAPL")["mine"], true);
    assert_eq!(owner(&snapshot, "MSFT")["mine"], false);
    assert_eq!(owner(&snapshot, "MSFT")["local_subscriptions"], 1);
    // Only the owned topic has an upstream here; the page shows the other
    // from the cluster part, with its owner.
    let streams: Vec<&str> = snapshot["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["topic"].as_str())
        .collect();
    assert_eq!(streams, ["AAPL"]);
    let (status, page) = a.admin("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"cluster\"") && page.contains(">owner</th>"));
    // NATS gone: the cluster line says so (degraded) on the next snapshots.
    drop(nats);
    let snapshot = snapshot_until(b, |s| s["cluster"]["degraded"] == true).await;
    assert_eq!(snapshot["cluster"]["nats_connected"], false, "{snapshot}");
    drop((aapl_a, msft_a, msft_b));
    drop(gateways);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_own_subscribers_are_served_at_once_when_nats_goes_away() {
    let mut nats = NatsServer::start().await;
    let sim = sim(&["AAPL"]).await;
    let gateways = instances(&nats, &sim, "t10", 2, 50).await;
    let owner = &gateways[0];
    let mut client = owner.subscribe("AAPL", None).await;
    assert_eq!(client.status, 200);
    let mut seen = vec![next_item(&mut client).await];
    assert!(owner.owns("AAPL").await);
    let mut other = gateways[1].subscribe("AAPL", None).await;
    next_item(&mut other).await;
    nats.stop().await;
    let stopped = Instant::now();
    // The owner cannot publish: it closes its upstream and serves its own
    // subscribers from a fallback at once (the events have no position:
    // `~` ids), long before its lease would have run out. Before, they
    // waited for the fence and then for a lease's time more.
    loop {
        let item = next_item(&mut client).await;
        assert!(
            stopped.elapsed() < LEASE_TTL,
            "the owner's subscriber got no event from a fallback within a lease: {seen:?}, then {item:?}"
        );
        let unlogged = item.id.contains('~');
        seen.push(item);
        if unlogged {
            break;
        }
    }
    nats.restart().await;
    for _ in 0..40 {
        seen.push(next_item(&mut client).await);
    }
    contiguous(&seen, "the owner's subscriber across the outage");
    drop((client, other));
    drop(gateways);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_during_a_nats_outage_is_reset_not_silently_short() {
    let mut nats = NatsServer::start().await;
    let sim = sim(&["AAPL"]).await;
    let gateways = instances(&nats, &sim, "t11", 2, 50).await;
    let mut owner = gateways[0].subscribe("AAPL", None).await;
    next_item(&mut owner).await;
    let other = &gateways[1];
    let mut reader = other.subscribe("AAPL", None).await;
    let mut before = Vec::new();
    for _ in 0..10 {
        before.push(next_item(&mut reader).await);
    }
    // A position inside b's window, from before the outage.
    let from = before[4].clone();
    nats.stop().await;
    // b serves its subscribers from a fallback: events with no position,
    // which its window does not keep.
    let mut unlogged = 0;
    while unlogged < 10 {
        unlogged += usize::from(next_item(&mut reader).await.id.contains('~'));
    }
    // A client comes back to b with that position. Its window ends before
    // the fallback's events: replaying it and going on live would skip
    // them silently. It gets a reset notice, or every event in order.
    let mut client = other.subscribe("AAPL", Some(&from.id)).await;
    assert_eq!(client.status, 200);
    for expected in from.n + 1..from.n + 41 {
        let event = client.next_event().await;
        if event.event_type.ends_with("ssegate-reset") {
            break;
        }
        let data: serde_json::Value = serde_json::from_str(&event.data).expect("a quote");
        let n = data["n"].as_u64().expect("a sequence number");
        assert_eq!(
            n, expected,
            "resumed after {from:?}: event {} ({})",
            n, event.id
        );
    }
    drop((owner, reader, client));
    drop(gateways);
    sim.shutdown().await;
}
