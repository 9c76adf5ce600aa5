//! The seam between a gateway and where a topic's events come from.
//!
//! A [`Source`] hands out [`Subscription`]s by topic. The local [`Pool`] is
//! one: it opens (or shares) the topic's upstream stream, numbers nothing,
//! and forgets everything with the process. A cluster (`sse-cluster`) is
//! another: an instance somewhere owns the upstream and stores its events
//! in a log; a subscription follows the log, every event numbered by its
//! place in it ([`StreamItem::Sequenced`]), so a client can resume from any
//! instance. The gateway (`sse-bridge`) depends on this trait only; the
//! binary chooses.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::connector::Connector;
use crate::pool::{Pool, PoolError};
#[cfg(doc)]
use crate::stream::StreamItem;
use crate::subscription::Subscription;
use sse_parser::Event;

/// A boxed future, as a trait object's method returns one.
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// With the next event.
    Now,
    /// After this position, of a source that numbers its events (a
    /// resume). A source that does not treats it as `Now`.
    After(u64),
}

/// A subscription, and where it starts.
#[derive(Debug)]
pub struct Opened {
    /// The items of the topic.
    pub subscription: Subscription,
    /// For a source that numbers its events, the position the first event
    /// follows: every event after it comes, in order, unless a
    /// [`StreamItem::Missed`] says otherwise. `None` for the pool.
    pub after: Option<u64>,
}

/// Where the events of a topic come from.
pub trait Source: Send + Sync + 'static {
    /// Subscribes to `topic` from `from`. Dropping the subscription
    /// releases it. May wait for room as [`Pool::subscribe_or_wait`] does.
    ///
    /// # Errors
    ///
    /// As the pool's: an invalid topic, the cap reached (cluster-wide for a
    /// cluster), a topic the upstream refused, the source closed.
    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        from: From,
    ) -> SourceFuture<'a, Result<Opened, PoolError>>;

    /// The token that scopes this source's positions, for a source that
    /// numbers its events: it names the event log, so a position with
    /// another token is not one of its positions. `None` for the pool.
    fn positions(&self) -> Option<Arc<str>> {
        None
    }

    /// The events of `topic` after position `after` up to position
    /// `until` (inclusive), numbered, in order, if the source numbers its
    /// events, still keeps all of them, and none is missing between
    /// (otherwise `None`): a client resuming from before what the gateway
    /// holds in memory continues from the source's log. The pool keeps no
    /// log: `None`.
    fn history<'a>(
        &'a self,
        topic: &'a str,
        after: u64,
        until: u64,
    ) -> SourceFuture<'a, Option<Vec<(u64, Event)>>> {
        let _ = (topic, after, until);
        Box::pin(std::future::ready(None))
    }
}

impl<C: Connector> Source for Pool<C> {
    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        _from: From,
    ) -> SourceFuture<'a, Result<Opened, PoolError>> {
        Box::pin(async move {
            Ok(Opened {
                subscription: self.subscribe_or_wait(topic).await?,
                after: None,
            })
        })
    }
}
