//! Packed routes over an in-memory packed upstream in paused time: topics
//! share connections, events reach their own topic only, re-packs hide
//! their overlap (no gap, no duplicate by each topic's own sequence),
//! churn is batched, a poisoned topic does not touch its neighbours, and
//! a topic the upstream refuses is moved out and remembered.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use sse_conn_pool::{
    Connector, Demux, Pack, Pool, PoolConfig, PoolError, Resume, Route, StreamItem, Subscription,
    Target, TopicMatch,
};
use tokio::time::Instant;

/// Every topic of the universe publishes one event per tick (paused time).
const TICK: Duration = Duration::from_millis(100);

/// A packed upstream as providers run one: every topic's events in one
/// numbered sequence (tick `k`, topic `i` of `n`: number `(k-1)*n+i+1`),
/// `/stream?symbols=A,B` serves the events of its set after
/// `Last-Event-ID` (or from now), each `{"s":topic,"n":k}`. A set naming a
/// refused topic gets a 404; the topic `BAD` publishes data that is not
/// JSON; the topic `STRAY` is sent on every connection, asked or not.
#[derive(Clone)]
struct Packed {
    universe: Arc<Vec<String>>,
    start: Instant,
    refused: Arc<Mutex<BTreeSet<String>>>,
    /// Each request: its set, and its `Last-Event-ID`.
    requests: Arc<Mutex<Vec<Request>>>,
    open: Arc<AtomicUsize>,
    resumes: bool,
    /// Where events name their topic.
    style: Style,
}

/// How the packed upstream names each event's topic.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    /// `{"s":topic,...}` in the data.
    Json,
    /// `event: topic`.
    EventType,
    /// `id: topic:g`.
    IdPrefix,
}

impl Packed {
    fn new(topics: &[&str]) -> Self {
        let mut universe: Vec<String> = topics.iter().map(ToString::to_string).collect();
        universe.sort();
        Self {
            universe: Arc::new(universe),
            start: Instant::now(),
            refused: Arc::default(),
            requests: Arc::default(),
            open: Arc::default(),
            resumes: true,
            style: Style::Json,
        }
    }

    fn connections(&self) -> usize {
        self.requests.lock().len()
    }
}

/// A request's set and `Last-Event-ID`.
type Request = (Vec<String>, Option<u64>);

struct Feed {
    style: Style,
    universe: Arc<Vec<String>>,
    set: BTreeSet<String>,
    start: Instant,
    next: u64,
    sleep: Pin<Box<tokio::time::Sleep>>,
    open: Arc<AtomicUsize>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Feed {
    fn due(&self, g: u64) -> Instant {
        let n = self.universe.len() as u64;
        let k = (g - 1) / n + 1;
        self.start + TICK * u32::try_from(k).unwrap()
    }
}

impl Body for Feed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let now = Instant::now();
        let mut out = String::new();
        let n = self.universe.len() as u64;
        while self.due(self.next) <= now {
            let g = self.next;
            self.next += 1;
            let topic = &self.universe[usize::try_from((g - 1) % n).unwrap()];
            let k = (g - 1) / n + 1;
            if topic == "STRAY" || self.set.contains(topic) {
                if topic == "BAD" {
                    out.push_str(&format!("id: {g}\ndata: {{not json {k}\n\n"));
                } else if self.style == Style::EventType {
                    out.push_str(&format!(
                        "id: {g}\nevent: {topic}\ndata: {{\"s\":\"{topic}\",\"n\":{k}}}\n\n"
                    ));
                } else if self.style == Style::IdPrefix {
                    out.push_str(&format!(
                        "id: {topic}:{g}\ndata: {{\"s\":\"{topic}\",\"n\":{k}}}\n\n"
                    ));
                } else {
                    out.push_str(&format!(
                        "id: {g}\ndata: {{\"s\":\"{topic}\",\"n\":{k}}}\n\n"
                    ));
                }
            }
        }
        if !out.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
        }
        let due = self.due(self.next);
        self.sleep.as_mut().reset(due);
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

type Reply = hyper::Response<http_body_util::Either<Feed, http_body_util::Empty<Bytes>>>;

impl Packed {
    fn answer(&self, req: &hyper::Request<Incoming>) -> Reply {
        let query = req.uri().query().unwrap_or_default().to_string();
        let list = query.strip_prefix("symbols=").unwrap_or_default();
        let set: Vec<String> = list.split(',').map(ToString::to_string).collect();
        // `Last-Event-ID: g`, or `topic:g` with ids that name their topic.
        let after = req.headers().get("last-event-id").and_then(|v| {
            let id = v.to_str().ok()?;
            id.rsplit(':').next()?.parse::<u64>().ok()
        });
        self.requests.lock().push((set.clone(), after));
        if set.iter().any(|t| self.refused.lock().contains(t)) {
            let mut response =
                hyper::Response::new(http_body_util::Either::Right(http_body_util::Empty::new()));
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            return response;
        }
        let n = self.universe.len() as u64;
        let ticks = (Instant::now() - self.start).as_nanos() / TICK.as_nanos();
        let now_g = u64::try_from(ticks).unwrap() * n;
        let next = match after.filter(|_| self.resumes) {
            Some(g) => g + 1,
            None => now_g + 1,
        };
        self.open.fetch_add(1, Ordering::SeqCst);
        let feed = Feed {
            style: self.style,
            universe: self.universe.clone(),
            set: set.into_iter().collect(),
            start: self.start,
            next,
            // Paused time: the body's timer, reset to each event's tick.
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            open: self.open.clone(),
        };
        let mut response = hyper::Response::new(http_body_util::Either::Left(feed));
        response.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        response
    }
}

impl Connector for Packed {
    type Io = TokioIo<tokio::io::DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let upstream = self.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let response = upstream.answer(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        Ok(TokioIo::new(client))
    }
}

fn config(max_topics: usize, min_interval: Duration) -> PoolConfig {
    config_with(max_topics, min_interval, Demux::JsonPointer("/s".into()))
}

fn config_with(max_topics: usize, min_interval: Duration, demux: Demux) -> PoolConfig {
    let mut pack = Pack::new("http://packed.test/stream?symbols={topics}", demux);
    pack.max_topics = max_topics;
    pack.min_interval = min_interval;
    let mut config = PoolConfig {
        routes: vec![Route::packed(
            "packed",
            TopicMatch::Patterns(vec!["*".into()]),
            pack,
        )],
        ..PoolConfig::default()
    };
    config.idle_linger = Duration::from_secs(1);
    config.max_streams = 10;
    config.seed = Some(7);
    config
}

/// Each topic's received `n`s, checked as they come: consecutive from the
/// first (no gap), never twice (no duplicate).
#[derive(Default)]
struct Checker {
    last: HashMap<String, u64>,
    events: u64,
}

impl Checker {
    fn take(&mut self, topic: &str, item: &StreamItem) {
        let StreamItem::Event(event) = item else {
            return;
        };
        let value: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(value["s"], topic, "{topic} received another topic's event");
        let n = value["n"].as_u64().unwrap();
        if let Some(last) = self.last.get(topic) {
            assert_eq!(
                n,
                last + 1,
                "{topic}: after {last} came {n} (a gap or a duplicate)"
            );
        }
        self.last.insert(topic.to_string(), n);
        self.events += 1;
    }

    /// Drains what `sub` has now.
    fn drain(&mut self, topic: &str, sub: &mut Subscription) {
        while let Ok(item) = sub.try_recv() {
            self.take(topic, &item);
        }
    }
}

async fn run_for(d: Duration, subs: &mut [(String, Subscription)], checker: &mut Checker) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        // Paused time: advances in steps of one tick of virtual time.
        tokio::time::sleep(TICK).await;
        for (topic, sub) in subs.iter_mut() {
            checker.drain(topic, sub);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn topics_share_connections_and_each_receives_only_its_own() {
    let topics = ["A", "B", "C", "D", "E", "F", "G"];
    let upstream = Packed::new(&topics);
    let pool = Pool::new(config(3, Duration::from_secs(2)), upstream.clone()).unwrap();
    let mut subs: Vec<(String, Subscription)> = topics
        .iter()
        .map(|t| (t.to_string(), pool.subscribe(t).unwrap()))
        .collect();
    let mut checker = Checker::default();
    run_for(Duration::from_secs(5), &mut subs, &mut checker).await;
    assert_eq!(
        upstream.open.load(Ordering::SeqCst),
        3,
        "seven topics, three to a connection"
    );
    assert_eq!(
        upstream.connections(),
        3,
        "subscribed together, they made no re-pack: {:?}",
        upstream.requests.lock()
    );
    for topic in topics {
        let n = checker.last.get(topic).copied().unwrap_or(0);
        assert!(n >= 40, "{topic} received up to {n} in 5 s at 10/s");
    }
    let counts = pool.counts();
    assert_eq!((counts.streams, counts.subscribers), (7, 7));
    assert_eq!(counts.connections_opened, 3, "the pool counts connections");
    // Paused time: one upkeep second of virtual time publishes each topic's state.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for info in pool.snapshot() {
        assert_eq!(info.route.as_deref(), Some("packed"));
        assert_eq!(
            info.state.phase,
            sse_state_machine::Phase::Open,
            "{}",
            info.topic
        );
        assert!(
            (40..=70).contains(&info.state.events),
            "{}: its own events, not its connection's: {}",
            info.topic,
            info.state.events
        );
        assert!(!info.state.last_event_id.is_empty());
        assert_eq!(info.state.health, sse_health::Level::Healthy);
    }
    pool.close().await;
    // Paused time: the connections' tasks end within a tick of virtual time.
    tokio::time::sleep(TICK).await;
    assert_eq!(
        upstream.open.load(Ordering::SeqCst),
        0,
        "closed with the pool"
    );
}

#[tokio::test(start_paused = true)]
async fn re_packs_hide_their_overlap_no_gap_no_duplicate() {
    let topics = ["A", "B", "C", "D"];
    let upstream = Packed::new(&topics);
    let pool = Pool::new(config(10, Duration::from_secs(2)), upstream.clone()).unwrap();
    let mut checker = Checker::default();
    let mut subs = vec![("A".to_string(), pool.subscribe("A").unwrap())];
    run_for(Duration::from_secs(1), &mut subs, &mut checker).await;
    // B joins, then C; B leaves (after its linger); D joins: each change
    // re-opens the connection with the new set, make-before-break.
    subs.push(("B".into(), pool.subscribe("B").unwrap()));
    run_for(Duration::from_secs(3), &mut subs, &mut checker).await;
    subs.push(("C".into(), pool.subscribe("C").unwrap()));
    run_for(Duration::from_secs(3), &mut subs, &mut checker).await;
    subs.retain(|(t, _)| t != "B");
    run_for(Duration::from_secs(4), &mut subs, &mut checker).await;
    subs.push(("D".into(), pool.subscribe("D").unwrap()));
    run_for(Duration::from_secs(4), &mut subs, &mut checker).await;
    let requests = upstream.requests.lock().clone();
    let sets: Vec<Vec<String>> = requests.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(
        sets,
        vec![
            vec!["A".to_string()],
            vec!["A".into(), "B".into()],
            vec!["A".into(), "B".into(), "C".into()],
            vec!["A".into(), "C".into()],
            vec!["A".into(), "C".into(), "D".into()],
        ],
        "one connection per change of the set"
    );
    assert!(
        requests[1..].iter().all(|(_, after)| after.is_some()),
        "every re-pack resumes from the connection's last id: {requests:?}"
    );
    assert!(
        checker.last["A"] >= 140,
        "A ran throughout: {:?}",
        checker.last
    );
    assert!(checker.last.contains_key("D"));
    // Paused time: one tick of virtual time for the old connections to close.
    tokio::time::sleep(TICK).await;
    assert_eq!(upstream.open.load(Ordering::SeqCst), 1, "old sets closed");
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn churn_is_batched_into_one_re_pack_per_interval() {
    let topics: Vec<String> = (0..40).map(|i| format!("T{i:02}")).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let upstream = Packed::new(&names);
    let pool = Pool::new(config(100, Duration::from_secs(2)), upstream.clone()).unwrap();
    let mut checker = Checker::default();
    let mut subs = Vec::new();
    // A topic joins every 100 ms for 4 s: 40 changes of the set.
    for topic in &topics {
        subs.push((topic.clone(), pool.subscribe(topic).unwrap()));
        run_for(TICK, &mut subs, &mut checker).await;
    }
    run_for(Duration::from_secs(3), &mut subs, &mut checker).await;
    let connections = upstream.connections();
    assert!(
        connections <= 4,
        "40 joins over 4 s at one re-pack per 2 s: {connections} connections"
    );
    for topic in &topics {
        assert!(
            checker.last.contains_key(topic),
            "{topic} joined within 2 s"
        );
    }
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_poisoned_topic_does_not_touch_its_neighbours() {
    let topics = ["A", "BAD", "C", "STRAY"];
    let upstream = Packed::new(&topics);
    let pool = Pool::new(config(10, Duration::from_secs(2)), upstream.clone()).unwrap();
    let mut checker = Checker::default();
    let mut subs: Vec<(String, Subscription)> = ["A", "BAD", "C"]
        .iter()
        .map(|t| (t.to_string(), pool.subscribe(t).unwrap()))
        .collect();
    run_for(Duration::from_secs(5), &mut subs, &mut checker).await;
    assert!(
        checker.last["A"] >= 45 && checker.last["C"] >= 45,
        "{:?}",
        checker.last
    );
    assert!(
        !checker.last.contains_key("BAD"),
        "unreadable data is dropped"
    );
    assert_eq!(upstream.connections(), 1, "the connection was never broken");
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_refused_topic_is_moved_out_and_remembered() {
    let topics = ["A", "B", "C", "GONE", "LOST"];
    let upstream = Packed::new(&topics);
    upstream
        .refused
        .lock()
        .extend(["GONE".to_string(), "LOST".to_string()]);
    let pool = Pool::new(config(10, Duration::from_secs(2)), upstream.clone()).unwrap();
    let mut checker = Checker::default();
    let mut subs: Vec<(String, Subscription)> = ["A", "B"]
        .iter()
        .map(|t| (t.to_string(), pool.subscribe(t).unwrap()))
        .collect();
    run_for(Duration::from_secs(1), &mut subs, &mut checker).await;
    let mut gone = pool.subscribe("GONE").unwrap();
    let mut lost = pool.subscribe("LOST").unwrap();
    subs.push(("C".into(), pool.subscribe("C").unwrap()));
    let mut ended = 0;
    for sub in [&mut gone, &mut lost] {
        loop {
            let item = tokio::time::timeout(Duration::from_secs(60), sub.recv())
                .await
                .expect("an answer within a virtual minute");
            match item {
                Ok(StreamItem::Status(status)) if status.terminal => {
                    ended += 1;
                    break;
                }
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!(ended, 2, "both refused topics were told");
    run_for(Duration::from_secs(3), &mut subs, &mut checker).await;
    assert!(
        matches!(pool.subscribe("GONE"), Err(PoolError::Stopped { .. })),
        "remembered: no new request"
    );
    assert!(
        checker.last["A"] >= 35 && checker.last["B"] >= 35,
        "{:?}",
        checker.last
    );
    assert!(
        checker.last.contains_key("C"),
        "C joined once the refused were out"
    );
    let sets: Vec<Vec<String>> = upstream
        .requests
        .lock()
        .iter()
        .map(|r| r.0.clone())
        .collect();
    let clean: Vec<&Vec<String>> = sets
        .iter()
        .filter(|s| !s.iter().any(|t| t == "GONE" || t == "LOST"))
        .collect();
    assert_eq!(
        clean.last().map(|s| s.join(",")),
        Some("A,B,C".into()),
        "{sets:?}"
    );
    assert!(sets.len() <= 7, "halving takes few requests: {sets:?}");
    let before = sets.len();
    run_for(Duration::from_secs(5), &mut subs, &mut checker).await;
    assert_eq!(upstream.connections(), before, "settled: no request since");
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn without_resume_a_reconnect_is_a_gap_each_topic_is_told_of() {
    let topics = ["A", "B"];
    let mut upstream = Packed::new(&topics);
    upstream.resumes = false;
    let mut config = config(10, Duration::from_secs(2));
    if let Some(pack) = config.routes[0].pack.as_mut() {
        pack.resume = Resume::None;
    }
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let mut a = pool.subscribe("A").unwrap();
    let mut b = pool.subscribe("B").unwrap();
    // Paused time: two seconds of virtual time, then a kick.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        pool.reconnect("A"),
        "a packed topic's reconnect is its group's"
    );
    for sub in [&mut a, &mut b] {
        let gap = loop {
            match tokio::time::timeout(Duration::from_secs(60), sub.recv()).await {
                Ok(Ok(StreamItem::Gap { .. })) => break true,
                Ok(Ok(_)) | Ok(Err(_)) => {}
                Err(_) => break false,
            }
        };
        assert!(gap, "told of the gap");
    }
    let requests = upstream.requests.lock().clone();
    assert!(
        requests.iter().all(|(_, after)| after.is_none()),
        "{requests:?}"
    );
    pool.close().await;
}

#[cfg(feature = "serde")]
#[test]
fn a_packed_route_reads_from_toml() {
    let config: PoolConfig = toml::from_str(
        r#"
        [[routes]]
        name = "bulk"
        topics = "*"
        headers = { "x-key" = "k" }
        max_streams = 5
        pack = { url_template = "https://x.example/v2/stream/{topics}", max_topics = 50, min_interval = "5s", resume = "none", demux = { json_pointer = "/meta/stream" } }
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    let pack = config.routes[0].pack.clone().unwrap();
    assert_eq!(pack.max_topics, 50);
    assert_eq!(pack.min_interval, Duration::from_secs(5));
    assert_eq!(pack.resume, Resume::None);
    assert_eq!(pack.demux, Demux::JsonPointer("/meta/stream".into()));
    let both: Result<PoolConfig, _> = toml::from_str(
        r#"
        [[routes]]
        name = "bulk"
        topics = "*"
        pack = { url_template = "https://x.example/{topics}", demux = { event_type = true, id_prefix = ":" } }
        "#,
    );
    assert!(both.unwrap_err().to_string().contains("exactly one of"));
}

#[tokio::test(start_paused = true)]
async fn caps_count_connections_not_topics() {
    let topics = ["A", "B", "C", "D", "E"];
    let upstream = Packed::new(&topics);
    let mut config = config(2, Duration::from_secs(2));
    config.max_streams = 2;
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let subs: Vec<Subscription> = ["A", "B", "C", "D"]
        .iter()
        .map(|t| pool.subscribe(t).unwrap())
        .collect();
    assert!(
        matches!(
            pool.subscribe("E"),
            Err(PoolError::AtCapacity { limit: 2, .. })
        ),
        "two connections of two topics: a fifth topic needs a third"
    );
    let more = pool.subscribe("A").unwrap();
    assert_eq!(
        pool.counts().subscribers,
        5,
        "a topic with a place is joined"
    );
    drop((subs, more));
    // Paused time: past the linger, A-D leave and their groups close.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = pool.subscribe("E").unwrap();
    assert_eq!(pool.counts().streams, 1);
    drop(e);
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn every_demux_sends_each_event_to_its_topic_across_re_packs() {
    for (style, demux) in [
        (Style::EventType, Demux::EventType),
        (Style::IdPrefix, Demux::IdPrefix(":".into())),
        (Style::Json, Demux::JsonPointer("/s".into())),
    ] {
        let mut upstream = Packed::new(&["A", "B", "C"]);
        upstream.style = style;
        let config = config_with(10, Duration::from_secs(2), demux);
        let pool = Pool::new(config, upstream.clone()).unwrap();
        let mut checker = Checker::default();
        let mut subs = vec![("A".to_string(), pool.subscribe("A").unwrap())];
        run_for(Duration::from_secs(3), &mut subs, &mut checker).await;
        subs.push(("B".into(), pool.subscribe("B").unwrap()));
        subs.push(("C".into(), pool.subscribe("C").unwrap()));
        run_for(Duration::from_secs(5), &mut subs, &mut checker).await;
        assert!(checker.last["A"] >= 75, "{style:?}: {:?}", checker.last);
        assert!(
            checker.last["B"] >= 30 && checker.last["C"] >= 30,
            "{style:?}"
        );
        assert_eq!(upstream.connections(), 2, "{style:?}: one re-pack");
        pool.close().await;
    }
}
