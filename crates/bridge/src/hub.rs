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
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sse_conn_pool::{Connector, From, Pool, PoolError, Source, StreamItem, Subscription};
use sse_parser::Event;
use sse_state_machine::{Reason, StopReason};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::BridgeConfig;
use crate::event::HubEvent;
use crate::metrics;
use crate::policy::Policy;
use crate::queue::{Closed, Out, Queue};
use crate::window::{Gap, MAX_GAPS, Member, TopicState, evict, replay};

struct Topic {
    name: Arc<str>,
    state: Mutex<TopicState>,
    pump: Mutex<Option<JoinHandle<()>>>,
    /// Wakes the pump when the last member left (it times the linger).
    emptied: Notify,
    /// The client address that created it, while it has not delivered an
    /// event (its share of unproven topics).
    creator: Mutex<Option<IpAddr>>,
}

/// Every topic with a subscriber.
pub(crate) struct Hub<C: Connector> {
    pool: Pool<C>,
    /// Where topics' events come from: the pool itself, or a cluster.
    source: Arc<dyn Source>,
    /// Whether the source numbers its events (a cluster): then an event's
    /// sequence number is its position in the source, and a resume that
    /// this instance cannot serve from its buffer asks the source.
    numbered: bool,
    config: Arc<BridgeConfig>,
    run: Arc<str>,
    /// The token of events without a position (`<run>~`), made once.
    unpositioned_run: Arc<str>,
    seq: Arc<AtomicU64>,
    next_member: AtomicU64,
    topics: Mutex<HashMap<Arc<str>, Arc<Topic>>>,
    /// Memberships ever added and removed, counted under the topics lock
    /// so that `joins - leaves` equals the members summed over topics.
    joins: AtomicU64,
    leaves: AtomicU64,
    /// Per client address, the topics it created that have not delivered
    /// an event yet (an entry only while non-zero).
    unproven: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a subscriber could not join its topics.
#[derive(Debug)]
pub(crate) enum JoinError {
    /// The pool refused (invalid topic, at its cap, the upstream refused).
    Pool(PoolError),
    /// The client's address holds `limit` new topics that have not
    /// delivered an event yet.
    Unproven { limit: usize },
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
    pub(crate) fn new(
        pool: Pool<C>,
        source: Arc<dyn Source>,
        config: Arc<BridgeConfig>,
        run: Arc<str>,
    ) -> Arc<Self> {
        let numbered = source.positions().is_some();
        Arc::new(Self {
            pool,
            source,
            numbered,
            config,
            unpositioned_run: crate::event::unpositioned(&run).into(),
            run,
            seq: Arc::new(AtomicU64::new(0)),
            next_member: AtomicU64::new(1),
            topics: Mutex::new(HashMap::new()),
            joins: AtomicU64::new(0),
            leaves: AtomicU64::new(0),
            unproven: Mutex::default(),
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
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        topics: &[String],
        starts: &[Start],
        queue: &Arc<Queue>,
        ip: IpAddr,
    ) -> Result<(Membership<C>, Vec<u64>), JoinError> {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let mut membership = Membership {
            hub: self.clone(),
            id,
            topics: Vec::with_capacity(topics.len()),
        };
        let mut positions = Vec::with_capacity(topics.len());
        for (index, (name, start)) in topics.iter().zip(starts).enumerate() {
            // A resume from before what this instance holds of a topic: a
            // numbered source may still have the events in between.
            let older = match *start {
                Start::After(p) if self.numbered => self.older(name, p).await,
                _ => None,
            };
            // A new topic's pool subscription is taken first, without the
            // lock: the pool may make it wait for a slot (`pending_wait`).
            let mut fresh = None;
            let (map, topic) = loop {
                // No guard may live across the await (parking_lot guards are
                // not Send), so the map is locked only after it.
                if fresh.is_none() && !self.topics.lock().contains_key(name.as_str()) {
                    // A numbered source starts a resume where the client
                    // left: the new topic's window begins there.
                    let from = match *start {
                        Start::After(p) if self.numbered => From::After(p),
                        _ => From::Now,
                    };
                    fresh = Some(self.new_subscription(name, ip, from).await?);
                }
                let mut map = self.topics.lock();
                if let Some(topic) = map.get(name.as_str()).cloned() {
                    topic.state.lock().empty_since = None;
                    // Someone else created it meanwhile: ours goes back.
                    if let Some((subscription, _, creator)) = fresh.take() {
                        drop(subscription);
                        self.release_unproven(creator);
                    }
                    break (map, topic);
                }
                if let Some((subscription, after, creator)) = fresh.take() {
                    let topic = self.create(&mut map, name, subscription, after, creator);
                    break (map, topic);
                }
                // It went between the look and the lock: ask again.
            };
            // The member is added under the map's lock, so a concurrent last
            // leave cannot remove the topic between lookup and join.
            let mut state = topic.state.lock();
            self.expire(&mut state);
            // The source's events reach up to where the buffer begins.
            let older = older.filter(|(upto, _)| *upto >= state.floor && *upto <= state.last);
            let position = match *start {
                // Live events now have no position: after a replay the
                // client would jump from the window's end to them, past
                // what the fallback delivered meanwhile. A reset instead.
                Start::After(_) if state.unpositioned => {
                    queue.push_unbounded(Out::Reset {
                        topic: index,
                        reason: "beyond-window",
                    });
                    metrics::record_reset();
                    state.last
                }
                Start::After(p) if p >= state.floor && p <= state.last => {
                    replay(&state, queue, index, p, 0);
                    p
                }
                Start::After(p) if older.is_some() => {
                    let (upto, events) = older.unwrap_or_default();
                    let mut replayed = 0;
                    for (seq, event) in events {
                        if let Some(event) = HubEvent::encode(&self.run, name, seq, &event) {
                            queue.push_unbounded(Out::Event {
                                topic: index,
                                event: Arc::new(event),
                            });
                            replayed += 1;
                        }
                    }
                    replay(&state, queue, index, upto, replayed);
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

    /// For a resume at `p` from before this instance's window of topic
    /// `name`: the source's events from `p` to the newest this instance
    /// has, and the position they reach. `None` if the topic is not here,
    /// `p` is inside the window, or the source cannot give them all.
    async fn older(&self, name: &str, p: u64) -> Option<(u64, Vec<(u64, Event)>)> {
        let last = {
            let topics = self.topics.lock();
            let state = topics.get(name)?.state.lock();
            if p >= state.floor || p > state.last {
                return None;
            }
            state.last
        };
        let events = self.source.history(name, p, last).await?;
        let upto = events.last().map_or(p, |(seq, _)| *seq);
        Some((upto, events))
    }

    /// A pool subscription for a new topic, asked for by `ip`: within that
    /// address's share of topics not yet proven (no event delivered yet),
    /// so that one client cannot fill the pool with topics that never
    /// deliver. Returns the subscription, the position it starts after (a
    /// numbered source's) and the address charged.
    async fn new_subscription(
        &self,
        name: &str,
        ip: IpAddr,
        from: From,
    ) -> Result<(Subscription, Option<u64>, IpAddr), JoinError> {
        {
            let mut unproven = self.unproven.lock();
            let held = unproven.entry(ip).or_insert(0);
            if *held >= self.config.max_unproven_topics_per_ip {
                if *held == 0 {
                    unproven.remove(&ip);
                }
                return Err(JoinError::Unproven {
                    limit: self.config.max_unproven_topics_per_ip,
                });
            }
            *held += 1;
        }
        match self.source.subscribe(name, from).await {
            Ok(opened) => Ok((opened.subscription, opened.after, ip)),
            Err(e) => {
                self.release_unproven(ip);
                Err(JoinError::Pool(e))
            }
        }
    }

    /// `ip`'s topic delivered (or went): one fewer unproven.
    fn release_unproven(&self, ip: IpAddr) {
        let mut unproven = self.unproven.lock();
        if let Some(held) = unproven.get_mut(&ip) {
            *held -= 1;
            if *held == 0 {
                unproven.remove(&ip);
            }
        }
    }

    /// Creates the topic `name` (its pump on `subscription`), charged to
    /// `creator` until it delivers.
    fn create(
        self: &Arc<Self>,
        topics: &mut HashMap<Arc<str>, Arc<Topic>>,
        name: &str,
        subscription: Subscription,
        after: Option<u64>,
        creator: IpAddr,
    ) -> Arc<Topic> {
        // A new incarnation takes a number of its own: a position from an
        // earlier incarnation is below its floor and gets a reset, because
        // what the upstream sent between incarnations reached nobody. A
        // numbered source says where its subscription starts instead:
        // everything after that comes, so the window begins there.
        let floor = match after {
            Some(after) => after,
            None => self.seq.fetch_add(1, Ordering::SeqCst) + 1,
        };
        let name: Arc<str> = Arc::from(name);
        let topic = Arc::new(Topic {
            name: name.clone(),
            state: Mutex::new(TopicState {
                replay: VecDeque::new(),
                replay_bytes: 0,
                gaps: VecDeque::new(),
                floor,
                last: floor,
                unpositioned: false,
                members: HashMap::new(),
                empty_since: None,
            }),
            pump: Mutex::new(None),
            emptied: Notify::new(),
            creator: Mutex::new(Some(creator)),
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
        topic
    }

    /// The topic proved itself (its first event) or went: its creator's
    /// share is freed, once. The pump calls this for its first event only,
    /// so later events cost nothing here.
    fn proven(&self, topic: &Topic) {
        if let Some(ip) = topic.creator.lock().take() {
            self.release_unproven(ip);
        }
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
        self.proven(topic);
        if let Some(pump) = topic.pump.lock().take() {
            // Dropping the pump drops the pool subscription: released.
            pump.abort();
        }
        tracing::debug!(topic = %topic.name, "no subscriber left: upstream released");
        metrics::record_topics(topics.len());
    }

    /// The topic's upstream stopped for good: forgotten now (no linger),
    /// so that the next subscriber asks the pool, which remembers why.
    fn forget(&self, topic: &Arc<Topic>) {
        let mut topics = self.topics.lock();
        if topics
            .get(&topic.name)
            .is_some_and(|t| Arc::ptr_eq(t, topic))
        {
            topics.remove(&topic.name);
            self.proven(topic);
            metrics::record_topics(topics.len());
        }
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
            "hub_unproven_ips": self.unproven.lock().len(),
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

impl<C: Connector> Hub<C> {
    /// Encodes `event` as `seq` once, keeps it in the replay window and
    /// queues it for every member of `topic`.
    fn deliver(
        &self,
        topic: &Topic,
        state: &mut TopicState,
        seq: u64,
        event: &Event,
        policy: Policy,
    ) {
        let Some(event) = HubEvent::encode(&self.run, &topic.name, seq, event) else {
            // An upstream type with CR/LF/NUL cannot come out of the
            // parser; skip rather than corrupt the stream.
            return;
        };
        let event = Arc::new(event);
        state.last = seq;
        state.replay_bytes += event.len();
        state.replay.push_back(event.clone());
        while state.replay.len() > self.config.replay_events
            || state.replay_bytes > self.config.replay_bytes
        {
            evict(state);
        }
        for member in state.members.values() {
            member.queue.push(member.index, event.clone(), policy);
        }
        metrics::record_event(state.members.len());
    }
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
    // Whether an event came yet: the creator's share is freed at the first.
    let mut delivered = false;
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
                // missed the same events.
                mark_gap(&topic, n);
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                if let Some(hub) = hub.upgrade() {
                    hub.forget(&topic);
                }
                return;
            }
        };
        let Some(hub) = hub.upgrade() else { return };
        // The creator's share is freed at the first event, of any kind.
        if !delivered && matches!(item, StreamItem::Event(_) | StreamItem::Sequenced { .. }) {
            delivered = true;
            hub.proven(&topic);
        }
        match item {
            StreamItem::Event(event) if hub.numbered => {
                // An event the source could not place in its log (a
                // cluster's fallback upstream while NATS is out of reach):
                // delivered live, kept out of the replay window, with an
                // id no instance resumes from.
                let mut state = topic.state.lock();
                state.unpositioned = true;
                let seq = hub.seq.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(event) =
                    HubEvent::encode_unpositioned(&hub.unpositioned_run, &topic.name, seq, &event)
                {
                    let event = Arc::new(event);
                    for member in state.members.values() {
                        member.queue.push(member.index, event.clone(), policy);
                    }
                    metrics::record_event(state.members.len());
                }
            }
            StreamItem::Event(event) => {
                let mut state = topic.state.lock();
                let seq = hub.seq.fetch_add(1, Ordering::SeqCst) + 1;
                hub.deliver(&topic, &mut state, seq, &event, policy);
            }
            StreamItem::Sequenced { sequence, event } => {
                let mut state = topic.state.lock();
                // Positions only grow: one seen already is not sent twice.
                if sequence > state.last {
                    if state.unpositioned {
                        // The log is back after events without a position:
                        // the window before them does not join what comes
                        // now (the log events the fallback delivered are
                        // skipped, not here). It starts again; an older
                        // resume is read from the log (`older`).
                        state.unpositioned = false;
                        state.replay.clear();
                        state.replay_bytes = 0;
                        state.gaps.clear();
                        state.floor = sequence - 1;
                        state.last = sequence - 1;
                    }
                    hub.deliver(&topic, &mut state, sequence, &event, policy);
                }
            }
            StreamItem::Missed { resumes_after } => {
                // The source lost events: no position before the loss is
                // continuous with what follows. Members are told (a reset:
                // their position is beyond the window now), and the window
                // starts again after the loss.
                let mut state = topic.state.lock();
                tracing::warn!(
                    resumes_after,
                    last = state.last,
                    "the source lost events of the topic; its subscribers are reset"
                );
                state.replay.clear();
                state.replay_bytes = 0;
                state.gaps.clear();
                state.floor = resumes_after;
                state.last = resumes_after;
                for member in state.members.values() {
                    member.queue.push_unbounded(Out::Reset {
                        topic: member.index,
                        reason: "beyond-window",
                    });
                }
                metrics::record_reset();
            }
            StreamItem::Gap { missed } => {
                // A packed connection lost events of this topic (it was
                // re-made without resuming).
                mark_gap(&topic, missed);
            }
            StreamItem::Status(status) if status.terminal => {
                // Stopped by the pool (a shutdown, a release): nothing wrong.
                if status.reason == Reason::Stop(StopReason::Requested) {
                    tracing::debug!("upstream stopped; ending its subscribers");
                } else {
                    tracing::warn!(reason = %status.reason, "upstream stopped for good; ending its subscribers");
                }
                // The upstream stopped for good: subscribers end (with a
                // retry hint) instead of waiting forever.
                let state = topic.state.lock();
                for member in state.members.values() {
                    member.queue.close(Closed::Upstream, false);
                }
                drop(state);
                hub.forget(&topic);
            }
            StreamItem::Status(status) => {
                tracing::debug!(phase = %status.phase, reason = %status.reason, "upstream");
            }
            // Comments, and kinds a newer source may send: nothing to do.
            _ => {}
        }
    }
}

/// Every member of `topic` missed the same `missed` events (0: how many is
/// unknown): they are told, and the replay buffer is marked, so that a
/// later resume across this point is told too instead of crossing it
/// silently.
fn mark_gap(topic: &Topic, missed: u64) {
    let mut state = topic.state.lock();
    let after = state.last;
    if state.gaps.len() >= MAX_GAPS {
        // Bounded: the oldest two become one (a resume across them is told
        // of both, in one notice).
        if let (Some(a), Some(b)) = (state.gaps.pop_front(), state.gaps.pop_front()) {
            state.gaps.push_front(Gap {
                after: b.after,
                missed: a.missed + b.missed,
            });
        }
    }
    state.gaps.push_back(Gap { after, missed });
    for member in state.members.values() {
        member.queue.push_unbounded(Out::Gap {
            topic: member.index,
            missed,
        });
    }
}
