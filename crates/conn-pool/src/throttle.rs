//! A pool-wide limit on connection attempts, so that an outage cannot turn
//! into a reconnect storm: at most `max_concurrent` attempts at once, and at
//! most `per_second` started per second (a token bucket).
//!
//! The limit is taken in [`Connector::ready`], which the pool's streams
//! await before opening a socket; their connect deadline starts once it is
//! granted. (Calling [`Connector::connect`] directly bypasses it.)

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use std::future::Future;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::connector::{Connector, Ready, Target};

/// Limits on connection attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct AttemptLimits {
    /// Attempts in progress at once (DNS, TCP, TLS). Default 64.
    pub max_concurrent: usize,
    /// Attempts started per second, on average. Default 200: the 200
    /// streams of a restarted upstream are all back within their spread
    /// plus a second, and no 100 ms holds more than 20 new sockets.
    pub per_second: f64,
    /// Attempts that may start back to back before the rate applies
    /// (a cold start). Default 50.
    pub burst: u32,
}

impl Default for AttemptLimits {
    fn default() -> Self {
        Self {
            max_concurrent: 64,
            per_second: 200.0,
            burst: 50,
        }
    }
}

/// Wraps a connector so that every connect waits for the limits. Clones
/// share them: give every stream of a pool a clone of one `Throttled`.
#[derive(Debug, Clone)]
pub struct Throttled<C> {
    inner: C,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    concurrent: Arc<Semaphore>,
    limits: AttemptLimits,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl<C: Connector> Throttled<C> {
    /// `inner`, limited by `limits` (a rate of zero or less means one attempt
    /// per second; a concurrency of zero means one).
    pub fn new(inner: C, limits: AttemptLimits) -> Self {
        let limits = AttemptLimits {
            max_concurrent: limits.max_concurrent.max(1),
            per_second: if limits.per_second.is_finite() && limits.per_second > 0.0 {
                limits.per_second
            } else {
                1.0
            },
            burst: limits.burst.max(1),
        };
        Self {
            inner,
            shared: Arc::new(Shared {
                concurrent: Arc::new(Semaphore::new(limits.max_concurrent)),
                limits,
                bucket: Mutex::new(Bucket {
                    tokens: f64::from(limits.burst),
                    refilled: Instant::now(),
                }),
            }),
        }
    }

    /// Takes a token, or says how long until one is available.
    fn try_take(&self) -> Result<(), Duration> {
        let mut bucket = self.shared.bucket.lock();
        let now = Instant::now();
        let limits = self.shared.limits;
        let refill =
            now.saturating_duration_since(bucket.refilled).as_secs_f64() * limits.per_second;
        bucket.tokens = (bucket.tokens + refill).min(f64::from(limits.burst));
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / limits.per_second,
            ))
        }
    }
}

impl<C: Connector> Connector for Throttled<C> {
    type Io = C::Io;

    fn connect(&self, target: &Target) -> impl Future<Output = std::io::Result<Self::Io>> + Send {
        self.inner.connect(target)
    }

    fn negotiated_h2(&self, io: &Self::Io) -> bool {
        self.inner.negotiated_h2(io)
    }

    /// One of `max_concurrent` attempts, started within the rate: waiters
    /// are served in order (tokio's semaphore is fair).
    async fn ready(&self) -> Ready {
        // The semaphore is never closed: acquiring cannot fail.
        let permit = self.shared.concurrent.clone().acquire_owned().await.ok();
        while let Err(wait) = self.try_take() {
            tokio::time::sleep(wait).await;
        }
        Ready::holding(permit)
    }
}
