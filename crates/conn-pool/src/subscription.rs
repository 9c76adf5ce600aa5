//! A subscription to a topic, from the pool or another [`Source`]: the
//! items of the topic, and a guard that releases what the subscription
//! holds when it is dropped.
//!
//! [`Source`]: crate::Source

use std::sync::{Arc, Weak};

use tokio::sync::broadcast;

use crate::stream::StreamItem;

/// What a pool subscription's guard calls back into, without the
/// connector type.
pub(crate) trait Release: Send + Sync {
    fn release(self: Arc<Self>, topic: &Arc<str>);
}

/// A subscription to one topic's stream. Dropping it releases the topic.
pub struct Subscription {
    pub(crate) rx: broadcast::Receiver<StreamItem>,
    pub(crate) _guard: Guard,
}

impl Subscription {
    /// A subscription fed by another source (see [`Source`](crate::Source)):
    /// it yields what `rx` receives, and dropping it drops `guard` (which
    /// releases whatever the source holds for it).
    pub fn new(rx: broadcast::Receiver<StreamItem>, guard: impl Send + Sync + 'static) -> Self {
        Self {
            rx,
            _guard: Guard::Other(Box::new(guard)),
        }
    }

    /// The next item. `Err(Lagged(n))`: this subscriber fell behind and
    /// missed `n` items; the next call continues with the oldest kept.
    ///
    /// # Errors
    ///
    /// Lagging, or the stream ended (`Closed`).
    pub async fn recv(&mut self) -> Result<StreamItem, broadcast::error::RecvError> {
        self.rx.recv().await
    }

    /// The next item if one is waiting, without waiting.
    ///
    /// # Errors
    ///
    /// Nothing is waiting (`Empty`), lagging, or the stream ended.
    pub fn try_recv(&mut self) -> Result<StreamItem, broadcast::error::TryRecvError> {
        self.rx.try_recv()
    }
}

pub(crate) enum Guard {
    /// A pool subscription: released into the pool.
    Pool {
        pool: Weak<dyn Release>,
        topic: Arc<str>,
    },
    /// Another source's: its own drop releases it.
    Other(#[allow(dead_code)] Box<dyn Send + Sync>),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Self::Pool { pool, topic } = self
            && let Some(pool) = pool.upgrade()
        {
            pool.release(topic);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}
