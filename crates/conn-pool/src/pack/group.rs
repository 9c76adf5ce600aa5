//! One packed group's task: opens its connection for the set of its
//! members, re-packs make-before-break when the set changes (at most once
//! per `min_interval`), demultiplexes events to the members' sinks with
//! per-topic de-duplication, finds a topic the upstream refuses by
//! halving the suspects, and publishes each topic's state and health.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sse_health::{ErrorKind, StreamHealth};
use sse_parser::{Event, Utf8Bytes};
use sse_state_machine::{Phase, Reason, RotateReason, StopReason};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use crate::connector::Connector;
use crate::latency::latency_of;
use crate::metrics;
use crate::pack::config::Resume;
use crate::pack::dedup::Dedup;
use crate::pack::shared::{Context, Group, Sink};
use crate::request::UpstreamRequest;
use crate::stream::{Status, StreamHandle, StreamItem, spawn_stream};

/// How long a new connection that is open but has delivered nothing (its
/// topics are quiet) waits before it takes over anyway.
const QUIET_HANDOVER: Duration = Duration::from_secs(5);

/// How long a new group waits before its first connection, so that a
/// burst of joins (one request for many topics, a dashboard loading) is
/// one set, not a connection and a re-pack `min_interval` later.
const FIRST_SET_WINDOW: Duration = Duration::from_millis(25);

/// One connection of the group, with the set in its URL.
struct Conn {
    handle: StreamHandle,
    rx: broadcast::Receiver<StreamItem>,
    set: BTreeSet<Arc<str>>,
    /// When it was asked for, on both clocks (see `latency_of`).
    asked: (SystemTime, Instant),
    /// When it opened, if it has.
    opened: Option<Instant>,
}

/// One member topic, as the task keeps it.
struct Topic {
    sink: Arc<Sink>,
    /// Whether health was last told it is connected (its connection open
    /// and carrying it).
    connected: bool,
    dedup: Dedup,
    health: StreamHealth,
    events: u64,
    /// Its last delivered id: the event's own bytes, shared (no copy per
    /// event); made a string once a second, when the state is published.
    last_id: Utf8Bytes,
}

/// Which connection an item came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Current,
    Next,
}

struct Task<C> {
    context: Arc<Context<C>>,
    group: Arc<Group>,
    /// The connection delivering now.
    current: Option<Conn>,
    /// A re-pack's connection, until it delivers (then it is `current`).
    next: Option<Conn>,
    topics: HashMap<Arc<str>, Topic>,
    /// Suspects held out of the next set while a refused set is halved.
    held: BTreeSet<Arc<str>>,
    /// Topics refused for good, until their slot leaves the group.
    refused: BTreeSet<Arc<str>>,
    last_repack: Option<Instant>,
    /// Re-pack without waiting for `min_interval` (a refused set halved).
    urgent: bool,
    /// When the group was made.
    created: Instant,
    /// Members or connections changed: look at them and plan again.
    replan: bool,
    repacks: metrics::PackCounters,
}

/// Runs the group until its last member leaves.
pub(crate) async fn run<C: Connector>(context: Arc<Context<C>>, group: Arc<Group>) {
    let repacks = metrics::PackCounters::new(&context.route);
    let mut task = Task {
        context,
        group,
        current: None,
        next: None,
        topics: HashMap::new(),
        held: BTreeSet::new(),
        refused: BTreeSet::new(),
        last_repack: None,
        urgent: false,
        created: Instant::now(),
        replan: true,
        repacks,
    };
    let mut upkeep = tokio::time::interval(Duration::from_secs(1));
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let group = task.group.clone();
    let mut due = None;
    loop {
        let changed = group.changed.notified();
        // Members and plans are looked at when something changed, not per
        // event: an event costs its topic's lookup, whatever the set's size.
        if task.replan {
            task.replan = false;
            if !task.sync() {
                break;
            }
            due = task.plan();
        }
        tokio::select! {
            () = changed => task.replan = true,
            () = sleep_until(due) => task.replan = true,
            item = recv(task.current.as_mut()) => task.on_item(Which::Current, item),
            item = recv(task.next.as_mut()) => task.on_item(Which::Next, item),
            _ = upkeep.tick() => task.maintain(),
        }
    }
    for conn in [task.current.take(), task.next.take()]
        .into_iter()
        .flatten()
    {
        retire(task.context.clone(), conn).await;
    }
    task.group.live.lock().clear();
}

async fn recv(conn: Option<&mut Conn>) -> Result<StreamItem, RecvError> {
    match conn {
        Some(conn) => conn.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<C: Connector> Task<C> {
    /// Takes the members' changes; false when the group closed.
    fn sync(&mut self) -> bool {
        let mut members = self.group.members.lock();
        if members.closed {
            return false;
        }
        let (reconnect, rotate) = (members.reconnect, members.rotate);
        members.reconnect = false;
        members.rotate = false;
        self.topics.retain(|t, _| members.topics.contains_key(t));
        self.held.retain(|t| members.topics.contains_key(t));
        self.refused.retain(|t| members.topics.contains_key(t));
        let mut added = Vec::new();
        for (topic, sink) in &members.topics {
            if !self.topics.contains_key(topic) && !self.refused.contains(topic) {
                added.push((topic.clone(), sink.clone()));
            }
        }
        drop(members);
        let now = Instant::now().into_std();
        for (topic, sink) in added {
            self.topics.insert(
                topic,
                Topic {
                    sink,
                    connected: false,
                    dedup: Dedup::default(),
                    health: StreamHealth::new(self.context.stream.health.clone(), now),
                    events: 0,
                    last_id: Utf8Bytes::new(),
                },
            );
        }
        if let Some(current) = &self.current {
            if reconnect {
                current.handle.request_reconnect();
            }
            if rotate {
                current.handle.request_rotate(RotateReason::Manual);
            }
        }
        true
    }

    /// The set the group should carry now.
    fn target(&self) -> BTreeSet<Arc<str>> {
        self.topics
            .keys()
            .filter(|t| !self.held.contains(*t))
            .cloned()
            .collect()
    }

    /// Re-packs now if the set changed and it may; else when it may next.
    fn plan(&mut self) -> Option<Instant> {
        let mut target = self.target();
        let live = self.next.as_ref().or(self.current.as_ref()).map(|c| &c.set);
        if live == Some(&target) && self.next.is_none() && !self.held.is_empty() {
            // The set without the held suspects is proven: they are next.
            self.held.clear();
            target = self.target();
        }
        let live = self.next.as_ref().or(self.current.as_ref()).map(|c| &c.set);
        if target.is_empty() || live == Some(&target) {
            return None;
        }
        let now = Instant::now();
        let due = match self.last_repack {
            None => self.created + FIRST_SET_WINDOW,
            Some(last) if self.current.is_some() && !self.urgent => {
                last + self.context.pack.min_interval
            }
            _ => now,
        };
        if due > now {
            return Some(due);
        }
        self.repack(target);
        None
    }

    /// Opens a connection for `set`: the group's first, or the one that
    /// takes over from the current one once it delivers.
    fn repack(&mut self, set: BTreeSet<Arc<str>>) {
        let context = &self.context;
        let list: Vec<&Arc<str>> = set.iter().collect();
        let url = context.pack.url_for(&list);
        let mut request = match UpstreamRequest::get(&url) {
            Ok(request) => request,
            Err(e) => {
                tracing::error!(route = %context.route, error = %e, "packed URL refused");
                return;
            }
        };
        request.headers = context.headers.clone();
        let mut config = context.stream.clone();
        config.seed ^= self.group.id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        config.resume = context.pack.resume == Resume::LastEventId;
        config.last_event_id = match context.pack.resume {
            Resume::LastEventId => self
                .current
                .as_ref()
                .map(|c| c.handle.state().last_event_id)
                .filter(|id| !id.is_empty()),
            Resume::None => None,
        };
        let handle = match spawn_stream(context.connector.clone(), request, config) {
            Ok(handle) => handle,
            Err(e) => {
                tracing::error!(route = %context.route, error = %e, "packed stream refused");
                return;
            }
        };
        tracing::info!(route = %context.route, group = self.group.id, topics = set.len(), "packed connection (re)opened for a new set");
        let conn = Conn {
            rx: handle.subscribe(),
            handle,
            set,
            asked: (SystemTime::now(), Instant::now()),
            opened: None,
        };
        self.last_repack = Some(Instant::now());
        self.urgent = false;
        if self.current.is_none() {
            self.current = Some(conn);
        } else {
            self.repacks.repack();
            if let Some(old) = self.next.replace(conn) {
                self.retire_now(old);
            }
        }
        self.publish_live();
    }

    fn publish_live(&mut self) {
        self.replan = true;
        let live = [self.current.as_ref(), self.next.as_ref()]
            .into_iter()
            .flatten()
            .map(|c| c.handle.watch_state())
            .collect();
        *self.group.live.lock() = live;
    }

    fn on_item(&mut self, which: Which, item: Result<StreamItem, RecvError>) {
        match item {
            Ok(StreamItem::Event(event)) => {
                if which == Which::Next {
                    self.switch();
                }
                self.on_event(event);
            }
            Ok(StreamItem::Status(status)) => self.on_status(which, status),
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => {
                // This task fell behind its own connection: every topic of
                // the set may have lost events, and is told so.
                self.repacks.dropped("lagged", n);
                let set = self.conn(which).map(|c| c.set.clone()).unwrap_or_default();
                for topic in set.iter().filter_map(|t| self.topics.get(t)) {
                    let _ = topic.sink.items.send(StreamItem::Gap { missed: n });
                }
            }
            Err(RecvError::Closed) => {
                let conn = match which {
                    Which::Current => self.current.take(),
                    Which::Next => self.next.take(),
                };
                if let Some(conn) = conn {
                    self.retire_now(conn);
                }
                if self.current.is_none() {
                    self.current = self.next.take();
                }
                self.publish_live();
            }
        }
    }

    fn conn(&self, which: Which) -> Option<&Conn> {
        match which {
            Which::Current => self.current.as_ref(),
            Which::Next => self.next.as_ref(),
        }
    }

    /// The re-pack's connection delivered: it takes over, the old one goes.
    fn switch(&mut self) {
        let Some(next) = self.next.take() else { return };
        if let Some(old) = self.current.replace(next) {
            self.retire_now(old);
        }
        // The halves held back are tried in the next re-pack.
        self.held.clear();
        self.publish_live();
        self.publish_all();
    }

    fn on_event(&mut self, event: Event) {
        let Some(current) = &self.current else { return };
        let name = match self.context.pack.demux.topic_of(&event) {
            Ok(name) => name,
            Err(_) => {
                self.repacks.dropped("no_topic", 1);
                return;
            }
        };
        let in_set = current.set.contains(&*name);
        let Some(topic) = self.topics.get_mut(&*name).filter(|_| in_set) else {
            if !in_set {
                // Not a topic this connection asked for.
                self.repacks.dropped("unknown_topic", 1);
            }
            return;
        };
        if !topic.dedup.admit(&event.id) {
            self.repacks.duplicate();
            return;
        }
        let latency = self
            .context
            .stream
            .health
            .event_time
            .as_ref()
            .and_then(|time| latency_of(time, &event.data, current.asked));
        topic.health.on_event(Instant::now().into_std(), latency);
        topic.events += 1;
        topic.last_id = event.id.clone();
        let _ = topic.sink.items.send(StreamItem::Event(event));
    }

    fn on_status(&mut self, which: Which, status: Status) {
        if which == Which::Next {
            if status.phase == Phase::Open
                && let Some(next) = self.next.as_mut()
            {
                next.opened.get_or_insert_with(Instant::now);
            }
            if status.terminal {
                self.on_stopped(which, status.reason);
            }
            return;
        }
        let set = self
            .current
            .as_ref()
            .map(|c| c.set.clone())
            .unwrap_or_default();
        let now = Instant::now().into_std();
        let error = error_kind(status.reason);
        for name in &set {
            let Some(topic) = self.topics.get_mut(name) else {
                continue;
            };
            if let Some(kind) = error {
                topic.health.on_error(now, kind);
            }
            if !status.terminal {
                let _ = topic.sink.items.send(StreamItem::Status(status));
            }
        }
        // Without a resume, what a topic missed across the reconnect is
        // not known: each topic of the set is told.
        if status.phase == Phase::Open
            && status.reason == Reason::Opened
            && self.context.pack.resume == Resume::None
            && self
                .current
                .as_ref()
                .is_some_and(|c| c.handle.state().opened > 1)
        {
            for topic in set.iter().filter_map(|t| self.topics.get(t)) {
                let _ = topic.sink.items.send(StreamItem::Gap { missed: 0 });
            }
        }
        if status.terminal {
            self.on_stopped(which, status.reason);
        }
        self.publish_all();
    }

    /// A connection stopped. For good (a 404, another 4xx, a 204, a refused
    /// redirect): one topic of its set is refused, or one of the suspects
    /// is; halve them until one is left, and refuse that one.
    fn on_stopped(&mut self, which: Which, reason: Reason) {
        let conn = match which {
            Which::Current => self.current.take(),
            Which::Next => self.next.take(),
        };
        let Some(conn) = conn else { return };
        let proven: BTreeSet<Arc<str>> = match which {
            Which::Next => self
                .current
                .as_ref()
                .map(|c| c.set.clone())
                .unwrap_or_default(),
            Which::Current => BTreeSet::new(),
        };
        let set = conn.set.clone();
        self.retire_now(conn);
        if which == Which::Current && self.next.is_some() {
            // The re-pack's connection takes over.
            self.current = self.next.take();
            self.publish_live();
            return;
        }
        let Reason::Stop(stop) = reason else {
            self.publish_live();
            return;
        };
        if stop == StopReason::Requested {
            self.publish_live();
            return;
        }
        let suspects: Vec<Arc<str>> = set
            .iter()
            .filter(|t| !proven.contains(*t) && self.topics.contains_key(*t))
            .cloned()
            .collect();
        match suspects.as_slice() {
            [] => {}
            [one] => self.refuse(one.clone(), stop),
            many => {
                tracing::info!(
                    route = %self.context.route,
                    suspects = many.len(),
                    %reason,
                    "the upstream refused a packed set; halving it to find the topic"
                );
                self.held.extend(many[many.len() / 2..].iter().cloned());
                self.urgent = true;
            }
        }
        self.publish_live();
    }

    /// The upstream refused `topic` for good: its subscribers are told,
    /// and its slot (watching its state) is freed and the answer
    /// remembered by the pool.
    fn refuse(&mut self, topic: Arc<str>, stop: StopReason) {
        tracing::warn!(route = %self.context.route, topic = %topic, reason = %Reason::Stop(stop), "the upstream refused a packed topic; moved out");
        self.held.remove(&topic);
        self.refused.insert(topic.clone());
        self.urgent = true;
        self.replan = true;
        let Some(gone) = self.topics.remove(&topic) else {
            return;
        };
        let status = Status {
            phase: Phase::Stopped,
            reason: Reason::Stop(stop),
            terminal: true,
        };
        let _ = gone.sink.items.send(StreamItem::Status(status));
        gone.sink.state.send_modify(|s| {
            s.phase = Phase::Stopped;
            s.reason = Reason::Stop(stop);
            s.since = Instant::now();
        });
    }

    /// Evaluates each topic's health and publishes its state.
    fn maintain(&mut self) {
        if let Some(next) = &self.next
            && next.opened.is_some_and(|at| at.elapsed() >= QUIET_HANDOVER)
        {
            self.switch();
        }
        self.publish_all();
    }

    /// Publishes every topic's state: its connection's, with its own
    /// events, last id and health.
    fn publish_all(&mut self) {
        let now = Instant::now().into_std();
        let conn = self.current.as_ref().map(|c| (c.handle.state(), &c.set));
        for (name, topic) in &mut self.topics {
            let carried = conn
                .as_ref()
                .is_some_and(|(state, set)| state.phase == Phase::Open && set.contains(name));
            if carried != topic.connected {
                topic.connected = carried;
                if carried {
                    topic.health.on_connected(now);
                } else {
                    topic.health.on_disconnected(now);
                }
            }
            let verdict = topic.health.evaluate(now);
            let (level, since) = (verdict.level, Instant::from_std(verdict.since));
            let causes: Vec<String> = verdict.causes.iter().map(ToString::to_string).collect();
            let stats = topic.health.stats(now);
            topic.sink.state.send_modify(|s| {
                match &conn {
                    Some((state, set)) if set.contains(name) => {
                        s.attempts = state.attempts;
                        s.opened = state.opened;
                        s.rotations = state.rotations;
                        s.bytes = state.bytes;
                        s.errors = state.errors;
                        if s.phase != state.phase {
                            s.since = state.since;
                        }
                        s.phase = state.phase;
                        s.reason = state.reason;
                    }
                    _ => {
                        if s.phase != Phase::Connecting {
                            s.since = Instant::now();
                        }
                        s.phase = Phase::Connecting;
                        s.reason = Reason::Start;
                    }
                }
                s.events = topic.events;
                if !topic.last_id.is_empty() && s.last_event_id != topic.last_id.as_str() {
                    s.last_event_id = topic.last_id.to_string();
                }
                s.latency_p50 = stats.latency_p50;
                s.latency_p99 = stats.latency_p99;
                s.health = level;
                s.health_since = since;
                s.causes = causes;
            });
        }
    }

    /// Stops `conn` without waiting, its counters kept in the route's.
    fn retire_now(&self, conn: Conn) {
        let context = self.context.clone();
        tokio::spawn(retire(context, conn));
    }
}

/// Stops `conn`, and keeps its counters in the route's.
async fn retire<C>(context: Arc<Context<C>>, conn: Conn) {
    let state = conn.handle.watch_state();
    conn.handle.stop().await;
    context.retired.lock().add(&state.borrow());
}

/// The error a phase change reports to health, as a stream's own does.
fn error_kind(reason: Reason) -> Option<ErrorKind> {
    match reason {
        Reason::Failed(_) | Reason::EndOfBody => Some(ErrorKind::Stream),
        Reason::Status(_) | Reason::NotEventStream => Some(ErrorKind::Status),
        Reason::Timeout(_) => Some(ErrorKind::Timeout),
        _ => None,
    }
}
