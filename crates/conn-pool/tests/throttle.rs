//! The attempt limiter in paused time: concurrency and rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sse_conn_pool::{AttemptLimits, Connector, Target, Throttled};
use tokio::time::Instant;

/// A connector whose attempts take one second and are recorded.
#[derive(Clone, Default)]
struct Slow {
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    starts: Arc<Mutex<Vec<Instant>>>,
}

impl Connector for Slow {
    type Io = hyper_util::rt::TokioIo<tokio::io::DuplexStream>;

    async fn connect(&self, _: &Target) -> std::io::Result<Self::Io> {
        self.starts.lock().push(Instant::now());
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        // Paused time (paused tests): a connect that takes a second of virtual time.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }
}

/// One attempt as the pool's streams make it: the limiter's turn, then the
/// connect.
async fn attempt<C: Connector>(connector: &C) -> std::io::Result<C::Io> {
    let _ready = connector.ready().await;
    connector.connect(&target()).await
}

fn target() -> Target {
    Target {
        scheme: "http".into(),
        host: "upstream.test".into(),
        port: 80,
    }
}

#[tokio::test(start_paused = true)]
async fn an_outage_cannot_become_a_reconnect_storm() {
    let slow = Slow::default();
    let limits = AttemptLimits {
        max_concurrent: 3,
        per_second: 5.0,
        burst: 5,
    };
    let throttled = Throttled::new(slow.clone(), limits);
    let start = Instant::now();
    let attempts: Vec<_> = (0..40)
        .map(|_| {
            let c = throttled.clone();
            tokio::spawn(async move { attempt(&c).await.is_err() })
        })
        .collect();
    for attempt in attempts {
        assert!(attempt.await.unwrap());
    }
    assert_eq!(
        slow.max_in_flight.load(Ordering::SeqCst),
        3,
        "never more than 3 at once"
    );
    let starts = slow.starts.lock().clone();
    assert_eq!(starts.len(), 40);
    // Over any window the starts stay under burst + rate x window.
    for (i, a) in starts.iter().enumerate() {
        for b in &starts[i..] {
            let window = (*b - *a).as_secs_f64();
            let in_window = starts.iter().filter(|t| **t >= *a && **t <= *b).count() as f64;
            assert!(
                in_window <= 5.0 + 5.0 * window + 1e-9,
                "{in_window} starts in {window}s"
            );
        }
    }
    // 40 attempts of 1 s each, 3 at a time: at least 13 s; the rate allows 5/s.
    assert!(Instant::now() - start >= Duration::from_secs(13));
}

#[tokio::test(start_paused = true)]
async fn nonsense_limits_are_made_safe() {
    let slow = Slow::default();
    let throttled = Throttled::new(
        slow.clone(),
        AttemptLimits {
            max_concurrent: 0,
            per_second: f64::NAN,
            burst: 0,
        },
    );
    for _ in 0..3 {
        assert!(attempt(&throttled).await.is_err());
    }
    assert_eq!(slow.max_in_flight.load(Ordering::SeqCst), 1);
}
