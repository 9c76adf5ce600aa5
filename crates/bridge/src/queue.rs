//! One subscriber's bounded queue (events and bytes) between the topic hubs
//! that fill it and the response body that drains it. When it is full the
//! topic's policy decides: disconnect, drop the oldest (and say so), or
//! conflate (keep the newest event per topic). Filling never waits, so a
//! slow subscriber never slows a hub or the other subscribers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::event::HubEvent;
use crate::metrics;
use crate::policy::Policy;

/// What the body writes next.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    /// An event of the connection's `topic`-th topic.
    Event { topic: usize, event: Arc<HubEvent> },
    /// Events of that topic were dropped (drop-oldest).
    Gap { topic: usize, missed: u64 },
    /// The client's position in that topic cannot be resumed.
    Reset { topic: usize, reason: &'static str },
}

impl Out {
    fn bytes(&self) -> usize {
        match self {
            Self::Event { event, .. } => event.len(),
            _ => 64,
        }
    }
}

/// What [`Queue::pop_many`] took.
#[derive(Debug)]
pub(crate) enum Taken {
    /// The queue was empty: the waker is registered.
    Nothing,
    One(Out),
    /// Two or more items, oldest first.
    Many(Vec<Out>),
}

/// Why a queue was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closed {
    /// Full under the disconnect policy, or no write progress.
    Slow,
    /// Its upstream stopped for good (a 204 or a 4xx), or the gateway
    /// shuts down.
    Upstream,
    /// An operator ended it (`POST /admin/disconnect`): the client comes
    /// back after the retry hint and resumes.
    Operator,
}

pub(crate) struct Queue {
    state: Mutex<State>,
    max_events: usize,
    max_bytes: usize,
    /// Ends the whole client connection: a stalled HTTP/1.1 connection is
    /// never polled, so ending the body alone would not free the socket.
    pub(crate) kill: Arc<Notify>,
}

struct State {
    items: VecDeque<Out>,
    bytes: usize,
    waker: Option<Waker>,
    closed: Option<Closed>,
    /// When the body last took something (or the queue was empty).
    progress: Instant,
}

impl Queue {
    pub(crate) fn new(max_events: usize, max_bytes: usize, kill: Arc<Notify>) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                waker: None,
                closed: None,
                progress: Instant::now(),
            }),
            max_events,
            max_bytes,
            kill,
        }
    }

    /// Queues `out` without a bound: replay at subscribe time (itself
    /// bounded by the replay buffer) and control frames.
    pub(crate) fn push_unbounded(&self, out: Out) {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return;
        }
        // Repeated gap notices for a topic merge into one, so that notices
        // cannot pile up behind a stalled subscriber.
        if let Out::Gap { topic, missed } = out
            && let Some(Out::Gap {
                topic: last_topic,
                missed: last_missed,
            }) = state.items.back_mut()
            && *last_topic == topic
        {
            *last_missed += missed;
            return;
        }
        state.bytes += out.bytes();
        state.items.push_back(out);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    /// Queues an event under `policy`. False when the subscriber is gone or
    /// was just disconnected for being slow.
    pub(crate) fn push(&self, topic: usize, event: Arc<HubEvent>, policy: Policy) -> bool {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return false;
        }
        if state.items.is_empty() {
            state.progress = Instant::now();
        }
        let size = event.len();
        let full = |s: &State| s.items.len() >= self.max_events || s.bytes + size > self.max_bytes;
        if full(&state) {
            match policy {
                Policy::Disconnect => {
                    // Closed: nothing more is queued, and what is queued is
                    // dropped, so memory is freed now. The body still says
                    // goodbye with a `retry:` hint if the client catches up;
                    // one that never reads again is cut by the write-progress
                    // sweep.
                    metrics::record_slow(policy);
                    state.closed = Some(Closed::Slow);
                    state.items.clear();
                    state.bytes = 0;
                    state.progress = Instant::now();
                    if let Some(waker) = state.waker.take() {
                        waker.wake();
                    }
                    return false;
                }
                Policy::Conflate => {
                    // Drop this topic's queued events: the newest replaces them.
                    let before = state.items.len();
                    let mut freed = 0;
                    state.items.retain(|o| {
                        let stale = matches!(o, Out::Event { topic: t, .. } if *t == topic);
                        if stale {
                            freed += o.bytes();
                        }
                        !stale
                    });
                    state.bytes -= freed;
                    if state.items.len() < before {
                        metrics::record_slow(policy);
                    }
                }
                Policy::DropOldest => {}
            }
            // Make room (drop-oldest, or conflate that freed too little),
            // counting what each topic lost. Earlier gap notices are merged.
            let mut missed: Vec<(usize, u64)> = Vec::new();
            while full(&state) {
                let Some(old) = state.items.pop_front() else {
                    break;
                };
                state.bytes -= old.bytes();
                let lost = match old {
                    Out::Event { topic, .. } => Some((topic, 1)),
                    Out::Gap { topic, missed } => Some((topic, missed)),
                    Out::Reset { .. } => None,
                };
                if let Some((t, n)) = lost {
                    match missed.iter_mut().find(|(m, _)| *m == t) {
                        Some(entry) => entry.1 += n,
                        None => missed.push((t, n)),
                    }
                }
            }
            if !missed.is_empty() {
                metrics::record_slow(Policy::DropOldest);
                for (t, n) in missed.into_iter().rev() {
                    let gap = Out::Gap {
                        topic: t,
                        missed: n,
                    };
                    state.bytes += gap.bytes();
                    state.items.push_front(gap);
                }
            }
        }
        state.bytes += size;
        state.items.push_back(Out::Event { topic, event });
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        true
    }

    /// Takes up to `max` items at once (under one lock), or registers
    /// `waker` when there is none; `Err` once closed. The body writes what
    /// it takes as one frame: one write for everything pending, not one per
    /// event. A lone item (the usual case below a burst) comes without an
    /// allocation: this runs per subscriber per event.
    pub(crate) fn pop_many(&self, waker: &Waker, max: usize) -> Result<Taken, Closed> {
        let mut state = self.state.lock();
        if let Some(closed) = state.closed {
            return Err(closed);
        }
        state.progress = Instant::now();
        let n = state.items.len();
        if n == 0 {
            state.waker = Some(waker.clone());
            // A burst's high-water mark is not kept by an idle subscriber.
            if state.items.capacity() > 64 {
                state.items.shrink_to(16);
            }
            return Ok(Taken::Nothing);
        }
        if n == 1
            && let Some(out) = state.items.pop_front()
        {
            state.bytes -= out.bytes();
            return Ok(Taken::One(out));
        }
        let taken: Vec<Out> = state.items.drain(..n.min(max)).collect();
        state.bytes -= taken.iter().map(Out::bytes).sum::<usize>();
        Ok(Taken::Many(taken))
    }

    #[cfg(test)]
    pub(crate) fn pop(&self, waker: &Waker) -> Result<Option<Out>, Closed> {
        let mut state = self.state.lock();
        if let Some(closed) = state.closed {
            return Err(closed);
        }
        state.progress = Instant::now();
        match state.items.pop_front() {
            Some(out) => {
                state.bytes -= out.bytes();
                Ok(Some(out))
            }
            None => {
                state.waker = Some(waker.clone());
                Ok(None)
            }
        }
    }

    /// Closes the queue (the body ends with a `retry:` hint) and, when
    /// `kill`, the client's connection.
    pub(crate) fn close(&self, why: Closed, kill: bool) {
        let mut state = self.state.lock();
        if state.closed.is_none() {
            state.closed = Some(why);
        }
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        drop(state);
        if kill {
            self.kill.notify_one();
        }
    }

    /// Data (or a goodbye) waiting and nothing taken for `timeout`: the
    /// client is stalled.
    pub(crate) fn stalled(&self, now: Instant, timeout: std::time::Duration) -> bool {
        let state = self.state.lock();
        (state.closed.is_some() || !state.items.is_empty())
            && now.saturating_duration_since(state.progress) >= timeout
    }

    /// Events and bytes queued now.
    pub(crate) fn depth(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.items.len(), state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Waker;

    use bytes::Bytes;
    use tokio::sync::Notify;

    use super::*;
    use crate::event::HubEvent;

    fn event(seq: u64, size: usize) -> Arc<HubEvent> {
        Arc::new(HubEvent::for_test(seq, Bytes::from(vec![b'x'; size])))
    }

    fn drain(queue: &Queue) -> Vec<Out> {
        let mut out = Vec::new();
        while let Ok(Some(item)) = queue.pop(Waker::noop()) {
            out.push(item);
        }
        out
    }

    #[tokio::test]
    async fn drop_oldest_counts_what_each_topic_lost() {
        let queue = Queue::new(3, 1 << 20, Arc::new(Notify::new()));
        for seq in 1..=5 {
            assert!(queue.push(
                usize::from(seq % 2 == 0),
                event(seq, 10),
                Policy::DropOldest
            ));
        }
        let items = drain(&queue);
        let gaps: Vec<(usize, u64)> = items
            .iter()
            .filter_map(|o| match o {
                Out::Gap { topic, missed } => Some((*topic, *missed)),
                _ => None,
            })
            .collect();
        let kept: Vec<u64> = items
            .iter()
            .filter_map(|o| match o {
                Out::Event { event, .. } => Some(event.seq),
                _ => None,
            })
            .collect();
        // Gap notices ride along (at most one per topic); events are bounded.
        assert_eq!(kept, [3, 4, 5], "the newest stay");
        assert_eq!(
            gaps.iter().map(|g| g.1).sum::<u64>(),
            2,
            "every dropped event is counted"
        );
    }

    #[tokio::test]
    async fn conflate_keeps_the_newest_event_per_topic() {
        let queue = Queue::new(2, 1 << 20, Arc::new(Notify::new()));
        for seq in 1..=6 {
            assert!(queue.push(0, event(seq, 10), Policy::Conflate));
        }
        let kept: Vec<u64> = drain(&queue)
            .iter()
            .filter_map(|o| match o {
                Out::Event { event, .. } => Some(event.seq),
                Out::Gap { .. } => panic!("conflation sends no gap"),
                Out::Reset { .. } => None,
            })
            .collect();
        assert!(kept.ends_with(&[6]) && kept.len() <= 2, "{kept:?}");
    }

    #[tokio::test]
    async fn disconnect_frees_the_queue_and_refuses_more() {
        let queue = Queue::new(2, 1 << 20, Arc::new(Notify::new()));
        assert!(queue.push(0, event(1, 10), Policy::Disconnect));
        assert!(queue.push(0, event(2, 10), Policy::Disconnect));
        assert!(
            !queue.push(0, event(3, 10), Policy::Disconnect),
            "full: disconnected"
        );
        assert_eq!(queue.depth(), (0, 0), "memory freed at once");
        assert!(matches!(queue.pop(Waker::noop()), Err(Closed::Slow)));
        queue.push_unbounded(Out::Gap {
            topic: 0,
            missed: 1,
        });
        assert_eq!(queue.depth(), (0, 0), "nothing queued after close");
    }

    #[tokio::test]
    async fn pop_many_takes_one_alone_and_a_backlog_in_bounded_batches() {
        let queue = Queue::new(1000, 1 << 20, Arc::new(Notify::new()));
        assert!(matches!(
            queue.pop_many(Waker::noop(), 4),
            Ok(Taken::Nothing)
        ));
        assert!(queue.push(0, event(1, 10), Policy::DropOldest));
        assert!(
            matches!(queue.pop_many(Waker::noop(), 4), Ok(Taken::One(Out::Event { event, .. })) if event.seq == 1)
        );
        assert_eq!(queue.depth(), (0, 0));
        for seq in 2..=11 {
            assert!(queue.push(0, event(seq, 10), Policy::DropOldest));
        }
        let mut seen = Vec::new();
        while let Ok(Taken::Many(batch)) = queue.pop_many(Waker::noop(), 4) {
            assert!(batch.len() <= 4, "a batch is bounded: {}", batch.len());
            seen.extend(batch.into_iter().filter_map(|o| match o {
                Out::Event { event, .. } => Some(event.seq),
                _ => None,
            }));
            if seen.len() == 8 {
                break;
            }
        }
        assert_eq!(seen, (2..=9).collect::<Vec<u64>>(), "in order, none lost");
        assert_eq!(queue.depth(), (2, 20), "bytes follow what is taken");
        queue.close(Closed::Operator, false);
        assert!(matches!(
            queue.pop_many(Waker::noop(), 4),
            Err(Closed::Operator)
        ));
    }

    #[tokio::test]
    async fn gap_notices_merge_and_the_byte_bound_applies() {
        let queue = Queue::new(100, 100, Arc::new(Notify::new()));
        for _ in 0..1000 {
            queue.push_unbounded(Out::Gap {
                topic: 0,
                missed: 2,
            });
        }
        assert_eq!(queue.depth().0, 1, "one notice, not a thousand");
        assert!(queue.push(0, event(1, 60), Policy::DropOldest));
        assert!(queue.push(0, event(2, 60), Policy::DropOldest));
        let (_, bytes) = queue.depth();
        assert!(bytes <= 100 + 64, "bytes bounded: {bytes}");
    }
}
