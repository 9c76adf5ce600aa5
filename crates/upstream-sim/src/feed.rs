//! The synthetic market feed: one generator per topic, a bounded history for
//! `Last-Event-ID` replay, and a broadcast for live subscribers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};

/// One generated event, already encoded for the wire.
#[derive(Debug, Clone)]
pub(crate) struct FeedEvent {
    pub(crate) id: u64,
    pub(crate) wire: Bytes,
    /// The data line's JSON alone (a packed stream writes it its own way).
    pub(crate) data: Bytes,
}

/// A topic's feed: its history and its live channel.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: String,
    history: Mutex<VecDeque<FeedEvent>>,
    capacity: usize,
    live: broadcast::Sender<FeedEvent>,
    /// Bumped to end every open stream of this topic (a close).
    pub(crate) kick: watch::Sender<u64>,
}

impl Topic {
    pub(crate) fn new(name: String, capacity: usize) -> Arc<Self> {
        let (live, _) = broadcast::channel(1024);
        Arc::new(Self {
            name,
            history: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            live,
            kick: watch::channel(0).0,
        })
    }

    /// Appends an event to the history (dropping the oldest beyond the
    /// capacity) and sends it to live subscribers.
    pub(crate) fn publish(&self, event: FeedEvent) {
        {
            let mut history = self.history.lock();
            if history.len() == self.capacity {
                history.pop_front();
            }
            history.push_back(event.clone());
        }
        // No live subscriber is fine.
        let _ = self.live.send(event);
    }

    /// Subscribes to live events, and returns the events after `after` still
    /// in the history (all of them for `None`, none if `after` is unknown
    /// and newer than the history). Subscribing first, under the history
    /// lock, means no event falls between the replay and the live stream.
    pub(crate) fn subscribe(
        &self,
        after: Option<u64>,
    ) -> (Vec<FeedEvent>, broadcast::Receiver<FeedEvent>) {
        let history = self.history.lock();
        let rx = self.live.subscribe();
        let replay = match after {
            None => Vec::new(),
            Some(after) => history.iter().filter(|e| e.id > after).cloned().collect(),
        };
        (replay, rx)
    }

    /// The id of the newest event, if any.
    pub(crate) fn last_id(&self) -> Option<u64> {
        self.history.lock().back().map(|e| e.id)
    }
}

/// SplitMix64: a small, seedable, deterministic generator (not for secrets).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; the modulo bias is irrelevant here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A deterministic quote generator: a random walk of bid and ask.
pub(crate) struct Quotes {
    rng: SplitMix,
    bid_cents: i64,
    next_id: u64,
}

impl Quotes {
    pub(crate) fn new(topic: &str, seed: u64) -> Self {
        // Each topic starts from its own price and sequence.
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        for b in topic.bytes() {
            state = state.rotate_left(5) ^ u64::from(b);
        }
        let bid_cents = 10_000 + i64::try_from(state % 40_000).unwrap_or(0);
        Self {
            rng: SplitMix(state),
            bid_cents,
            next_id: 1,
        }
    }

    /// The next quote for `topic`, stamped with the wall clock (so that a
    /// receiver can measure latency).
    pub(crate) fn next(&mut self, topic: &str) -> FeedEvent {
        let step = i64::try_from(self.rng.below(7)).unwrap_or(0) - 3;
        self.bid_cents = (self.bid_cents + step).max(100);
        let ask_cents = self.bid_cents + 2;
        let id = self.next_id;
        self.next_id += 1;
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        let data = format!(
            "{{\"s\":\"{topic}\",\"n\":{id},\"b\":{}.{:02},\"a\":{}.{:02},\"t\":{t}}}",
            self.bid_cents / 100,
            self.bid_cents % 100,
            ask_cents / 100,
            ask_cents % 100,
        );
        let wire = format!("id: {id}\nevent: quote\ndata: {data}\n\n");
        FeedEvent {
            id,
            wire: Bytes::from(wire),
            data: Bytes::from(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_sequential_and_parse() {
        let mut q = Quotes::new("AAPL", 1);
        let a = q.next("AAPL");
        let b = q.next("AAPL");
        assert_eq!((a.id, b.id), (1, 2));
        let text = std::str::from_utf8(&a.wire).unwrap();
        assert!(text.starts_with("id: 1\nevent: quote\ndata: {\"s\":\"AAPL\",\"n\":1,\"b\":"));
        assert!(text.ends_with("}\n\n"));
    }

    #[test]
    fn replay_returns_what_followed_the_id_and_history_is_bounded() {
        let topic = Topic::new("T".into(), 3);
        let mut q = Quotes::new("T", 1);
        for _ in 0..5 {
            topic.publish(q.next("T"));
        }
        let (replay, _) = topic.subscribe(Some(3));
        assert_eq!(replay.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5]);
        let (replay, _) = topic.subscribe(Some(0));
        assert_eq!(
            replay.iter().map(|e| e.id).collect::<Vec<_>>(),
            [3, 4, 5],
            "ids 1 and 2 fell out"
        );
        assert_eq!(topic.last_id(), Some(5));
    }
}
