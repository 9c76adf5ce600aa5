//! Topic hubs: the first subscriber of a topic subscribes to the pool, a
//! pump task turns each upstream event into one encoded [`HubEvent`] (the
//! same `Bytes` for every subscriber), keeps it in a bounded replay buffer,
//! and queues it for every subscriber; the last subscriber leaving releases
//! the pool subscription.
//!
//! Ids. Every event gets a sequence number from one gateway-wide counter, so
//! numbers only grow, per topic and across a topic's incarnations (a topic
//! that emptied and came back). A topic remembers its `floor`: every event
//! after it is still in the buffer. A client at position `p` resumes with
//! no gap and no duplicate if `p >= floor` (it gets everything after `p`);
//! otherwise it is beyond the window and gets a reset. Ids carry the
//! gateway's run token, so an id from an earlier run is recognized as such.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use sse_conn_pool::{Connector, Pool, PoolError, StreamItem, Subscription};
use sse_parser::{Event, encode_event};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{BridgeConfig, Policy};
use crate::metrics;
use crate::queue::{Closed, Out, Queue};

/// One upstream event, encoded once.
#[derive(Debug)]
pub(crate) struct HubEvent {
    /// Its gateway sequence number.
    pub(crate) seq: u64,
    /// The whole block for single-topic streams, `id:` included.
    pub(crate) single: Bytes,
    /// The block for multi-topic streams without its `id:` line and final
    /// blank line (`event:` is the topic): each stream appends its own id.
    pub(crate) multi: Bytes,
    at: Instant,
}

impl HubEvent {
    pub(crate) fn len(&self) -> usize {
        self.single.len()
    }

    #[cfg(test)]
    pub(crate) fn for_test(seq: u64, single: Bytes) -> Self {
        Self {
            seq,
            multi: single.clone(),
            single,
            at: Instant::now(),
        }
    }
}

/// A subscriber's registration in one topic.
struct Member {
    queue: Arc<Queue>,
    /// Which of the subscriber's topics this is.
    index: usize,
}

struct TopicState {
    replay: VecDeque<Arc<HubEvent>>,
    replay_bytes: usize,
    /// Every event after this sequence number is in `replay`.
    floor: u64,
    /// The last sequence number assigned here.
    last: u64,
    members: HashMap<u64, Member>,
    /// Since when nobody is subscribed: the topic (its replay buffer and
    /// upstream subscription) lingers `replay_linger` after that, so a
    /// client that comes back resumes without a gap.
    empty_since: Option<Instant>,
}

struct Topic {
    name: Arc<str>,
    state: Mutex<TopicState>,
    pump: Mutex<Option<JoinHandle<()>>>,
    /// Wakes the pump when the last member left (it times the linger).
    emptied: Notify,
}

/// Every topic with a subscriber.
pub(crate) struct Hub<C: Connector> {
    pool: Pool<C>,
    config: Arc<BridgeConfig>,
    run: Arc<str>,
    seq: Arc<AtomicU64>,
    next_member: AtomicU64,
    topics: Mutex<HashMap<Arc<str>, Arc<Topic>>>,
    /// Memberships ever added and removed, counted under the topics lock
    /// so that `joins - leaves` equals the members summed over topics.
    joins: AtomicU64,
    leaves: AtomicU64,
}

/// Where a subscriber starts in a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Live events only.
    Now,
    /// After this sequence number (a resume).
    After(u64),
    /// The client's id was unusable (another run, garbage): reset, then live.
    Reset,
}

/// A subscriber's hold on its topics; dropping it leaves them all.
pub(crate) struct Membership<C: Connector> {
    hub: Arc<Hub<C>>,
    id: u64,
    topics: Vec<Arc<Topic>>,
}

impl<C: Connector> Drop for Membership<C> {
    fn drop(&mut self) {
        for topic in &self.topics {
            self.hub.leave(topic, self.id);
        }
    }
}

impl<C: Connector> Hub<C> {
    pub(crate) fn new(pool: Pool<C>, config: Arc<BridgeConfig>, run: Arc<str>) -> Arc<Self> {
        Arc::new(Self {
            pool,
            config,
            run,
            seq: Arc::new(AtomicU64::new(0)),
            next_member: AtomicU64::new(1),
            topics: Mutex::new(HashMap::new()),
            joins: AtomicU64::new(0),
            leaves: AtomicU64::new(0),
        })
    }

    pub(crate) fn run_token(&self) -> &str {
        &self.run
    }

    pub(crate) fn pool(&self) -> &Pool<C> {
        &self.pool
    }

    /// Topics with subscribers now, and their subscriber counts.
    pub(crate) fn topics(&self) -> Vec<(String, usize)> {
        let topics = self.topics.lock();
        let mut out: Vec<(String, usize)> = topics
            .values()
            .map(|t| (t.name.to_string(), t.state.lock().members.len()))
            .collect();
        out.sort();
        out
    }

    /// Subscribes `queue` to `topics` from `starts`; on error nothing stays
    /// subscribed. Replay (or a reset notice) is queued before any live event.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        topics: &[String],
        starts: &[Start],
        queue: &Arc<Queue>,
    ) -> Result<(Membership<C>, Vec<u64>), PoolError> {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let mut membership = Membership {
            hub: self.clone(),
            id,
            topics: Vec::with_capacity(topics.len()),
        };
        let mut positions = Vec::with_capacity(topics.len());
        for (index, (name, start)) in topics.iter().zip(starts).enumerate() {
            // The member is added under the map's lock, so a concurrent last
            // leave cannot remove the topic between lookup and join.
            let mut map = self.topics.lock();
            let topic = self.topic(&mut map, name)?;
            let mut state = topic.state.lock();
            self.expire(&mut state);
            let position = match *start {
                Start::After(p) if p >= state.floor && p <= state.last => {
                    let replay = state.replay.iter().filter(|e| e.seq > p);
                    let mut replayed = 0u64;
                    for event in replay {
                        queue.push_unbounded(Out::Event {
                            topic: index,
                            event: event.clone(),
                        });
                        replayed += 1;
                    }
                    metrics::record_replay(replayed);
                    p
                }
                Start::After(_) | Start::Reset => {
                    queue.push_unbounded(Out::Reset {
                        topic: index,
                        reason: if matches!(start, Start::Reset) {
                            "unknown-id"
                        } else {
                            "beyond-window"
                        },
                    });
                    metrics::record_reset();
                    state.last
                }
                Start::Now => state.last,
            };
            state.members.insert(
                id,
                Member {
                    queue: queue.clone(),
                    index,
                },
            );
            self.joins.fetch_add(1, Ordering::Relaxed);
            drop(state);
            drop(map);
            positions.push(position);
            membership.topics.push(topic);
        }
        Ok((membership, positions))
    }

    /// The topic, created (with its pool subscription and pump) if new.
    fn topic(
        self: &Arc<Self>,
        topics: &mut HashMap<Arc<str>, Arc<Topic>>,
        name: &str,
    ) -> Result<Arc<Topic>, PoolError> {
        if let Some(topic) = topics.get(name) {
            topic.state.lock().empty_since = None;
            return Ok(topic.clone());
        }
        let subscription = self.pool.subscribe(name)?;
        // A new incarnation takes a number of its own: a position from an
        // earlier incarnation is below its floor and gets a reset, because
        // what the upstream sent between incarnations reached nobody.
        let floor = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let name: Arc<str> = Arc::from(name);
        let topic = Arc::new(Topic {
            name: name.clone(),
            state: Mutex::new(TopicState {
                replay: VecDeque::new(),
                replay_bytes: 0,
                floor,
                last: floor,
                members: HashMap::new(),
                empty_since: None,
            }),
            pump: Mutex::new(None),
            emptied: Notify::new(),
        });
        let span = tracing::info_span!("topic", topic = %name);
        let pump = tokio::spawn(tracing::Instrument::instrument(
            pump(
                Arc::downgrade(self),
                topic.clone(),
                subscription,
                self.config.policy_of(&name),
                self.config.replay_linger,
            ),
            span,
        ));
        tracing::debug!(topic = %name, "first subscriber: upstream subscribed");
        *topic.pump.lock() = Some(pump);
        topics.insert(name, topic.clone());
        metrics::record_topics(topics.len());
        Ok(topic)
    }

    fn leave(&self, topic: &Arc<Topic>, id: u64) {
        let mut topics = self.topics.lock();
        let empty = {
            let mut state = topic.state.lock();
            if state.members.remove(&id).is_some() {
                self.leaves.fetch_add(1, Ordering::Relaxed);
            }
            let empty = state.members.is_empty();
            if empty && !self.config.replay_linger.is_zero() {
                // The pump times the linger and removes the topic then.
                state.empty_since = Some(Instant::now());
                topic.emptied.notify_one();
                return;
            }
            empty
        };
        if empty {
            self.remove(&mut topics, topic);
        }
    }

    /// Removes `topic` if it is still the current incarnation (a new one
    /// may exist), releasing its upstream subscription.
    fn remove(&self, topics: &mut HashMap<Arc<str>, Arc<Topic>>, topic: &Arc<Topic>) {
        if !topics
            .get(&topic.name)
            .is_some_and(|t| Arc::ptr_eq(t, topic))
        {
            return;
        }
        topics.remove(&topic.name);
        if let Some(pump) = topic.pump.lock().take() {
            // Dropping the pump drops the pool subscription: released.
            pump.abort();
        }
        tracing::debug!(topic = %topic.name, "no subscriber left: upstream released");
        metrics::record_topics(topics.len());
    }

    /// After the linger: removes `topic` if it is still empty and has been
    /// for `linger`. Whether it was removed.
    fn remove_if_idle(&self, topic: &Arc<Topic>, linger: Duration) -> bool {
        let mut topics = self.topics.lock();
        let idle = topic
            .state
            .lock()
            .empty_since
            .is_some_and(|since| since.elapsed() >= linger);
        if idle {
            self.remove(&mut topics, topic);
        }
        idle
    }

    /// Drops replayable events older than the replay age.
    fn expire(&self, state: &mut TopicState) {
        let max_age = self.config.replay_age;
        let now = Instant::now();
        while let Some(front) = state.replay.front() {
            if now.saturating_duration_since(front.at) < max_age {
                break;
            }
            evict(state);
        }
    }

    /// Registry sizes and queue depths, for `/debug/vars`.
    pub(crate) fn stats(&self) -> serde_json::Value {
        // Under the topics lock (joins and leaves take it too): the counts
        // agree with each other exactly.
        let map = self.topics.lock();
        let (mut members, mut replay_events, mut replay_bytes, mut empty) = (0, 0, 0, 0);
        for topic in map.values() {
            let state = topic.state.lock();
            members += state.members.len();
            empty += usize::from(state.members.is_empty());
            replay_events += state.replay.len();
            replay_bytes += state.replay_bytes;
        }
        let (joins, leaves) = (
            self.joins.load(Ordering::Relaxed),
            self.leaves.load(Ordering::Relaxed),
        );
        let topics = map.len();
        drop(map);
        let (mut queued_events, mut queued_bytes) = (0, 0);
        for queue in self.queues() {
            let (events, bytes) = queue.depth();
            queued_events += events;
            queued_bytes += bytes;
        }
        serde_json::json!({
            "hub_topics": topics,
            "hub_members": members,
            "hub_empty_topics": empty,
            "hub_joins": joins,
            "hub_leaves": leaves,
            "replay_events": replay_events,
            "replay_bytes": replay_bytes,
            "queued_events": queued_events,
            "queued_bytes": queued_bytes,
        })
    }

    /// Every subscriber's queue, once (a multi-topic subscriber is a member
    /// of several topics with one queue); locks taken one at a time.
    fn queues(&self) -> Vec<Arc<Queue>> {
        let topics: Vec<Arc<Topic>> = self.topics.lock().values().cloned().collect();
        let mut queues: Vec<Arc<Queue>> = topics
            .iter()
            .flat_map(|topic| {
                let state = topic.state.lock();
                state
                    .members
                    .values()
                    .map(|m| m.queue.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        queues.sort_by_key(|q| Arc::as_ptr(q) as usize);
        queues.dedup_by(|a, b| Arc::ptr_eq(a, b));
        queues
    }

    /// Ends every subscriber of every topic (shutdown).
    pub(crate) fn close_all(&self, why: Closed) {
        for queue in self.queues() {
            queue.close(why, false);
        }
    }

    /// Ends the streams of `topic`'s subscribers (of every topic if `None`)
    /// with the retry hint, as if the gateway were draining, without
    /// refusing them when they come back. Returns how many.
    pub(crate) fn disconnect(&self, topic: Option<&str>) -> usize {
        let queues = match topic {
            None => self.queues(),
            Some(name) => {
                let Some(topic) = self.topics.lock().get(name).cloned() else {
                    return 0;
                };
                let state = topic.state.lock();
                state.members.values().map(|m| m.queue.clone()).collect()
            }
        };
        for queue in &queues {
            queue.close(Closed::Operator, false);
        }
        queues.len()
    }

    /// Disconnects subscribers whose queued data has not moved for the write
    /// timeout (their connection is killed: see `Queue::kill`).
    pub(crate) fn sweep(&self, now: Instant, timeout: Duration) -> usize {
        let mut stalled = 0;
        for queue in self.queues() {
            if queue.stalled(now, timeout) {
                queue.close(Closed::Slow, true);
                metrics::record_slow(Policy::Disconnect);
                stalled += 1;
            }
        }
        stalled
    }
}

fn evict(state: &mut TopicState) {
    if let Some(old) = state.replay.pop_front() {
        state.replay_bytes -= old.len();
        state.floor = old.seq;
    }
}

/// Encodes `event` for both stream kinds.
fn encode(run: &str, topic: &str, seq: u64, event: &Event) -> Option<(Bytes, Bytes)> {
    let mut single = event.clone();
    single.id = format!("{run}:{seq}").into();
    let single = encode_event(&single).ok()?;
    let mut multi = event.clone();
    multi.id = "".into();
    multi.event_type = if &*event.event_type == "message" || event.event_type.is_empty() {
        topic.into()
    } else {
        format!("{topic}:{}", &*event.event_type).into()
    };
    let multi = encode_event(&multi).ok()?;
    // Without the final blank line: each stream appends `id: ...\n\n`.
    let multi = multi.slice(..multi.len() - 1);
    Some((single, multi))
}

/// Resolves when `topic` has been empty for `linger` (never while it has
/// members).
async fn lingered(topic: &Topic, linger: Duration) {
    loop {
        let emptied = topic.emptied.notified();
        let since = topic.state.lock().empty_since;
        match since {
            Some(since) => {
                tokio::time::sleep_until(since + linger).await;
                return;
            }
            None => emptied.await,
        }
    }
}

/// Turns the topic's pool subscription into hub events.
async fn pump<C: Connector>(
    hub: std::sync::Weak<Hub<C>>,
    topic: Arc<Topic>,
    mut subscription: Subscription,
    policy: Policy,
    linger: Duration,
) {
    loop {
        let received = tokio::select! {
            received = subscription.recv() => received,
            () = lingered(&topic, linger) => {
                let Some(hub) = hub.upgrade() else { return };
                if hub.remove_if_idle(&topic, linger) {
                    // `remove` aborted this task; end here all the same.
                    return;
                }
                continue;
            }
        };
        let item = match received {
            Ok(item) => item,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                // The pool's buffer overflowed for this hub: every member
                // missed the same events; say so.
                let state = topic.state.lock();
                for member in state.members.values() {
                    member.queue.push_unbounded(Out::Gap {
                        topic: member.index,
                        missed: n,
                    });
                }
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(hub) = hub.upgrade() else { return };
        match item {
            StreamItem::Event(event) => {
                let mut state = topic.state.lock();
                let seq = hub.seq.fetch_add(1, Ordering::SeqCst) + 1;
                let Some((single, multi)) = encode(&hub.run, &topic.name, seq, &event) else {
                    // An upstream type with CR/LF/NUL cannot come out of the
                    // parser; skip rather than corrupt the stream.
                    continue;
                };
                let event = Arc::new(HubEvent {
                    seq,
                    single,
                    multi,
                    at: Instant::now(),
                });
                state.last = seq;
                state.replay_bytes += event.len();
                state.replay.push_back(event.clone());
                while state.replay.len() > hub.config.replay_events
                    || state.replay_bytes > hub.config.replay_bytes
                {
                    evict(&mut state);
                }
                for member in state.members.values() {
                    member.queue.push(member.index, event.clone(), policy);
                }
                metrics::record_event(state.members.len());
            }
            StreamItem::Status(status) if status.terminal => {
                tracing::warn!(reason = %status.reason, "upstream stopped for good; ending its subscribers");
                // The upstream stopped for good: subscribers end (with a
                // retry hint) instead of waiting forever.
                let state = topic.state.lock();
                for member in state.members.values() {
                    member.queue.close(Closed::Upstream, false);
                }
            }
            StreamItem::Status(status) => {
                tracing::debug!(phase = %status.phase, reason = %status.reason, "upstream");
            }
            StreamItem::Comment(_) => {}
        }
    }
}
