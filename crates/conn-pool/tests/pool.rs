//! The pool over an in-memory upstream in paused time: sharing, RAII
//! release, the idle linger, the cap, topic validation, close.

mod common;

use common::Ticks;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use sse_conn_pool::{
    Connector, Pool, PoolConfig, PoolError, StreamInfo, StreamItem, Subscription, Target,
};
use sse_state_machine::Phase;

/// An upstream in memory: every connection streams one event per second
/// (virtual), counting connections opened and open.
#[derive(Clone, Default)]
struct Ticking {
    opened: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    paths: Arc<parking_lot::Mutex<Vec<String>>>,
}

impl Connector for Ticking {
    type Io = TokioIo<tokio::io::DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let (open, paths) = (self.open.clone(), self.paths.clone());
        Ok(common::serve_in_memory(move |req| {
            paths.lock().push(req.uri().to_string());
            // The first event after 100 ms, then one a second.
            Ticks::new(
                Duration::from_millis(100),
                Duration::from_secs(1),
                Some(open.clone()),
            )
        }))
    }
}

fn config() -> PoolConfig {
    let mut config = PoolConfig::new("http://upstream.test/v1/quotes/{topic}/stream");
    config.max_streams = 2;
    config.idle_linger = Duration::from_secs(300);
    config
}

async fn next_event(sub: &mut Subscription) -> u64 {
    loop {
        let item = tokio::time::timeout(Duration::from_secs(3600), sub.recv())
            .await
            .expect("an item within a virtual hour")
            .expect("the stream is open");
        if let StreamItem::Event(event) = item {
            return event.id.parse().expect("numeric id");
        }
    }
}

/// Lets spawned tasks run (and paused time advance) for `d`.
async fn wait(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn subscribers_of_a_topic_share_one_upstream_connection() {
    let upstream = Ticking::default();
    let pool = Pool::new(config(), upstream.clone()).unwrap();
    let mut a = pool.subscribe("AAPL").unwrap();
    let mut b = pool.subscribe("AAPL").unwrap();
    let first_a = next_event(&mut a).await;
    let first_b = next_event(&mut b).await;
    assert_eq!(first_a, first_b, "both see the same events");
    assert_eq!(upstream.opened.load(Ordering::SeqCst), 1);
    assert_eq!(upstream.paths.lock().as_slice(), ["/v1/quotes/AAPL/stream"]);
    let snapshot = pool.snapshot();
    let [
        StreamInfo {
            topic,
            subscribers: 2,
            lingering: false,
            route: None,
            state,
        },
    ] = &snapshot[..]
    else {
        panic!("one shared stream: {snapshot:?}");
    };
    assert_eq!(topic, "AAPL");
    assert_eq!(
        (state.phase, state.attempts, state.opened),
        (Phase::Open, 1, 1)
    );
    assert!(state.events >= 1 && state.bytes > 0);
    assert_eq!(state.last_event_id, first_a.to_string());
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_subscription_releases_the_stream_after_the_linger() {
    let upstream = Ticking::default();
    let pool = Pool::new(config(), upstream.clone()).unwrap();
    let mut a = pool.subscribe("MSFT").unwrap();
    next_event(&mut a).await;
    drop(a);
    assert!(pool.snapshot()[0].lingering);
    // Back within the linger: the same connection serves it.
    wait(Duration::from_secs(200)).await;
    let mut b = pool.subscribe("MSFT").unwrap();
    next_event(&mut b).await;
    assert_eq!(upstream.opened.load(Ordering::SeqCst), 1);
    assert!(!pool.snapshot()[0].lingering);
    // Gone for longer than the linger: released, upstream closed.
    drop(b);
    wait(Duration::from_secs(299)).await;
    assert_eq!(pool.snapshot().len(), 1, "not before the linger ends");
    wait(Duration::from_secs(2)).await;
    assert!(pool.snapshot().is_empty());
    wait(Duration::from_millis(10)).await;
    assert_eq!(
        upstream.open.load(Ordering::SeqCst),
        0,
        "the upstream connection is closed"
    );
    // The counts the soak conserves: one stream created and removed.
    let counts = pool.counts();
    assert_eq!((counts.created, counts.removed, counts.streams), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn counts_are_conserved_through_subscribe_linger_and_close() {
    let pool = Pool::new(config(), Ticking::default()).unwrap();
    let conserved = |pool: &Pool<Ticking>| {
        let c = pool.counts();
        assert_eq!(c.created - c.removed, c.streams as u64, "{c:?}");
        c
    };
    let a = pool.subscribe("A").unwrap();
    let b = pool.subscribe("A").unwrap();
    let c = pool.subscribe("B").unwrap();
    let counts = conserved(&pool);
    assert_eq!((counts.streams, counts.subscribers), (2, 3));
    drop((a, b));
    wait(Duration::from_secs(301)).await;
    let counts = conserved(&pool);
    assert_eq!(
        (counts.streams, counts.subscribers, counts.removed),
        (1, 1, 1)
    );
    pool.close().await;
    drop(c);
    let counts = conserved(&pool);
    assert_eq!((counts.created, counts.removed, counts.streams), (2, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_consumer_still_releases_its_subscription() {
    let upstream = Ticking::default();
    let pool = Pool::new(config(), upstream.clone()).unwrap();
    let mut sub = pool.subscribe("GOOG").unwrap();
    let consumer = tokio::spawn(async move {
        next_event(&mut sub).await;
        panic!("the consumer fails");
    });
    assert!(consumer.await.is_err());
    assert_eq!(pool.snapshot()[0].subscribers, 0);
    assert!(pool.snapshot()[0].lingering);
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn f12_the_cap_refuses_clearly_and_frees_after_release() {
    let baseline = alive_tasks();
    let upstream = Ticking::default();
    let pool = Pool::new(config(), upstream.clone()).unwrap();
    let a = pool.subscribe("A").unwrap();
    let _b = pool.subscribe("B").unwrap();
    let err = pool.subscribe("C").expect_err("at capacity");
    assert_eq!(
        err,
        PoolError::AtCapacity {
            limit: 2,
            retry_after: Duration::from_secs(300)
        }
    );
    assert_eq!(pool.snapshot().len(), 2, "nothing half-created");
    // Joining an existing stream is always fine.
    let _a2 = pool.subscribe("A").unwrap();
    drop(a);
    drop(_a2);
    wait(Duration::from_secs(301)).await;
    let c = pool.subscribe("C").expect("A's slot was released");
    assert!(upstream.opened.load(Ordering::SeqCst) <= 3);
    assert!(pool.snapshot().len() <= 2, "active never above the cap");
    drop((c, _b));
    wait(Duration::from_secs(301)).await;
    assert_baseline(&pool, &upstream, baseline).await;
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_topics_never_reach_a_url() {
    let upstream = Ticking::default();
    let pool = Pool::new(config(), upstream.clone()).unwrap();
    for topic in [
        "",
        "..",
        "a/b",
        "../../etc",
        "a b",
        "a?x=1",
        "é",
        &"x".repeat(65),
    ] {
        assert!(
            matches!(pool.subscribe(topic), Err(PoolError::InvalidTopic(_))),
            "{topic:?}"
        );
    }
    assert_eq!(upstream.opened.load(Ordering::SeqCst), 0);
    assert!(
        Pool::new(
            PoolConfig::new("http://upstream.test/no-placeholder"),
            upstream.clone()
        )
        .is_err()
    );
    assert!(Pool::new(PoolConfig::new("/relative/{topic}"), upstream).is_err());
}

#[tokio::test(start_paused = true)]
async fn close_ends_everything_and_is_idempotent() {
    let upstream = Ticking::default();
    let pool = Pool::new(config(), upstream.clone()).unwrap();
    let mut a = pool.subscribe("A").unwrap();
    next_event(&mut a).await;
    pool.close().await;
    pool.close().await;
    assert_eq!(pool.subscribe("A").err(), Some(PoolError::Closed));
    assert!(pool.snapshot().is_empty());
    wait(Duration::from_millis(10)).await;
    assert_eq!(upstream.open.load(Ordering::SeqCst), 0);
    // The old subscription sees the end, and dropping it is harmless.
    loop {
        match tokio::time::timeout(Duration::from_secs(60), a.recv()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => break,
            Err(_) => panic!("the subscription never ended"),
        }
    }
    drop(a);
}

/// A small deterministic generator for the stress test's timing.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(start_paused = true)]
async fn stress_ten_thousand_cycles_over_a_hundred_topics_leave_nothing_behind() {
    let baseline_tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let upstream = Ticking::default();
    let mut config = config();
    config.max_streams = 100;
    config.max_streams_per_host = 100;
    config.idle_linger = Duration::from_secs(2);
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let mut held: Vec<Option<Subscription>> = (0..100).map(|_| None).collect();
    let mut rng = Lcg(7);
    for cycle in 0..10_000 {
        let key = usize::try_from(rng.next(100)).expect("below 100");
        match held[key].take() {
            // Unsubscribe (drop) half the time a subscription is held.
            Some(sub) if rng.next(2) == 0 => drop(sub),
            Some(sub) => held[key] = Some(sub),
            None => held[key] = Some(pool.subscribe(&format!("T{key}")).expect("under the cap")),
        }
        if cycle % 50 == 0 {
            wait(Duration::from_millis(rng.next(3000))).await;
        }
    }
    // Everyone leaves; after the linger nothing is left.
    held.clear();
    wait(Duration::from_secs(3)).await;
    assert!(
        pool.snapshot().is_empty(),
        "entries left: {:?}",
        pool.snapshot()
    );
    wait(Duration::from_millis(50)).await;
    assert_eq!(
        upstream.open.load(Ordering::SeqCst),
        0,
        "upstream connections left"
    );
    pool.close().await;
    drop(pool);
    wait(Duration::from_millis(50)).await;
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert!(
        tasks <= baseline_tasks,
        "tasks left: {tasks} (baseline {baseline_tasks})"
    );
    println!(
        "{} upstream connections opened over 10,000 cycles",
        upstream.opened.load(Ordering::SeqCst)
    );
}

/// Asserts the pool is back to baseline: no entry, no upstream connection,
/// no socket or registry entry, and no task beyond `baseline_tasks`.
async fn assert_baseline<C: Connector>(pool: &Pool<C>, upstream: &Ticking, baseline_tasks: usize) {
    wait(Duration::from_millis(50)).await;
    assert!(pool.snapshot().is_empty(), "entries: {:?}", pool.snapshot());
    assert_eq!(
        upstream.open.load(Ordering::SeqCst),
        0,
        "upstream connections"
    );
    assert_eq!(pool.connections().open_sockets(), 0, "sockets");
    assert_eq!(pool.connections().hosts(), 0, "socket registry entries");
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert!(
        tasks <= baseline_tasks,
        "tasks: {tasks} (baseline {baseline_tasks})"
    );
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn f12_a_bounded_wait_gets_a_freed_slot_or_a_clear_error() {
    let baseline = alive_tasks();
    let upstream = Ticking::default();
    let mut config = config();
    config.idle_linger = Duration::from_secs(5);
    config.pending_wait = Duration::from_secs(10);
    config.max_pending = 1;
    let pool = Pool::new(config, upstream.clone()).unwrap();
    let a = pool.subscribe("A").unwrap();
    let b = pool.subscribe("B").unwrap();

    // Nobody leaves: the wait ends with AtCapacity after exactly 10 s.
    let started = tokio::time::Instant::now();
    let err = pool.subscribe_or_wait("C").await.err();
    assert!(
        matches!(err, Some(PoolError::AtCapacity { limit: 2, .. })),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));

    // A leaves; its slot frees after the 5 s linger and the waiter gets it.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.subscribe_or_wait("C").await })
    };
    wait(Duration::from_millis(1)).await;
    // The queue holds one: a second waiter is refused at once.
    let started = tokio::time::Instant::now();
    assert_eq!(
        pool.subscribe_or_wait("D").await.err(),
        Some(PoolError::QueueFull { limit: 1 })
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    drop(a);
    let mut c = waiter.await.unwrap().expect("the freed slot");
    next_event(&mut c).await;
    let topics: Vec<String> = pool.snapshot().into_iter().map(|s| s.topic).collect();
    assert_eq!(topics, ["B", "C"]);

    // A waiter learns at once that the pool closed.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.subscribe_or_wait("E").await })
    };
    wait(Duration::from_millis(1)).await;
    pool.close().await;
    assert_eq!(waiter.await.unwrap().err(), Some(PoolError::Closed));
    drop((b, c));
    assert_baseline(&pool, &upstream, baseline).await;
}

/// An upstream whose connects take `delay` (virtual time).
#[derive(Clone, Default)]
struct Slow {
    inner: Ticking,
    delay: Duration,
}

impl Connector for Slow {
    type Io = <Ticking as Connector>::Io;

    async fn connect(&self, target: &Target) -> std::io::Result<Self::Io> {
        // Paused time (a paused test): a slow connect costs the test nothing.
        tokio::time::sleep(self.delay).await;
        self.inner.connect(target).await
    }
}

#[tokio::test(start_paused = true)]
async fn f17_start_stop_races_leave_nothing_behind() {
    let baseline = alive_tasks();
    let slow = Slow {
        inner: Ticking::default(),
        delay: Duration::from_secs(2),
    };
    let mut config = config();
    config.idle_linger = Duration::from_millis(500);
    config.max_streams = 10;
    let pool = Pool::new(config, slow.clone()).unwrap();

    // A connect still in flight when the topic empties and its linger ends.
    drop(pool.subscribe("A").unwrap());
    wait(Duration::from_secs(1)).await;
    assert!(
        pool.snapshot().is_empty(),
        "released before its connect finished"
    );
    wait(Duration::from_secs(3)).await;
    assert_eq!(
        slow.inner.open.load(Ordering::SeqCst),
        0,
        "the late connect left nothing"
    );

    // Subscribe and release interleaved with close, from several tasks.
    let mut tasks = Vec::new();
    for i in 0u64..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0u64..20 {
                match pool.subscribe(&format!("T{}", (i + round) % 5)) {
                    Ok(sub) => {
                        // Paused time (a paused test): the holds interleave deterministically.
                        tokio::time::sleep(Duration::from_millis(round * 37 % 300)).await;
                        drop(sub);
                    }
                    Err(PoolError::Closed) => return,
                    Err(e) => panic!("unexpected {e}"),
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    wait(Duration::from_millis(700)).await;
    // Close twice at once, and once more after: idempotent.
    let (p1, p2) = (pool.clone(), pool.clone());
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move { p1.close().await }),
        tokio::spawn(async move { p2.close().await })
    );
    r1.unwrap();
    r2.unwrap();
    pool.close().await;
    for task in tasks {
        task.await.unwrap();
    }
    // Subscribing after close is refused and creates nothing.
    assert_eq!(pool.subscribe("Z").err(), Some(PoolError::Closed));
    wait(Duration::from_secs(5)).await;
    assert_baseline(&pool, &slow.inner, baseline).await;
}

#[tokio::test(start_paused = true)]
async fn named_streams_reach_their_urls_and_each_host_has_a_cap() {
    let baseline = alive_tasks();
    let upstream = Ticking::default();
    let mut config = PoolConfig::new("");
    config.named = [
        ("quotes", "http://feed-a.test/v1/quotes/stream"),
        ("trades", "http://feed-a.test/v1/trades/stream"),
        ("news", "https://feed-b.test:8443/news?lang=en"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    config.max_streams_per_host = 1;
    config.max_streams = 10;
    let pool = Pool::new(config, upstream.clone()).unwrap();

    let mut quotes = pool.subscribe("quotes").unwrap();
    next_event(&mut quotes).await;
    assert_eq!(
        pool.subscribe("trades").err(),
        Some(PoolError::HostAtCapacity {
            limit: 1,
            retry_after: Duration::from_secs(300)
        }),
        "feed-a already has its one stream"
    );
    let mut news = pool.subscribe("news").unwrap();
    next_event(&mut news).await;
    assert_eq!(
        pool.subscribe("AAPL").err(),
        Some(PoolError::UnknownStream("AAPL".into())),
        "no template: only the named streams exist"
    );
    let paths = upstream.paths.lock().clone();
    assert_eq!(paths, ["/v1/quotes/stream", "/news?lang=en"]);
    assert_eq!(pool.snapshot().len(), 2, "nothing half-created");
    drop((quotes, news));
    wait(Duration::from_secs(301)).await;
    assert_baseline(&pool, &upstream, baseline).await;
    pool.close().await;

    // Configuration errors are clear.
    let mut bad = PoolConfig::new("");
    assert!(
        Pool::new(bad.clone(), upstream.clone()).is_err(),
        "nothing configured"
    );
    bad.named.insert("a/b".into(), "http://x.test/".into());
    assert!(
        Pool::new(bad.clone(), upstream.clone()).is_err(),
        "invalid name"
    );
    bad.named.clear();
    bad.named.insert("ok".into(), "ftp://x.test/".into());
    assert!(
        Pool::new(bad, upstream.clone()).is_err(),
        "not an http(s) URL"
    );
    assert!(
        Pool::new(PoolConfig::new("http://{topic}.feed.test/stream"), upstream).is_err(),
        "the host never comes from the topic"
    );
}
