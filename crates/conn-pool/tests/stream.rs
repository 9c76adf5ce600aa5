//! The stream client against sse-upstream-sim over loopback (bounded waits),
//! and against an in-memory upstream with paused time for the deadlines.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use hyper_util::rt::TokioIo;
use sse_conn_pool::{
    Connector, StreamConfig, StreamItem, Target, TcpConnector, UpstreamRequest, spawn_stream,
};
use sse_state_machine::{FailureKind, Phase, Reason, StopReason, TimeoutKind};
use sse_upstream_sim::{Fault, Sim, SimHandle};
use tokio::sync::broadcast;
use tokio::time::timeout;

/// Bounded waits: real time on loopback. Paused-time tests set the tokio
/// clock, so the same bound is virtual there; they use `VIRTUAL_WAIT`.
const WAIT: Duration = Duration::from_secs(10);
const VIRTUAL_WAIT: Duration = Duration::from_secs(24 * 3600);

thread_local! {
    static BOUND: std::cell::Cell<Duration> = const { std::cell::Cell::new(WAIT) };
}

/// Fast retries for loopback tests: no jitter, no spread, 20 ms backoff.
fn quick() -> StreamConfig {
    let mut config = StreamConfig::default();
    config.machine.backoff.initial = Duration::from_millis(20);
    config.machine.backoff.jitter = sse_state_machine::Jitter::None;
    config.machine.backoff.reconnect_spread = Duration::ZERO;
    config.machine.retry_min = Duration::from_millis(10);
    config
}

async fn next(items: &mut broadcast::Receiver<StreamItem>) -> StreamItem {
    let bound = BOUND.with(std::cell::Cell::get);
    timeout(bound, items.recv())
        .await
        .expect("an item in time")
        .expect("the stream is open")
}

/// The next `n` event ids, skipping comments and status updates.
async fn event_ids(items: &mut broadcast::Receiver<StreamItem>, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    while ids.len() < n {
        if let StreamItem::Event(event) = next(items).await {
            ids.push(event.id.parse().expect("numeric ids"));
        }
    }
    ids
}

/// The next status update, skipping the initial `Connecting` (whether a
/// subscriber sees it depends on when it subscribed).
async fn status(items: &mut broadcast::Receiver<StreamItem>) -> sse_conn_pool::Status {
    loop {
        if let StreamItem::Status(status) = next(items).await
            && status.reason != Reason::Start
        {
            return status;
        }
    }
}

/// A stream of `topic` from `sim`, with quick retries.
fn start(sim: &SimHandle, topic: &str) -> sse_conn_pool::StreamHandle {
    let request = UpstreamRequest::get(&sim.stream_url(topic)).expect("a valid URL");
    spawn_stream(TcpConnector, request, quick()).expect("a valid config")
}

async fn sim(builder: sse_upstream_sim::SimBuilder) -> SimHandle {
    builder
        .start("127.0.0.1:0")
        .await
        .expect("the simulator starts")
}

#[tokio::test]
async fn events_flow_from_the_upstream_to_subscribers() {
    let sim = sim(Sim::builder().topics(["AAPL"]).events_per_sec(200.0)).await;
    let stream = start(&sim, "AAPL");
    let mut a = stream.subscribe();
    let mut b = stream.subscribe();
    assert_eq!(status(&mut a).await.phase, Phase::Open);
    let ids = event_ids(&mut a, 5).await;
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert_eq!(
        event_ids(&mut b, 5).await,
        ids,
        "every subscriber sees the same events"
    );
    let request = &sim.requests()[0];
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_eq!(request.header("cache-control"), Some("no-cache"));
    assert_eq!(
        request.header("last-event-id"),
        None,
        "no Last-Event-ID on the first request"
    );
    stream.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn f3_a_cut_stream_resumes_from_the_last_complete_event_with_no_gap() {
    let sim = sim(Sim::builder()
        .topics(["T"])
        .events_per_sec(200.0)
        .script("T", [Fault::CloseMidEvent { after_events: 3 }]))
    .await;
    let stream = start(&sim, "T");
    let mut items = stream.subscribe();
    let ids = event_ids(&mut items, 10).await;
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no duplicate across the reconnect: {ids:?}"
    );
    let requests = sim.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].header("last-event-id"),
        Some(ids[2].to_string().as_str())
    );
    stream.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn f2_retry_after_and_statuses_are_status_updates_then_it_recovers() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(200.0).script(
        "T",
        [
            Fault::status(503).retry_after("garbage"),
            Fault::WrongContentType,
        ],
    ))
    .await;
    let stream = start(&sim, "T");
    let mut items = stream.subscribe();
    let s = status(&mut items).await;
    assert_eq!(
        (s.phase, s.reason, s.terminal),
        (Phase::BackingOff, Reason::Status(503), false)
    );
    assert_eq!(status(&mut items).await.phase, Phase::Connecting);
    assert_eq!(status(&mut items).await.reason, Reason::NotEventStream);
    assert_eq!(event_ids(&mut items, 3).await.len(), 3, "recovered");
    stream.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_configured_last_event_id_is_sent_on_the_first_request() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(200.0)).await;
    common::until(WAIT, "the feed has history", || {
        sim.last_id("T").is_some_and(|id| id >= 10)
    })
    .await;
    let mut config = quick();
    config.last_event_id = Some("3".into());
    let stream = spawn_stream(
        TcpConnector,
        UpstreamRequest::get(&sim.stream_url("T")).unwrap(),
        config,
    )
    .unwrap();
    let mut items = stream.subscribe();
    assert_eq!(event_ids(&mut items, 2).await, [4, 5], "replayed from 3");
    assert_eq!(sim.requests()[0].header("last-event-id"), Some("3"));
    let state = stream.state();
    assert_eq!(
        (state.phase, state.attempts, state.opened),
        (Phase::Open, 1, 1)
    );
    stream.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn f5_garbage_is_survived_and_an_endless_line_drops_the_connection() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(200.0).script(
        "T",
        [
            Fault::Garbage(sse_upstream_sim::Garbage::InvalidUtf8),
            Fault::EndlessLine { max_bytes: 8 << 20 },
        ],
    ))
    .await;
    let mut config = quick();
    config.limits = sse_parser::Limits::default().max_line_len(64 * 1024);
    let request = UpstreamRequest::get(&sim.stream_url("T")).unwrap();
    let stream = spawn_stream(TcpConnector, request, config).unwrap();
    let mut items = stream.subscribe();
    // Invalid UTF-8 arrives as U+FFFD; the stream goes on.
    let garbage = loop {
        if let StreamItem::Event(event) = next(&mut items).await {
            break event;
        }
    };
    assert!(garbage.data.contains('\u{FFFD}'));
    event_ids(&mut items, 2).await;
    // The next connection's endless line breaks the line limit: that
    // connection is dropped and the stream reconnects.
    stream.reconnect().await;
    loop {
        let s = status(&mut items).await;
        if s.phase == Phase::BackingOff {
            assert_eq!(s.reason, Reason::Failed(FailureKind::Limit));
            break;
        }
    }
    assert_eq!(
        event_ids(&mut items, 2).await.len(),
        2,
        "recovered on the third connection"
    );
    stream.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn f18_an_upstream_restart_resumes_with_last_event_id() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(200.0)).await;
    let stream = start(&sim, "T");
    let mut items = stream.subscribe();
    let before = event_ids(&mut items, 3).await;
    sim.restart(Duration::from_millis(200));
    let after = event_ids(&mut items, 20).await;
    let mut all = before.clone();
    all.extend(&after);
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no duplicate across the restart: {all:?}"
    );
    assert!(sim.requests().len() >= 2);
    let resumed = sim
        .requests()
        .last()
        .unwrap()
        .header("last-event-id")
        .map(str::to_string);
    assert!(resumed.is_some(), "the reconnect carried Last-Event-ID");
    stream.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn f14_204_stops_for_good_with_one_request() {
    let sim = sim(Sim::builder()
        .topics(["T"])
        .script("T", [Fault::status(204)]))
    .await;
    let stream = start(&sim, "T");
    let mut items = stream.subscribe();
    let s = status(&mut items).await;
    assert_eq!(
        (s.phase, s.reason, s.terminal),
        (Phase::Stopped, Reason::Stop(StopReason::NoContent), true)
    );
    common::until(WAIT, "the task ends", || stream.is_finished()).await;
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn redirects_are_followed_and_a_missing_location_is_an_error() {
    let sim = sim(Sim::builder()
        .topics(["T", "U"])
        .events_per_sec(200.0)
        .script(
            "T",
            [
                Fault::Redirect {
                    code: 307,
                    location: Some("/v1/quotes/U/stream".into()),
                },
                Fault::Redirect {
                    code: 302,
                    location: None,
                },
            ],
        ))
    .await;
    let mut request = UpstreamRequest::get(&sim.stream_url("T")).unwrap();
    request
        .headers
        .insert("authorization", "Bearer t".parse().unwrap());
    let stream = spawn_stream(TcpConnector, request, quick()).unwrap();
    let mut items = stream.subscribe();
    assert_eq!(event_ids(&mut items, 1).await.len(), 1, "followed to U");
    let requests = sim.requests();
    assert_eq!(requests[1].uri, "/v1/quotes/U/stream");
    assert_eq!(
        requests[1].header("authorization"),
        Some("Bearer t"),
        "same origin keeps credentials"
    );
    stream.reconnect().await;
    // The next connection to T gets a redirect without Location: an error, not a loop.
    loop {
        let s = status(&mut items).await;
        if s.phase == Phase::BackingOff {
            assert_eq!(s.reason, Reason::Failed(FailureKind::Protocol));
            break;
        }
    }
    stream.stop().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn stopping_releases_the_upstream_connection() {
    let sim = sim(Sim::builder().topics(["T"]).events_per_sec(100.0)).await;
    let stream = start(&sim, "T");
    let mut items = stream.subscribe();
    event_ids(&mut items, 1).await;
    assert_eq!(sim.active_streams(), 1);
    stream.stop().await;
    common::until(WAIT, "the upstream sees the connection close", || {
        sim.active_streams() == 0
    })
    .await;
    sim.shutdown().await;
}

// ------------------------------------------------------------ in memory, paused time

#[tokio::test(start_paused = true)]
async fn f4_a_stalled_upstream_is_detected_at_the_idle_timeout_in_virtual_time() {
    // A paused-time test runs on the current thread: the bound is virtual.
    BOUND.with(|b| b.set(VIRTUAL_WAIT));
    // Every connection sends one event, then stays silent forever.
    let stalling = common::Script::stream(vec![
        common::Step::Send("id: 1\ndata: hello\n\n"),
        common::Step::Hang,
    ]);
    let upstream = common::MemoryUpstream::new(Vec::new(), stalling);
    let mut config = StreamConfig::default();
    config.machine.backoff.reconnect_spread = Duration::ZERO;
    let idle = config.machine.idle_timeout;
    let stream = spawn_stream(
        upstream.clone(),
        UpstreamRequest::get("http://upstream.test/s").unwrap(),
        config,
    )
    .unwrap();
    let mut items = stream.subscribe();
    assert_eq!(status(&mut items).await.phase, Phase::Open);
    assert!(matches!(next(&mut items).await, StreamItem::Event(e) if &*e.data == "hello"));
    let opened = tokio::time::Instant::now();
    // Silence: 90 virtual seconds later the idle deadline fires.
    let s = status(&mut items).await;
    assert_eq!(
        (s.phase, s.reason),
        (Phase::BackingOff, Reason::Timeout(TimeoutKind::Idle))
    );
    assert_eq!(tokio::time::Instant::now() - opened, idle);
    // ...and it reconnects after the backoff, resuming from id 1.
    assert_eq!(status(&mut items).await.phase, Phase::Connecting);
    assert_eq!(status(&mut items).await.phase, Phase::Open);
    assert_eq!(upstream.attempts(), 2);
    stream.stop().await;
}

/// An upstream in memory that sends only heartbeat comments: alive, silent.
#[derive(Clone, Default)]
struct HeartbeatsOnly {
    connections: Arc<AtomicUsize>,
}

struct Heartbeats {
    sleep: Pin<Box<tokio::time::Sleep>>,
    first: bool,
}

impl Body for Heartbeats {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.first {
            self.first = false;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b"id: 1\ndata: only event\n\n",
            )))));
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let at = self.sleep.deadline() + Duration::from_secs(15);
        self.sleep.as_mut().reset(at);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b": heartbeat\n")))))
    }
}

impl Connector for HeartbeatsOnly {
    type Io = TokioIo<tokio::io::DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        self.connections.fetch_add(1, Ordering::SeqCst);
        Ok(common::serve_in_memory(|_| Heartbeats {
            // Paused time (a paused test): a heartbeat every 15 s of virtual time.
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(15))),
            first: true,
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn a_quiet_topic_that_sends_heartbeats_stays_healthy_and_is_never_rotated() {
    BOUND.with(|b| b.set(VIRTUAL_WAIT));
    let upstream = HeartbeatsOnly::default();
    // The defaults: no route asked for a minimum rate.
    let stream = spawn_stream(
        upstream.clone(),
        UpstreamRequest::get("http://upstream.test/s").unwrap(),
        StreamConfig::default(),
    )
    .unwrap();
    let mut items = stream.subscribe();
    assert_eq!(status(&mut items).await.phase, Phase::Open);
    // An hour of heartbeats and no event (paused time): past every health
    // window, the eventless limit (5 min) and the minimum rotation interval.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let state = stream.state();
    assert_eq!(
        state.health,
        sse_health::Level::Healthy,
        "{:?}",
        state.causes
    );
    assert!(state.causes.is_empty(), "{:?}", state.causes);
    assert_eq!(state.rotations_advised, 0);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
    assert_eq!(state.latency_p50, None, "no event_time: not measured");
    stream.stop().await;
}

#[tokio::test(start_paused = true)]
async fn health_rotates_a_stream_that_only_sends_heartbeats_when_a_rate_is_asked() {
    BOUND.with(|b| b.set(VIRTUAL_WAIT));
    let upstream = HeartbeatsOnly::default();
    let mut config = StreamConfig::default();
    // A feed that must be busy: heartbeats alone are a stale stream.
    config.health.min_events_per_min = Some(1);
    let stream = spawn_stream(
        upstream.clone(),
        UpstreamRequest::get("http://upstream.test/s").unwrap(),
        config,
    )
    .unwrap();
    let mut items = stream.subscribe();
    assert_eq!(status(&mut items).await.phase, Phase::Open);
    let opened = tokio::time::Instant::now();
    // Heartbeats keep the idle timer happy; health sees no event for 5 min
    // and advises a rotation: a second connection opens.
    loop {
        let s = status(&mut items).await;
        if s.reason == Reason::Rotated(sse_state_machine::RotateReason::Stale)
            || upstream.connections.load(Ordering::SeqCst) == 2
        {
            break;
        }
    }
    let elapsed = tokio::time::Instant::now() - opened;
    assert!(
        elapsed >= Duration::from_secs(300) && elapsed <= Duration::from_secs(302),
        "{elapsed:?}"
    );
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 2);
    assert_eq!(stream.state().rotations_advised, 1);
    stream.stop().await;
}

/// An upstream in memory that sends an event every second of virtual time,
/// its data `{"t": <unix ms>}` stamped `lag_ms` before its now: the wall
/// clock at the connection, plus the virtual time since (as the gateway
/// reckons arrivals).
#[derive(Clone, Default)]
struct Stamped {
    lag_ms: Arc<std::sync::atomic::AtomicU64>,
}

struct StampedBody {
    sleep: Pin<Box<tokio::time::Sleep>>,
    lag_ms: Arc<std::sync::atomic::AtomicU64>,
    n: u64,
    /// The wall clock and tokio's at the connection.
    opened: (std::time::SystemTime, tokio::time::Instant),
}

impl Body for StampedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let at = self.sleep.deadline() + Duration::from_secs(1);
        self.sleep.as_mut().reset(at);
        self.n += 1;
        let now = self.opened.0 + self.opened.1.elapsed();
        let now_ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        let now_ms = u64::try_from(now_ms).expect("ms since 1970 fit in a u64");
        let t = now_ms - self.lag_ms.load(Ordering::SeqCst);
        let frame = format!("id: {}\ndata: {{\"s\":\"X\",\"t\":{t}}}\n\n", self.n);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(frame)))))
    }
}

impl Connector for Stamped {
    type Io = TokioIo<tokio::io::DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        let lag_ms = self.lag_ms.clone();
        Ok(common::serve_in_memory(move |_| StampedBody {
            // Paused time (a paused test): an event every second of virtual time.
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
            lag_ms: lag_ms.clone(),
            n: 0,
            opened: (std::time::SystemTime::now(), tokio::time::Instant::now()),
        }))
    }
}

/// Steps virtual time a second at a time until `done` holds of the
/// stream's state; how long that took.
async fn until(
    stream: &sse_conn_pool::StreamHandle,
    most: Duration,
    done: impl Fn(&sse_conn_pool::StreamState) -> bool,
) -> Duration {
    let start = tokio::time::Instant::now();
    while !done(&stream.state()) {
        assert!(
            start.elapsed() < most,
            "not within {most:?}: {:?}",
            stream.state()
        );
        // Paused time: one virtual second per step.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn latency_from_event_time_turns_a_stream_degraded_and_back() {
    BOUND.with(|b| b.set(VIRTUAL_WAIT));
    let upstream = Stamped::default();
    let mut config = StreamConfig::default();
    config.health.event_time = Some(sse_health::EventTime {
        pointer: "/t".into(),
        unit: sse_health::TimeUnit::Ms,
    });
    let stream = spawn_stream(
        upstream.clone(),
        UpstreamRequest::get("http://upstream.test/s").unwrap(),
        config,
    )
    .unwrap();
    // On time: healthy, and latency is measured (near zero).
    until(&stream, Duration::from_secs(30), |s| {
        s.latency_p50.is_some()
    })
    .await;
    assert_eq!(stream.state().health, sse_health::Level::Healthy);
    assert!(stream.state().latency_p99.expect("measured") < Duration::from_millis(500));
    // Two seconds late, over the 1 s rule: degraded after `degrade_after`.
    upstream.lag_ms.store(2_000, Ordering::SeqCst);
    until(&stream, Duration::from_secs(60), |s| {
        s.health == sse_health::Level::Degraded
    })
    .await;
    let state = stream.state();
    assert!(
        state.causes.iter().any(|c| c.contains("latency")),
        "{:?}",
        state.causes
    );
    let p50 = state.latency_p50.expect("measured");
    assert!(p50 >= Duration::from_millis(1_900), "{p50:?}");
    // On time again: healthy once the late samples left the window and the
    // recovery held (`recover_after`).
    upstream.lag_ms.store(0, Ordering::SeqCst);
    until(&stream, Duration::from_secs(300), |s| {
        s.health == sse_health::Level::Healthy
    })
    .await;
    assert!(stream.state().latency_p99.expect("measured") < Duration::from_millis(500));
    stream.stop().await;
}
