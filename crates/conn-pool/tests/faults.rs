//! The upstream rows of docs/RELIABILITY.md's fault matrix, through the pool.
//! Each test is named after its row and ends by asserting the pool is back
//! to baseline: no entry, no socket, no socket-registry entry, no upstream
//! body open, no task beyond those alive before the pool existed.
//!
//! Timers are tested in paused time over in-memory upstreams; HTTP
//! behaviour over loopback against sse-upstream-sim, with bounded waits.
//! F12 and F17 are in `pool.rs`, F7's stream-level cases in `transport.rs`.

mod common;

use std::time::Duration;

use common::{FakeResolver, MemoryUpstream, Script, Step};
use sse_conn_pool::{
    Connector, HttpsConnector, Pool, PoolConfig, PoolError, Status, StreamItem, Subscription,
    TcpConnector, TlsConfig,
};
use sse_state_machine::{FailureKind, Jitter, Phase, Reason, StopReason, TimeoutKind};
use sse_upstream_sim::{Fault, Garbage, Sim, SimHandle, TlsIdentity};
use tokio::time::{Instant, timeout};

/// Real-time bound for loopback tests; paused-time tests use a virtual day.
const WAIT: Duration = Duration::from_secs(10);
const VIRTUAL: Duration = Duration::from_secs(24 * 3600);

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// What "back to baseline" compares against.
struct Baseline {
    tasks: usize,
    bound: Duration,
}

impl Baseline {
    fn take(bound: Duration) -> Self {
        Self {
            tasks: alive_tasks(),
            bound,
        }
    }

    /// Subscriptions are gone: waits for the linger to release every stream,
    /// then for every socket, body and task to be gone, then closes the pool.
    async fn assert<C: Connector>(self, pool: &Pool<C>, open_bodies: impl Fn() -> usize) {
        let clean = || {
            pool.snapshot().is_empty()
                && pool.connections().open_sockets() == 0
                && pool.connections().hosts() == 0
                && open_bodies() == 0
                && alive_tasks() <= self.tasks
        };
        let settled = timeout(self.bound, async {
            while !clean() {
                // A bounded poll: paused time in the in-memory tests, the wall clock with the
                // simulator's sockets.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            settled.is_ok(),
            "not back to baseline: entries {:?}, sockets {}, hosts {}, bodies {}, tasks {} (baseline {})",
            pool.snapshot().iter().map(|s| &s.topic).collect::<Vec<_>>(),
            pool.connections().open_sockets(),
            pool.connections().hosts(),
            open_bodies(),
            alive_tasks(),
            self.tasks
        );
        pool.close().await;
    }
}

async fn next_item(sub: &mut Subscription, bound: Duration) -> StreamItem {
    timeout(bound, sub.recv())
        .await
        .expect("an item in time")
        .expect("the stream is open")
}

/// The next status other than the start, skipping events and comments.
async fn status(sub: &mut Subscription, bound: Duration) -> Status {
    loop {
        if let StreamItem::Status(status) = next_item(sub, bound).await
            && status.reason != Reason::Start
        {
            return status;
        }
    }
}

/// The next `n` event ids, skipping everything else.
async fn event_ids(sub: &mut Subscription, n: usize, bound: Duration) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        if let StreamItem::Event(event) = next_item(sub, bound).await {
            ids.push(event.id.parse().expect("numeric ids"));
        }
    }
    ids
}

fn contiguous(ids: &[u64]) -> bool {
    ids.windows(2).all(|w| w[1] == w[0] + 1)
}

/// A pool config with a short linger; `quick` also makes retries fast and
/// deterministic (loopback tests).
fn config(template: &str, quick: bool) -> PoolConfig {
    let mut config = PoolConfig::new(template);
    config.idle_linger = Duration::from_millis(200);
    if quick {
        let machine = &mut config.stream.machine;
        machine.backoff.initial = Duration::from_millis(20);
        machine.backoff.jitter = Jitter::None;
        machine.backoff.reconnect_spread = Duration::ZERO;
        machine.retry_min = Duration::from_millis(10);
    }
    config
}

const MEMORY: &str = "http://upstream.test/v1/quotes/{topic}/stream";

fn sim_template(sim: &SimHandle) -> String {
    format!("{}/v1/quotes/{{topic}}/stream", sim.url())
}

async fn start_sim(builder: sse_upstream_sim::SimBuilder) -> SimHandle {
    builder
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts")
}

// ------------------------------------------------------------ paused time, in memory

#[tokio::test(start_paused = true)]
async fn f1_refusals_back_off_within_the_jitter_band_up_to_the_cap() {
    let baseline = Baseline::take(VIRTUAL);
    let upstream = MemoryUpstream::new(Vec::new(), Script::Refuse);
    let config = config(MEMORY, false);
    let machine = config.stream.machine.clone();
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    let mut nominal = machine.backoff.initial;
    for k in 0..1000 {
        let failed = status(&mut sub, VIRTUAL).await;
        assert_eq!(
            failed.reason,
            Reason::Failed(FailureKind::Refused),
            "attempt {k}"
        );
        assert!(
            !failed.terminal,
            "refusals are retried; the subscriber stays"
        );
        let at = Instant::now();
        assert_eq!(status(&mut sub, VIRTUAL).await.phase, Phase::Connecting);
        let waited = at.elapsed();
        // Half jitter: the wait is in [nominal / 2, nominal].
        assert!(
            waited >= nominal / 2 && waited <= nominal,
            "attempt {k}: waited {waited:?}, nominal {nominal:?}"
        );
        nominal = nominal
            .mul_f64(machine.backoff.multiplier)
            .min(machine.backoff.max);
    }
    assert_eq!(nominal, machine.backoff.max, "the delay reached the cap");
    assert_eq!(upstream.attempts(), 1001);
    drop(sub);
    baseline.assert(&pool, || upstream.open()).await;
}

#[tokio::test(start_paused = true)]
async fn f4_a_stall_is_cut_at_the_idle_timeout_and_its_socket_released() {
    let baseline = Baseline::take(VIRTUAL);
    let upstream = MemoryUpstream::new(
        vec![Script::stream(vec![
            Step::Send("id: 1\ndata: a\n\n"),
            Step::Hang,
        ])],
        Script::stream(vec![Step::Send("id: 2\ndata: b\n\n"), Step::Hang]),
    );
    let mut config = config(MEMORY, false);
    config.stream.machine.backoff.reconnect_spread = Duration::ZERO;
    let idle = config.stream.machine.idle_timeout;
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    assert_eq!(event_ids(&mut sub, 1, VIRTUAL).await, [1]);
    let last_byte = Instant::now();
    let cut = status(&mut sub, VIRTUAL).await;
    assert_eq!(cut.reason, Reason::Timeout(TimeoutKind::Idle));
    assert_eq!(last_byte.elapsed(), idle, "detected at the timeout");
    assert_eq!(event_ids(&mut sub, 1, VIRTUAL).await, [2]);
    assert_eq!(
        upstream.open(),
        1,
        "the stalled connection's body was released"
    );
    assert_eq!(pool.connections().open_sockets(), 1);
    let requests = upstream.requests.lock().clone();
    assert_eq!(requests[1]["last-event-id"], "1");
    drop(sub);
    baseline.assert(&pool, || upstream.open()).await;
}

#[tokio::test(start_paused = true)]
async fn f6_a_one_byte_per_second_drip_is_recycled_at_the_event_assembly_deadline() {
    let baseline = Baseline::take(VIRTUAL);
    let upstream = MemoryUpstream::new(
        vec![Script::stream(vec![
            Step::Send("id: 1\ndata: a\n\n"),
            Step::Drip(
                "id: 2\ndata: this event arrives one byte per second\n\n",
                Duration::from_secs(1),
            ),
        ])],
        Script::stream(vec![Step::Send("id: 3\ndata: c\n\n"), Step::Hang]),
    );
    let mut config = config(MEMORY, false);
    config.stream.machine.backoff.reconnect_spread = Duration::ZERO;
    let assembly = config.stream.machine.event_assembly_timeout;
    let idle = config.stream.machine.idle_timeout;
    assert!(
        assembly < idle,
        "the idle timer alone would never fire on a drip"
    );
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    assert_eq!(event_ids(&mut sub, 1, VIRTUAL).await, [1]);
    let drip_started = Instant::now();
    let cut = status(&mut sub, VIRTUAL).await;
    assert_eq!(cut.reason, Reason::Timeout(TimeoutKind::EventAssembly));
    assert_eq!(drip_started.elapsed(), assembly, "recycled at the deadline");
    // The dripped event was never delivered; the next connection resumes
    // from the last complete one.
    assert_eq!(event_ids(&mut sub, 1, VIRTUAL).await, [3]);
    assert_eq!(upstream.requests.lock()[1]["last-event-id"], "1");
    drop(sub);
    baseline.assert(&pool, || upstream.open()).await;
}

#[tokio::test(start_paused = true)]
async fn f7_a_hanging_resolver_through_the_pool_is_bounded_and_leaves_nothing() {
    let baseline = Baseline::take(VIRTUAL);
    let resolver = FakeResolver {
        hang: true,
        ..FakeResolver::default()
    };
    let connector = HttpsConnector::new(&TlsConfig::default())
        .expect("valid")
        .with_resolver(resolver.clone());
    let pool = Pool::new(config(MEMORY, false), connector).unwrap();
    let connect_timeout = sse_state_machine::Config::default().connect_timeout;
    let mut sub = pool.subscribe("AAPL").unwrap();
    for _ in 0..20 {
        let started = Instant::now();
        let cut = status(&mut sub, VIRTUAL).await;
        assert_eq!(cut.reason, Reason::Timeout(TimeoutKind::Connect));
        assert_eq!(started.elapsed(), connect_timeout);
        assert_eq!(
            resolver.in_flight.load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        status(&mut sub, VIRTUAL).await;
    }
    drop(sub);
    baseline
        .assert(&pool, || {
            resolver.in_flight.load(std::sync::atomic::Ordering::SeqCst)
        })
        .await;
}

#[tokio::test(start_paused = true)]
async fn f15_retry_zero_and_retry_huge_are_clamped() {
    let baseline = Baseline::take(VIRTUAL);
    let upstream = MemoryUpstream::new(
        vec![
            Script::stream(vec![Step::Send("retry: 0\nid: 1\ndata: a\n\n")]),
            Script::stream(vec![Step::Send("retry: 999999999\nid: 2\ndata: b\n\n")]),
        ],
        Script::stream(vec![Step::Send("id: 3\ndata: c\n\n"), Step::Hang]),
    );
    let mut config = config(MEMORY, false);
    let machine = &mut config.stream.machine;
    machine.backoff.jitter = Jitter::None;
    machine.backoff.reconnect_spread = Duration::ZERO;
    let (min, max) = (machine.retry_min, machine.retry_max);
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    let mut waits = Vec::new();
    for expected in [1, 2] {
        assert_eq!(event_ids(&mut sub, 1, VIRTUAL).await, [expected]);
        assert_eq!(status(&mut sub, VIRTUAL).await.reason, Reason::EndOfBody);
        let at = Instant::now();
        assert_eq!(status(&mut sub, VIRTUAL).await.phase, Phase::Connecting);
        waits.push(at.elapsed());
    }
    assert_eq!(
        waits,
        [min, max],
        "retry: 0 -> retry_min, retry: huge -> retry_max"
    );
    assert_eq!(event_ids(&mut sub, 1, VIRTUAL).await, [3]);
    drop(sub);
    baseline.assert(&pool, || upstream.open()).await;
}

// ------------------------------------------------------------ loopback, sse-upstream-sim

#[tokio::test]
async fn f2_statuses_with_retry_after_are_retried_and_their_bodies_never_parsed() {
    let sim = start_sim(
        Sim::builder()
            .topics(["AAPL"])
            .events_per_sec(200.0)
            .script(
                "AAPL",
                [
                    Fault::status(503).retry_after("garbage"),
                    Fault::status(429).retry_after("0"),
                    Fault::status(500).retry_after("99999999999"),
                ],
            ),
    )
    .await;
    let baseline = Baseline::take(WAIT);
    let mut config = config(&sim_template(&sim), true);
    // The absurd Retry-After is clamped to this; keep the test short.
    config.stream.machine.retry_after_max = Duration::from_millis(50);
    let pool = Pool::new(config, TcpConnector).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    for code in [503, 429, 500] {
        // A status update, never an event parsed from the SSE-looking body.
        match next_status_or_event(&mut sub).await {
            Ok(status) => {
                assert_eq!(status.reason, Reason::Status(code));
                assert!(!status.terminal);
            }
            Err(id) => panic!("event {id} parsed from a {code} body"),
        }
        assert_eq!(status(&mut sub, WAIT).await.phase, Phase::Connecting);
    }
    assert_eq!(status(&mut sub, WAIT).await.phase, Phase::Open);
    assert!(contiguous(&event_ids(&mut sub, 5, WAIT).await));
    let state = &pool.snapshot()[0].state;
    assert_eq!((state.attempts, state.opened), (4, 1), "counters match");
    drop(sub);
    baseline.assert(&pool, || sim.active_streams()).await;
    sim.shutdown().await;
}

/// The next status (skipping the start and comments), or the id of an event
/// that came first.
async fn next_status_or_event(sub: &mut Subscription) -> Result<Status, String> {
    loop {
        match next_item(sub, WAIT).await {
            StreamItem::Status(s) if s.reason != Reason::Start => return Ok(s),
            StreamItem::Event(e) => return Err(e.id.to_string()),
            _ => {}
        }
    }
}

#[tokio::test]
async fn f3_a_cut_mid_event_delivers_no_partial_and_resumes_with_the_last_complete_id() {
    let sim = start_sim(
        Sim::builder()
            .topics(["AAPL"])
            .events_per_sec(200.0)
            .script("AAPL", [Fault::CloseMidEvent { after_events: 3 }]),
    )
    .await;
    let baseline = Baseline::take(WAIT);
    let pool = Pool::new(config(&sim_template(&sim), true), TcpConnector).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    let ids = event_ids(&mut sub, 10, WAIT).await;
    assert!(
        contiguous(&ids),
        "no gap, no duplicate, no partial: {ids:?}"
    );
    let requests = sim.requests();
    assert_eq!(
        requests[1].header("last-event-id"),
        Some(ids[2].to_string().as_str()),
        "resumed from the third (last complete) event"
    );
    drop(sub);
    baseline.assert(&pool, || sim.active_streams()).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn f5_garbage_is_survived_and_an_endless_line_drops_only_that_connection() {
    let sim = start_sim(
        Sim::builder()
            .topics(["AAPL"])
            .events_per_sec(200.0)
            .script(
                "AAPL",
                [
                    Fault::Garbage(Garbage::InvalidUtf8),
                    Fault::Garbage(Garbage::NulInId),
                    Fault::Garbage(Garbage::CrOnly),
                    Fault::Garbage(Garbage::NegativeRetry),
                    Fault::EndlessLine { max_bytes: 4 << 20 },
                ],
            ),
    )
    .await;
    let baseline = Baseline::take(WAIT);
    let mut config = config(&sim_template(&sim), true);
    config.stream.limits = sse_parser::Limits::default()
        .max_line_len(64 << 10)
        .max_event_size(256 << 10);
    let pool = Pool::new(config, TcpConnector).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    // Each garbage connection: the stream goes on, per the spec; then an
    // operator's reconnect moves to the next scripted connection.
    let mut replaced = 0;
    for _ in 0..4 {
        let mut seen = Vec::new();
        while seen.len() < 5 {
            if let StreamItem::Event(event) = next_item(&mut sub, WAIT).await {
                assert!(!event.id.contains('\0'), "an id with NUL is ignored");
                seen.push(event);
            }
        }
        replaced += usize::from(seen.iter().any(|e| e.data.contains('\u{FFFD}')));
        assert!(pool.reconnect("AAPL"));
    }
    assert_eq!(replaced, 1, "invalid UTF-8 arrived as U+FFFD");
    // The endless line breaks the line limit: only that connection drops.
    loop {
        let s = status(&mut sub, WAIT).await;
        assert!(!s.terminal);
        if s.reason == Reason::Failed(FailureKind::Limit) {
            break;
        }
    }
    assert!(contiguous(&event_ids(&mut sub, 5, WAIT).await), "recovered");
    drop(sub);
    baseline.assert(&pool, || sim.active_streams()).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn f13_an_untrusted_upstream_certificate_fails_as_tls_and_never_as_plaintext() {
    let identity = TlsIdentity::self_signed(&["127.0.0.1"]).expect("a certificate");
    let sim = start_sim(Sim::builder().topics(["AAPL"]).tls(identity)).await;
    let baseline = Baseline::take(WAIT);
    let connector = HttpsConnector::new(&TlsConfig::default()).expect("valid");
    let pool = Pool::new(config(&sim_template(&sim), true), connector).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    for _ in 0..3 {
        let failed = status(&mut sub, WAIT).await;
        assert_eq!(failed.reason, Reason::Failed(FailureKind::Tls));
        status(&mut sub, WAIT).await;
    }
    let info = &pool.snapshot()[0];
    assert!(info.state.attempts >= 3);
    assert!(sim.requests().is_empty(), "no request was ever sent");
    drop(sub);
    baseline.assert(&pool, || sim.active_streams()).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn f14_no_content_stops_wrong_type_retries_and_redirects_strip_credentials() {
    let other = start_sim(Sim::builder().topics(["MSFT"]).events_per_sec(200.0)).await;
    let sim = start_sim(
        Sim::builder()
            .topics(["AAPL", "MSFT", "GOOG"])
            .events_per_sec(200.0)
            .script("AAPL", [Fault::status(204)])
            .script("GOOG", [Fault::WrongContentType])
            .script(
                "MSFT",
                [Fault::Redirect {
                    code: 307,
                    location: Some(other.stream_url("MSFT")),
                }],
            ),
    )
    .await;
    let baseline = Baseline::take(WAIT);
    let mut config = config(&sim_template(&sim), true);
    config.headers.insert(
        http::header::AUTHORIZATION,
        http::HeaderValue::from_static("Bearer secret"),
    );
    // Another origin (another port) only when listed.
    config.stream.redirects.hosts = ["127.0.0.1".to_string()].into();
    let pool = Pool::new(config, TcpConnector).unwrap();

    let mut no_content = pool.subscribe("AAPL").unwrap();
    let stopped = status(&mut no_content, WAIT).await;
    assert_eq!(stopped.reason, Reason::Stop(StopReason::NoContent));
    assert!(stopped.terminal, "204 stops for good");

    let mut wrong_type = pool.subscribe("GOOG").unwrap();
    assert_eq!(
        status(&mut wrong_type, WAIT).await.reason,
        Reason::NotEventStream
    );
    assert_eq!(
        event_ids(&mut wrong_type, 3, WAIT).await.len(),
        3,
        "retried, then fine"
    );

    let mut redirected = pool.subscribe("MSFT").unwrap();
    event_ids(&mut redirected, 3, WAIT).await;
    let first = &sim
        .requests()
        .into_iter()
        .find(|r| r.uri.contains("MSFT"))
        .expect("asked");
    assert_eq!(first.header("authorization"), Some("Bearer secret"));
    let hop = &other.requests()[0];
    assert_eq!(hop.header("authorization"), None, "stripped across origins");

    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.uri.contains("AAPL"))
            .count(),
        1,
        "one request after a 204"
    );
    drop((no_content, wrong_type, redirected));
    baseline
        .assert(&pool, || sim.active_streams() + other.active_streams())
        .await;
    sim.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn f14_a_redirect_elsewhere_is_refused_by_default_and_never_to_the_gateway_itself() {
    // What the gateway's own listener would be: nothing may connect to it.
    let own = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own_addr = own.local_addr().unwrap();
    let other = start_sim(Sim::builder().topics(["MSFT"]).events_per_sec(200.0)).await;
    let redirect = |location: String| {
        [Fault::Redirect {
            code: 302,
            location: Some(location),
        }]
    };
    let sim = start_sim(
        Sim::builder()
            .topics(["MSFT", "SELF"])
            .events_per_sec(200.0)
            .script("MSFT", redirect(other.stream_url("MSFT")))
            .script(
                "SELF",
                redirect(format!("http://{own_addr}/v1/stream/SELF")),
            ),
    )
    .await;
    let baseline = Baseline::take(WAIT);
    let mut config = config(&sim_template(&sim), true);
    // Even with its host listed, the gateway's own address is refused.
    config.stream.redirects.hosts = ["localhost".to_string()].into();
    config.stream.redirects.own = [own_addr].into();
    let pool = Pool::new(config, TcpConnector).unwrap();
    for topic in ["MSFT", "SELF"] {
        let mut sub = pool.subscribe(topic).unwrap();
        let stopped = status(&mut sub, WAIT).await;
        assert_eq!(
            stopped.reason,
            Reason::Stop(StopReason::RedirectRefused),
            "{topic}"
        );
        assert!(stopped.terminal, "{topic}: not retried in a loop");
    }
    assert!(
        other.requests().is_empty(),
        "the other origin was not asked"
    );
    let accepted = timeout(Duration::from_millis(50), own.accept()).await;
    assert!(accepted.is_err(), "nothing connected to the gateway itself");
    // The refusal is remembered: asking again costs the upstream nothing.
    assert!(matches!(
        pool.subscribe("MSFT"),
        Err(PoolError::Stopped {
            reason: StopReason::RedirectRefused,
            ..
        })
    ));
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.uri.contains("MSFT"))
            .count(),
        1
    );
    baseline
        .assert(&pool, || sim.active_streams() + other.active_streams())
        .await;
    sim.shutdown().await;
    other.shutdown().await;
}

#[tokio::test]
async fn f18_an_upstream_restart_resumes_with_last_event_id_and_no_gap() {
    let sim = start_sim(Sim::builder().topics(["AAPL"]).events_per_sec(200.0)).await;
    let baseline = Baseline::take(WAIT);
    let pool = Pool::new(config(&sim_template(&sim), true), TcpConnector).unwrap();
    let mut sub = pool.subscribe("AAPL").unwrap();
    let before = event_ids(&mut sub, 5, WAIT).await;
    sim.restart(Duration::from_millis(200));
    let after = event_ids(&mut sub, 40, WAIT).await;
    let all: Vec<u64> = before.iter().chain(&after).copied().collect();
    assert!(contiguous(&all), "no gap, no duplicate across the restart");
    assert!(
        sim.requests()
            .iter()
            .skip(1)
            .any(|r| r.header("last-event-id").is_some()),
        "the reconnect carried Last-Event-ID"
    );
    drop(sub);
    baseline.assert(&pool, || sim.active_streams()).await;
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_stopped_by_a_204_is_retried_for_a_new_subscriber() {
    let baseline = Baseline::take(VIRTUAL);
    let upstream = MemoryUpstream::new(
        vec![Script::Respond {
            status: 204,
            content_type: "text/plain",
            headers: Vec::new(),
            steps: Vec::new(),
        }],
        Script::stream(vec![Step::Send("id: 1\ndata: back\n\n"), Step::Hang]),
    );
    let pool = Pool::new(config(MEMORY, false), upstream.clone()).unwrap();
    let mut first = pool.subscribe("AAPL").unwrap();
    let stopped = status(&mut first, VIRTUAL).await;
    assert_eq!(stopped.reason, Reason::Stop(StopReason::NoContent));
    assert!(stopped.terminal);
    // Paused time: a minute passes at once; a retry by itself would have come within it.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(upstream.attempts(), 1, "a 204 is not retried by itself");
    // New demand: one new attempt, and it works.
    let mut second = pool.subscribe("AAPL").unwrap();
    assert_eq!(event_ids(&mut second, 1, VIRTUAL).await, [1]);
    assert_eq!(upstream.attempts(), 2);
    drop((first, second));
    baseline.assert(&pool, || upstream.open()).await;
}

/// F26: two gateways retrying the same failing topic draw their jitter
/// independently (each pool seeds from the OS's randomness), so they never
/// come back in lockstep; a fixed seed reproduces a run exactly.
#[tokio::test(start_paused = true)]
async fn f26_two_pools_retrying_one_topic_do_not_retry_in_lockstep() {
    let attempts = |seed: Option<u64>| async move {
        let upstream = MemoryUpstream::new(Vec::new(), Script::Refuse);
        let mut config = config(MEMORY, false);
        config.seed = seed;
        let pool = Pool::new(config, upstream.clone()).expect("valid");
        let sub = pool.subscribe("AAPL").expect("subscribed");
        // Paused time: six refused attempts and their backoffs, at once.
        while upstream.attempts() < 6 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(sub);
        pool.close().await;
        let at = upstream.attempted_at.lock().clone();
        at.windows(2)
            .map(|w| w[1] - w[0])
            .collect::<Vec<Duration>>()
    };
    let (a, b) = (attempts(None).await, attempts(None).await);
    assert_ne!(a, b, "independent draws: {a:?} {b:?}");
    let (c, d) = (attempts(Some(7)).await, attempts(Some(7)).await);
    assert_eq!(c, d, "a seed reproduces the run");
}
