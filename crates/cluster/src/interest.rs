//! One topic's local state in cluster mode ([`Interest`]): its local
//! subscriptions, its owner as last seen, the followers' senders and
//! positions; the guards that count a subscription; and the follower, which
//! feeds one subscription from the event log.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use parking_lot::Mutex;
use sse_conn_pool::{Status, StreamItem};
use sse_parser::Utf8Bytes;
use sse_state_machine::{Phase, Reason, StopReason};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics;

/// Who owns a topic, as this instance last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Not known yet.
    Unknown,
    /// This instance.
    Me,
    /// Another instance, by name.
    Other(String),
    /// Nobody, and the cap is reached.
    Capped,
    /// NATS could not say.
    Unreachable,
}

/// One topic's local state.
pub(crate) struct Interest {
    pub(crate) topic: Arc<str>,
    /// Local subscriptions now, and since when there were none.
    pub(crate) local: Mutex<(usize, Option<Instant>)>,
    pub(crate) owner: Mutex<Owner>,
    /// Since when this instance owns the topic.
    pub(crate) owned_since: Mutex<Option<Instant>>,
    /// Wakes the steward when the local count changes.
    pub(crate) changed: Notify,
    /// How many events of it the log holds past what its follower read.
    pub(crate) pending: AtomicU64,
    /// The followers' senders, for a fallback upstream to feed.
    pub(crate) senders: Mutex<Vec<broadcast::Sender<StreamItem>>>,
    /// What this instance's subscribers got: one lock per event.
    pub(crate) delivered: Mutex<Delivered>,
    /// When the other owner last renewed its lease, as last seen.
    pub(crate) renewed: Mutex<Option<std::time::SystemTime>>,
    /// The newest position a follower of it delivered (for the lag).
    pub(crate) followed: AtomicU64,
}

/// The upstream side of what a topic's subscribers on this instance got.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    /// The last upstream id (a fallback resumes after it). Shared with the
    /// event: no copy per event.
    pub(crate) last_id: Option<Utf8Bytes>,
    /// Upstream ids a fallback delivered, skipped when the log has them.
    pub(crate) by_fallback: RecentIds,
    /// The follower delivered an event the fallback had not: the log has
    /// taken over, and the fallback must deliver nothing more (its next
    /// event could be one the follower gave already). Cleared when a
    /// fallback starts.
    pub(crate) log_resumed: bool,
    /// The highest number (`sse_conn_pool::id_position`) of the ids a
    /// fallback delivered, until the log passes it. A new owner fills the
    /// log from its last stored id, so after an outage the log brings what
    /// a fallback gave already, and, for subscribers that came during the
    /// outage (their fallback started live), what came before them: by
    /// number, neither goes out again.
    pub(crate) fallback_high: Option<u64>,
}

impl Delivered {
    /// A fallback delivered `id`.
    pub(crate) fn delivered_by_fallback(&mut self, id: &Utf8Bytes) {
        self.by_fallback.insert(id);
        if let Some(n) = sse_conn_pool::id_position(id) {
            self.fallback_high = Some(self.fallback_high.map_or(n, |high| high.max(n)));
        }
        self.last_id = Some(id.clone());
    }

    /// Whether the log's event `id` goes out: not when a fallback delivered
    /// it, nor when it comes before what a fallback delivered (ids that end
    /// with a number increase); then the log has taken over.
    pub(crate) fn admit_from_log(&mut self, id: &Utf8Bytes) -> bool {
        if !self.by_fallback.is_empty() && self.by_fallback.take(id) {
            return false;
        }
        if let (Some(high), Some(n)) = (self.fallback_high, sse_conn_pool::id_position(id)) {
            if n <= high {
                return false;
            }
            self.fallback_high = None;
        }
        self.last_id = Some(id.clone());
        self.log_resumed = true;
        true
    }
}

impl Interest {
    /// One local subscription fewer; the steward is told.
    pub(crate) fn leave(&self) {
        let mut local = self.local.lock();
        local.0 = local.0.saturating_sub(1);
        if local.0 == 0 {
            local.1 = Some(Instant::now());
        }
        drop(local);
        self.changed.notify_one();
    }

    /// Sends `item` to every follower of the topic (dropping senders whose
    /// subscription is gone).
    pub(crate) fn send(&self, item: StreamItem) {
        let mut senders = self.senders.lock();
        senders.retain(|tx| tx.receiver_count() > 0);
        for tx in senders.iter() {
            let _ = tx.send(item.clone());
        }
    }

    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let local = self.local.lock();
        if local.0 == 0 { local.1 } else { None }
    }
}

/// Drops a follower: its task ends, and the topic has one local
/// subscription fewer.
pub(crate) struct FollowGuard {
    pub(crate) task: JoinHandle<()>,
    pub(crate) interest: Arc<Interest>,
}

impl Drop for FollowGuard {
    fn drop(&mut self) {
        self.task.abort();
        metrics::record_followed(-1.0);
        self.interest.leave();
    }
}

/// A local count taken, given back unless handed to a follower.
pub(crate) struct LocalCount(pub(crate) Option<Arc<Interest>>);

impl Drop for LocalCount {
    fn drop(&mut self) {
        if let Some(interest) = self.0.take() {
            interest.leave();
        }
    }
}

/// A follower's events.
pub(crate) type Events = std::pin::Pin<
    Box<
        dyn futures_util::Stream<Item = Result<crate::events::Stored, crate::events::EventError>>
            + Send,
    >,
>;

/// Makes a topic's consumer again after a position (a follower's, once
/// NATS is back after an outage).
pub(crate) type Resubscribe = Box<
    dyn Fn(
            Arc<str>,
            u64,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<Events, crate::events::EventError>> + Send>,
        > + Send
        + Sync,
>;

/// Follows a topic's log after sequence `after` and sends its events to
/// the hub: checks the chain of predecessors (a break is a `Missed`),
/// skips what a fallback delivered, and makes its consumer again after its
/// last position each time NATS returns (`again`: how, and the count of
/// returns).
pub(crate) async fn follow(
    mut stream: Events,
    tx: broadcast::Sender<StreamItem>,
    after: u64,
    interest: Arc<Interest>,
    again: (Resubscribe, watch::Receiver<u64>),
) {
    let (resubscribe, mut returns) = again;
    let mut last = after;
    tracing::debug!(after, "follower: started");
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            changed = returns.changed() => {
                if changed.is_err() {
                    break;
                }
                match resubscribe(interest.topic.clone(), last).await {
                    Ok(again) => {
                        tracing::debug!(last, "follower: NATS is back; consumer made again");
                        stream = again;
                    }
                    // The ordered consumer goes on trying by itself.
                    Err(e) => tracing::debug!(error = %e, "follower: making the consumer again"),
                }
                continue;
            }
        };
        let Some(stored) = next else { break };
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                // The ordered consumer re-creates itself after a loss of
                // the server; a malformed message is skipped.
                tracing::debug!(error = %e, "following the event log");
                continue;
            }
        };
        if stored.sequence <= last {
            continue;
        }
        tracing::trace!(sequence = stored.sequence, previous = ?stored.previous, "follower: event");
        if stored.previous.is_some_and(|p| p != last) {
            metrics::record_missed();
            let _ = tx.send(StreamItem::Missed {
                resumes_after: stored.sequence - 1,
            });
        }
        last = stored.sequence;
        interest.followed.fetch_max(last, Ordering::Relaxed);
        interest.pending.store(stored.pending, Ordering::Relaxed);
        let id = (!stored.event.id.is_empty()).then(|| stored.event.id.clone());
        let event = StreamItem::Sequenced {
            sequence: stored.sequence,
            event: stored.event,
        };
        // Under the lock, against a fallback: each upstream event goes out
        // once, from one of the two, in order.
        let mut delivered = id.as_ref().map(|_| interest.delivered.lock());
        if let (Some(delivered), Some(id)) = (delivered.as_mut(), id) {
            // Delivered already by a fallback upstream (or older than
            // what it delivered): not twice.
            if !delivered.admit_from_log(&id) {
                continue;
            }
        }
        if tx.send(event).is_err() {
            return;
        }
        drop(delivered);
    }
    tracing::debug!(last, "follower: the consumer ended");
    // The consumer ended for good: the hub ends its subscribers with a
    // retry hint, and they come back to a fresh follower.
    let _ = tx.send(StreamItem::Status(Status {
        phase: Phase::Stopped,
        reason: Reason::Stop(StopReason::Requested),
        terminal: true,
    }));
}

/// Upstream ids a fallback delivered, remembered so that the log's copies
/// are skipped. Bounded: the oldest go first.
#[derive(Debug, Default)]
pub(crate) struct RecentIds {
    order: VecDeque<Arc<str>>,
    set: HashSet<Arc<str>>,
}

/// Ids remembered per topic, at most: far more than a lease's time of
/// events at any realistic rate.
const MAX_IDS: usize = 4096;

impl RecentIds {
    pub(crate) fn insert(&mut self, id: &str) {
        if self.set.contains(id) {
            return;
        }
        if self.order.len() >= MAX_IDS
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        let id: Arc<str> = id.into();
        self.order.push_back(id.clone());
        self.set.insert(id);
    }

    /// Whether `id` was delivered by a fallback; it is forgotten then (an
    /// upstream id comes once).
    pub(crate) fn take(&mut self, id: &str) -> bool {
        if self.set.remove(id) {
            self.order.retain(|o| &**o != id);
            true
        } else {
            false
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_are_bounded_and_each_is_taken_once() {
        let mut ids = RecentIds::default();
        assert!(ids.is_empty());
        for n in 0..(MAX_IDS + 10) {
            ids.insert(&n.to_string());
        }
        assert_eq!(ids.set.len(), MAX_IDS);
        assert_eq!(ids.order.len(), MAX_IDS);
        assert!(!ids.take("0"), "the oldest went first");
        let newest = (MAX_IDS + 9).to_string();
        assert!(ids.take(&newest));
        assert!(!ids.take(&newest), "once");
        ids.insert("a");
        ids.insert("a");
        assert_eq!(ids.order.iter().filter(|i| &***i == "a").count(), 1);
    }

    fn id(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s.to_string())
    }

    #[test]
    fn the_log_taking_over_from_a_fallback_sends_nothing_twice_nor_backwards() {
        // A subscriber that came during a NATS outage: its fallback started
        // live (3370). The new owner fills the log from its last stored id
        // (2558): the log brings 2559.., which this subscriber never had
        // and which come before what it got. The soak caught one going out.
        let mut delivered = Delivered::default();
        for n in 3370..=3373 {
            delivered.delivered_by_fallback(&id(&n.to_string()));
        }
        for n in 2559..=3369 {
            assert!(
                !delivered.admit_from_log(&id(&n.to_string())),
                "{n}: backwards"
            );
        }
        for n in 3370..=3373 {
            assert!(!delivered.admit_from_log(&id(&n.to_string())), "{n}: twice");
        }
        assert!(!delivered.log_resumed);
        assert!(delivered.admit_from_log(&id("3374")));
        assert!(delivered.log_resumed);
        assert!(delivered.admit_from_log(&id("3375")));
        // Ids without a number: only exact copies are known.
        let mut delivered = Delivered::default();
        delivered.delivered_by_fallback(&id("x"));
        assert!(!delivered.admit_from_log(&id("x")));
        assert!(delivered.admit_from_log(&id("y")));
    }
}
