//! A topic's fallback upstream while this instance cannot reach NATS.
//!
//! An owner that cannot renew its lease gives its upstream up at the fence
//! (it cannot tell "NATS is down for all" from "I alone am cut off", and
//! two owners must never overlap). Its subscribers, and those of every
//! instance that cannot hear the owner through the log, would get nothing
//! until NATS is back. So, once NATS has been out of reach for a lease's
//! time, an instance opens an upstream of its own for each topic it has
//! subscribers of, at most `cluster.fallback_max_streams`, resumed after the
//! last upstream event its subscribers got, and feeds its followers from
//! it.
//!
//! Those events are not in the log, so they have no position: the hub
//! gives them ids that no instance resumes from (a reset, never a wrong
//! event). When NATS is back and the topic has an owner again, the fallback
//! closes; the new owner resumes the upstream after the log's last event,
//! so the log gets the events the fallback delivered, and the followers
//! skip them by their upstream ids (`RecentIds`): nothing twice, nothing
//! lost, as far as the upstream replays.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sse_conn_pool::{Connector, Pool, StreamItem};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::interest::Interest;
use crate::metrics;

/// A running fallback upstream; [`Fallback::stop`] closes it. Dropped, it
/// ends its task (the upstream lingers in the pool) and frees its slot.
pub(crate) struct Fallback {
    task: JoinHandle<()>,
    _slot: Slot,
}

/// One of the `fallback_max_streams` slots, held.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        let left = self.0.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::record_fallbacks(left);
    }
}

impl Drop for Fallback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fallback {
    /// Opens `interest`'s topic in `pool`, resumed after the last upstream
    /// id its followers delivered, if one of `max` slots is free.
    pub(crate) fn start<C: Connector>(
        pool: &Pool<C>,
        interest: &Arc<Interest>,
        slots: &Arc<AtomicUsize>,
        max: usize,
    ) -> Option<Self> {
        let taken = slots.fetch_add(1, Ordering::SeqCst);
        if taken >= max {
            slots.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        metrics::record_fallbacks(taken + 1);
        let slot = Slot(slots.clone());
        let topic = interest.topic.clone();
        let resume = {
            let mut delivered = interest.delivered.lock();
            delivered.log_resumed = false;
            delivered.last_id.clone()
        };
        let resume = resume.as_ref().map(|id| id.as_str());
        let upstream = match pool.subscribe_from(&topic, resume) {
            Ok(upstream) => upstream,
            Err(e) => {
                tracing::warn!(%topic, error = %e, "fallback: the local pool refused the topic");
                drop(slot);
                return None;
            }
        };
        tracing::warn!(%topic, resume = resume.unwrap_or(""), "NATS out of reach: fallback upstream opened for this instance's subscribers");
        let interest = interest.clone();
        let task = tokio::spawn(async move {
            let mut upstream = upstream;
            loop {
                match upstream.recv().await {
                    Ok(StreamItem::Event(event)) => {
                        // Under the follower's lock: once the log has
                        // taken over, nothing more from here (it could
                        // repeat, or come after, what the log gave).
                        let mut delivered = interest.delivered.lock();
                        if delivered.log_resumed {
                            tracing::info!(topic = %interest.topic, "fallback: the log has taken over");
                            return;
                        }
                        if !event.id.is_empty() {
                            delivered.delivered_by_fallback(&event.id);
                        }
                        interest.send(StreamItem::Event(event));
                    }
                    Ok(StreamItem::Status(status)) if status.terminal => {
                        tracing::info!(topic = %interest.topic, reason = %status.reason, "fallback: the upstream stopped");
                        return;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // Events lost between the pool and this task: the
                        // subscribers are told (a reset), never silently.
                        tracing::warn!(topic = %interest.topic, missed = n, "fallback: fell behind its upstream");
                        interest.send(StreamItem::Missed {
                            resumes_after: interest.followed.load(Ordering::Relaxed),
                        });
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        tracing::info!(topic = %interest.topic, "fallback: the upstream closed");
                        return;
                    }
                }
            }
        });
        Some(Self { task, _slot: slot })
    }

    /// The log took over (or the upstream ended): nothing more comes from
    /// here, and the upstream may close.
    pub(crate) fn finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Closes the fallback upstream now (no linger).
    pub(crate) async fn stop<C: Connector>(mut self, pool: &Pool<C>, topic: &str) {
        self.task.abort();
        let _ = (&mut self.task).await;
        pool.stop_idle(topic).await;
        drop(self);
        tracing::info!(%topic, "fallback upstream closed: the topic has an owner again");
    }
}
