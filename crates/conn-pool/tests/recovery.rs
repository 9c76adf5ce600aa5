//! Recovery with the shipped defaults, on paused time: a lost stream comes
//! back at once (F25), the streams of a restarted upstream come back spread
//! out yet within their spread plus two seconds, each on its first attempt,
//! and time spent waiting for the attempt limiter is never a connect
//! timeout (issue 14, items 12 and 14).

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use sse_conn_pool::{
    AttemptLimits, Connections, Connector, Pool, PoolConfig, StreamItem, Subscription, Target,
    Throttled,
};
use sse_state_machine::{FailureKind, Reason, TimeoutKind};
use tokio::io::DuplexStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// Each connect takes this long (virtual): a nearby upstream.
const CONNECT: Duration = Duration::from_millis(5);
/// An event per topic this often.
const TICK: Duration = Duration::from_millis(50);

/// An in-memory upstream that can restart: every open stream ends at once,
/// and connections are refused for the downtime.
#[derive(Clone)]
struct Upstream {
    kick: Arc<watch::Sender<u64>>,
    down_until: Arc<Mutex<Option<Instant>>>,
    /// When each connect was attempted, and whether it was refused.
    attempts: Arc<Mutex<Vec<(Instant, bool)>>>,
}

impl Upstream {
    fn new() -> Self {
        Self {
            kick: Arc::new(watch::channel(0).0),
            down_until: Arc::default(),
            attempts: Arc::default(),
        }
    }

    /// Ends every stream now; refuses connections for `downtime`.
    fn restart(&self, downtime: Duration) {
        *self.down_until.lock() = Some(Instant::now() + downtime);
        self.kick.send_modify(|generation| *generation += 1);
    }

    /// Attempts that reached the upstream since `since`: (accepted, refused).
    fn attempts_since(&self, since: Instant) -> (usize, usize) {
        let attempts = self.attempts.lock();
        let after = attempts.iter().filter(|(t, _)| *t >= since);
        let refused = after.clone().filter(|(_, r)| *r).count();
        (after.count() - refused, refused)
    }
}

impl Connector for Upstream {
    type Io = TokioIo<DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        // Paused time: a connect that takes virtual milliseconds.
        tokio::time::sleep(CONNECT).await;
        let down = self.down_until.lock().is_some_and(|t| Instant::now() < t);
        self.attempts.lock().push((Instant::now(), down));
        if down {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        }
        let kick = self.kick.subscribe();
        Ok(common::serve_in_memory(move |_| {
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
            let mut kick = kick.clone();
            // Events say which incarnation of the upstream sent them.
            let generation = *kick.borrow_and_update();
            tokio::spawn(async move {
                let mut id = 0u64;
                loop {
                    id += 1;
                    let event = Bytes::from(format!("id: {id}\ndata: {generation}\n\n"));
                    if tx.send(event).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        // Paused time: the upstream's pace.
                        () = tokio::time::sleep(TICK) => {}
                        // A restart ends the body.
                        _ = kick.changed() => return,
                    }
                }
            });
            common::ChannelBody(rx)
        }))
    }
}

/// A pool of up to 250 streams over `upstream` behind a limiter.
fn pool(upstream: &Upstream, limits: AttemptLimits) -> Pool<Throttled<Upstream>> {
    let mut config = PoolConfig {
        max_streams: 250,
        max_streams_per_host: 250,
        ..PoolConfig::new("http://upstream.test/{topic}")
    };
    // An HTTP/1.1 upstream: a socket per stream.
    config.stream.connections = Connections::new(250);
    Pool::new(config, Throttled::new(upstream.clone(), limits)).expect("a valid pool")
}

/// What one subscriber saw until its next event.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// When the event came.
    at: Option<Instant>,
    /// Connect deadlines that passed meanwhile.
    connect_timeouts: usize,
}

/// Waits (at most `bound`, virtual) for each subscription's next event from
/// the upstream's current incarnation (older ones may still be queued).
async fn next_events(upstream: &Upstream, subs: &mut [Subscription], bound: Duration) -> Vec<Seen> {
    let generation = upstream.kick.borrow().to_string();
    let seen = Arc::new(Mutex::new(vec![Seen::default(); subs.len()]));
    let waits = subs.iter_mut().enumerate().map(|(i, sub)| {
        let (seen, generation) = (seen.clone(), generation.clone());
        async move {
            loop {
                let item = match sub.recv().await {
                    Ok(item) => item,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                match item {
                    StreamItem::Event(event) if event.data.as_str() == generation => {
                        seen.lock()[i].at = Some(Instant::now());
                        return;
                    }
                    StreamItem::Status(status)
                        if status.reason == Reason::Failed(FailureKind::Timeout)
                            || status.reason == Reason::Timeout(TimeoutKind::Connect) =>
                    {
                        seen.lock()[i].connect_timeouts += 1;
                    }
                    _ => {}
                }
            }
        }
    });
    let all = futures_join(waits);
    let _ = tokio::time::timeout(bound, all).await;
    seen.lock().clone()
}

/// Runs every future to completion, concurrently on this task.
async fn futures_join<F: Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

fn subscribe(pool: &Pool<Throttled<Upstream>>, n: usize) -> Vec<Subscription> {
    (0..n)
        .map(|i| pool.subscribe(&format!("T{i}")).expect("within the cap"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn f25_one_lost_stream_is_back_at_once() {
    let upstream = Upstream::new();
    let pool = pool(&upstream, AttemptLimits::default());
    let mut subs = subscribe(&pool, 1);
    next_events(&upstream, &mut subs, Duration::from_secs(10)).await;
    // Ten restarts a minute apart, each quick (no downtime) or with 300 ms
    // of refusals: the next event within a second every time.
    for (round, downtime) in [0, 300, 0, 300, 0, 300, 0, 300, 0, 300]
        .into_iter()
        .enumerate()
    {
        // Paused time: a healthy minute before each restart.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let _ = next_events(&upstream, &mut subs, Duration::from_secs(1)).await;
        let restart = Instant::now();
        upstream.restart(Duration::from_millis(downtime));
        let seen = next_events(&upstream, &mut subs, Duration::from_secs(10)).await;
        let back = seen[0].at.expect("back") - restart;
        assert!(
            back < Duration::from_secs(1),
            "round {round} ({downtime} ms down): back after {back:?}"
        );
        if downtime == 0 {
            // One stream alone: within the spread step plus a connect and a tick.
            assert!(
                back < Duration::from_millis(100) + CONNECT + TICK,
                "{back:?}"
            );
        }
    }
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn two_hundred_streams_come_back_spread_out_within_spread_plus_two_seconds() {
    let upstream = Upstream::new();
    let pool = pool(&upstream, AttemptLimits::default());
    let mut subs = subscribe(&pool, 200);
    next_events(&upstream, &mut subs, Duration::from_secs(30)).await;
    // Paused time: healthy for a minute.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let _ = next_events(&upstream, &mut subs, Duration::from_secs(1)).await;
    let restart = Instant::now();
    upstream.restart(Duration::ZERO);
    let seen = next_events(&upstream, &mut subs, Duration::from_secs(30)).await;
    let spread = sse_state_machine::Config::default()
        .backoff
        .reconnect_spread;
    let mut buckets = BTreeMap::new();
    for (i, s) in seen.iter().enumerate() {
        let back = s.at.unwrap_or_else(|| panic!("stream {i} never came back")) - restart;
        assert!(
            back < spread + Duration::from_secs(2),
            "stream {i}: {back:?}"
        );
        assert_eq!(s.connect_timeouts, 0, "stream {i}");
        *buckets.entry(back.as_millis() / 100).or_insert(0usize) += 1;
    }
    // Spread out: the upstream is not hit by all 200 at once.
    let fullest = buckets.values().max().copied().unwrap_or(0);
    assert!(
        fullest <= 30,
        "a 100 ms window held {fullest} of 200: {buckets:?}"
    );
    // Each came back on its first attempt, and every attempt reached it.
    assert_eq!(upstream.attempts_since(restart), (200, 0));
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_cold_start_of_two_hundred_topics_needs_one_attempt_each() {
    let upstream = Upstream::new();
    let pool = pool(&upstream, AttemptLimits::default());
    let start = Instant::now();
    let mut subs = subscribe(&pool, 200);
    let seen = next_events(&upstream, &mut subs, Duration::from_secs(30)).await;
    let last = seen
        .iter()
        .map(|s| s.at.expect("every topic delivers") - start)
        .max()
        .unwrap_or_default();
    assert!(
        last < Duration::from_secs(2),
        "the last topic after {last:?}"
    );
    assert_eq!(upstream.attempts_since(start), (200, 0));
    pool.close().await;
}

#[tokio::test(start_paused = true)]
async fn waiting_for_the_limiter_is_never_a_connect_timeout() {
    // A strict limiter: 200 attempts take twenty seconds, four times the
    // connect deadline. None of them may time out waiting in line.
    let upstream = Upstream::new();
    let limits = AttemptLimits {
        max_concurrent: 4,
        per_second: 10.0,
        burst: 10,
    };
    let pool = pool(&upstream, limits);
    let start = Instant::now();
    let mut subs = subscribe(&pool, 200);
    let seen = next_events(&upstream, &mut subs, Duration::from_secs(60)).await;
    for (i, s) in seen.iter().enumerate() {
        assert!(s.at.is_some(), "stream {i} never delivered");
        assert_eq!(s.connect_timeouts, 0, "stream {i}");
    }
    assert_eq!(upstream.attempts_since(start), (200, 0), "one attempt each");
    pool.close().await;
}
