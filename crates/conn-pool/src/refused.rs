//! Topics the upstream refused for good (a 204, a 404 or another 4xx, a
//! redirect the gateway may not follow), remembered for `negative_ttl`: a
//! client asking again meanwhile gets the same answer at once, without a
//! new upstream request and without holding a slot.
//!
//! Bounded: at most [`MAX_REFUSED`] topics. Every entry lives the same
//! time, so the oldest is the first to expire and the one evicted when
//! full (a queue in insertion order finds it without a scan).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use sse_state_machine::StopReason;
use tokio::time::Instant;

use crate::metrics;

/// Refused topics remembered at once.
pub(crate) const MAX_REFUSED: usize = 4096;

/// The remembered answers (see the module docs).
#[derive(Debug)]
pub(crate) struct Refused {
    ttl: Duration,
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// Topic → (until when, the upstream's answer, insertion number).
    map: HashMap<String, Entry>,
    /// (topic, insertion number) in insertion order; an item whose number
    /// is no longer the map's (the topic was refused again since) is stale.
    order: VecDeque<(String, u64)>,
    /// The next insertion number.
    next: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    until: Instant,
    reason: StopReason,
    number: u64,
}

impl Entries {
    fn is_current(&self, topic: &str, number: u64) -> bool {
        self.map.get(topic).is_some_and(|e| e.number == number)
    }

    /// Drops what expired by `now`, and the oldest while over `keep`.
    fn trim(&mut self, now: Instant, keep: usize) {
        while let Some((topic, number)) = self.order.front() {
            if self.is_current(topic, *number) {
                let until = self.map[topic.as_str()].until;
                if until > now && self.map.len() <= keep {
                    break;
                }
                self.map.remove(topic.as_str());
            }
            self.order.pop_front();
        }
    }
}

impl Refused {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            inner: Mutex::default(),
        }
    }

    /// The upstream's answer for `topic` and how long it still holds, if
    /// it was refused less than `ttl` ago.
    pub(crate) fn get(&self, topic: &str) -> Option<(StopReason, Duration)> {
        let now = Instant::now();
        let mut entries = self.inner.lock();
        let entry = *entries.map.get(topic)?;
        if now < entry.until {
            return Some((entry.reason, entry.until - now));
        }
        entries.trim(now, MAX_REFUSED);
        metrics::record_refused_topics(entries.map.len());
        None
    }

    /// Remembers that the upstream refused `topic` with `reason`, from now.
    pub(crate) fn insert(&self, topic: &str, reason: StopReason) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let until = now + self.ttl;
        let mut entries = self.inner.lock();
        let number = entries.next;
        entries.next += 1;
        entries.map.insert(
            topic.to_string(),
            Entry {
                until,
                reason,
                number,
            },
        );
        entries.order.push_back((topic.to_string(), number));
        entries.trim(now, MAX_REFUSED);
        // Re-refusals leave stale items in the queue: dropped once they are
        // as many as the live ones.
        if entries.order.len() > 2 * MAX_REFUSED {
            let Entries { map, order, .. } = &mut *entries;
            order.retain(|(t, n)| map.get(t).is_some_and(|e| e.number == *n));
        }
        metrics::record_refused_topics(entries.map.len());
    }

    /// Topics remembered now (expired ones may count until next touched).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_answer_holds_for_the_ttl_then_is_forgotten() {
        let refused = Refused::new(Duration::from_secs(60));
        refused.insert("gone", StopReason::ClientError(404));
        tokio::time::advance(Duration::from_secs(59)).await;
        let (reason, left) = refused.get("gone").expect("still remembered");
        assert_eq!(reason, StopReason::ClientError(404));
        assert_eq!(left, Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(refused.get("gone"), None);
        assert_eq!(refused.len(), 0, "an expired answer is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_refusal_starts_the_ttl_again() {
        let refused = Refused::new(Duration::from_secs(60));
        refused.insert("t", StopReason::NoContent);
        tokio::time::advance(Duration::from_secs(50)).await;
        refused.insert("t", StopReason::ClientError(410));
        tokio::time::advance(Duration::from_secs(50)).await;
        // The first entry's expiry passed; the second's has not.
        refused.insert("other", StopReason::NoContent);
        assert_eq!(
            refused.get("t").map(|(r, _)| r),
            Some(StopReason::ClientError(410))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_oldest_goes_when_full() {
        let refused = Refused::new(Duration::from_secs(60));
        for i in 0..MAX_REFUSED + 10 {
            refused.insert(&format!("t{i}"), StopReason::ClientError(404));
        }
        assert_eq!(refused.len(), MAX_REFUSED);
        assert_eq!(refused.get("t0"), None);
        assert!(refused.get(&format!("t{}", MAX_REFUSED + 9)).is_some());
        // Refusing one topic over and over keeps the queue bounded.
        for _ in 0..3 * MAX_REFUSED {
            refused.insert("again", StopReason::NoContent);
        }
        assert!(refused.inner.lock().order.len() <= 2 * MAX_REFUSED + 1);
    }

    #[test]
    fn a_zero_ttl_remembers_nothing() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        rt.block_on(async {
            let refused = Refused::new(Duration::ZERO);
            refused.insert("t", StopReason::NoContent);
            assert_eq!(refused.get("t"), None);
        });
    }
}
