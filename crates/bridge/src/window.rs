//! A topic's replay window: the events kept for resumes (bounded by count,
//! bytes and age), the gaps among them, and the positions it covers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use crate::event::HubEvent;
use crate::metrics;
use crate::queue::{Out, Queue};

/// A subscriber's registration in one topic.
pub(crate) struct Member {
    pub(crate) queue: Arc<Queue>,
    /// Which of the subscriber's topics this is.
    pub(crate) index: usize,
}

/// Events missed by the whole topic (the hub fell behind the pool's
/// channel) after the event `after`: a resume across it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gap {
    pub(crate) after: u64,
    pub(crate) missed: u64,
}

/// Gaps remembered per topic, at most.
pub(crate) const MAX_GAPS: usize = 64;

pub(crate) struct TopicState {
    pub(crate) replay: VecDeque<Arc<HubEvent>>,
    pub(crate) replay_bytes: usize,
    /// The gaps inside the replay window, oldest first (dropped with the
    /// events before them).
    pub(crate) gaps: VecDeque<Gap>,
    /// Every event after this sequence number is in `replay`.
    pub(crate) floor: u64,
    /// The last sequence number assigned here.
    pub(crate) last: u64,
    /// Events without a position (a cluster's fallback) were delivered
    /// since the last positioned one: they are not in `replay`, so no
    /// resume can be bridged from the window to what comes live.
    pub(crate) unpositioned: bool,
    pub(crate) members: HashMap<u64, Member>,
    /// Since when nobody is subscribed: the topic (its replay buffer and
    /// upstream subscription) lingers `replay_linger` after that, so a
    /// client that comes back resumes without a gap.
    pub(crate) empty_since: Option<Instant>,
}

/// Queues `topic`'s buffered events after `p` for a resuming member (at
/// `index` of its topics), with the gaps among them; `already` events were
/// queued before these (for the metric).
pub(crate) fn replay(state: &TopicState, queue: &Queue, index: usize, p: u64, already: u64) {
    let events = state.replay.iter().filter(|e| e.seq > p);
    let mut gaps = state.gaps.iter().filter(|g| g.after >= p).peekable();
    let mut replayed = already;
    for event in events {
        // A gap recorded before this event: told in its place.
        while let Some(gap) = gaps.next_if(|g| g.after < event.seq) {
            queue.push_unbounded(Out::Gap {
                topic: index,
                missed: gap.missed,
            });
        }
        queue.push_unbounded(Out::Event {
            topic: index,
            event: event.clone(),
        });
        replayed += 1;
    }
    for gap in gaps {
        queue.push_unbounded(Out::Gap {
            topic: index,
            missed: gap.missed,
        });
    }
    metrics::record_replay(replayed);
}

pub(crate) fn evict(state: &mut TopicState) {
    if let Some(old) = state.replay.pop_front() {
        state.replay_bytes -= old.len();
        state.floor = old.seq;
        // A gap before the window's start concerns no resume any more.
        while state.gaps.front().is_some_and(|g| g.after < state.floor) {
            state.gaps.pop_front();
        }
    }
}
