//! Waiting: for a slot at the cap ([`Pool::subscribe_or_wait`]), and for
//! a stream's first answer ([`Pool::first_answer`]).

use std::future::Future;

use sse_state_machine::Phase;

use crate::connector::Connector;
use crate::error::PoolError;
use crate::metrics;
use crate::pool::{Pool, stopped_for_good};
use crate::subscription::Subscription;

impl<C: Connector> Pool<C> {
    /// Resolves when the stream of `topic` has its first answer from the
    /// upstream: open (or retrying after a failure), or stopped for good
    /// (`Err(Stopped)`). `None` if the pool has no stream for `topic`.
    pub fn first_answer(
        &self,
        topic: &str,
    ) -> Option<impl Future<Output = Result<(), PoolError>> + Send + 'static> {
        let mut state = self.watch_of(topic)?;
        let topic = topic.to_string();
        let ttl = self.config().negative_ttl;
        Some(async move {
            let answered = state
                .wait_for(|s| {
                    !matches!(s.phase, Phase::Idle | Phase::Connecting) || s.attempts >= 2
                })
                .await
                .map(|s| stopped_for_good(&s));
            match answered {
                Ok(Some(reason)) => Err(PoolError::Stopped {
                    topic,
                    reason,
                    retry_after: ttl,
                }),
                _ => Ok(()),
            }
        })
    }

    /// Like [`subscribe`](Self::subscribe), but at the cap waits up to
    /// `pending_wait` for a slot (a stream released after its linger), as one
    /// of at most `max_pending` waiters. Never waits longer.
    ///
    /// # Errors
    ///
    /// As `subscribe`; `AtCapacity` once the wait is over, `QueueFull` at
    /// once when too many wait already.
    pub async fn subscribe_or_wait(&self, topic: &str) -> Result<Subscription, PoolError> {
        use std::sync::atomic::Ordering;
        let config = self.config();
        let deadline = tokio::time::Instant::now() + config.pending_wait;
        let mut queued: Option<Pending<'_>> = None;
        loop {
            // Registered before trying, so a slot freed in between wakes us.
            let freed = self.slot_freed().notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.subscribe(topic) {
                Err(PoolError::AtCapacity { .. }) if tokio::time::Instant::now() < deadline => {}
                other => return other,
            }
            if queued.is_none() {
                let waiting = self.waiters().fetch_add(1, Ordering::SeqCst) + 1;
                let entry = Pending(self.waiters());
                if waiting > config.max_pending {
                    drop(entry);
                    metrics::record_refused("queue_full");
                    return Err(PoolError::QueueFull {
                        limit: config.max_pending,
                    });
                }
                metrics::record_pending(waiting);
                queued = Some(entry);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                // One last try: the slot may have freed at the deadline.
                return self.subscribe(topic);
            }
        }
    }
}

/// One waiter in the pending queue; leaves it on every path.
struct Pending<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        let left = self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) - 1;
        metrics::record_pending(left);
    }
}
