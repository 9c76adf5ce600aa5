//! Packed routes: many topics on one upstream connection.
//!
//! A route with a [`Pack`] serves its topics in groups. Each group is one
//! upstream connection carrying at most `max_topics` topics (the set is in
//! its URL), run by one task ([`group`]) that demultiplexes every event to
//! its topic's [`Sink`] and keeps each topic's last id. The pool holds a
//! slot per topic as for any topic (subscribers, linger, negative cache);
//! what a packed slot holds is a [`Member`] of a group instead of a
//! stream of its own. Caps count connections: a group is one stream of the
//! pool's `max_streams`, of the route's, and of its host's.
//!
//! Membership changes under the pool's lock (in lock order: the pool's
//! slots, then a packer's groups, then a group's members), so the number
//! of groups the pool's cap sees is exact. The group task reads its
//! members when it may re-pack: at most once per `min_interval`.

pub(crate) mod config;
mod dedup;
mod group;
mod shared;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

pub use config::{Demux, MAX_PACK_TOPICS, Pack, Resume};
pub use dedup::position as id_position;
pub(crate) use shared::{Context, Group, Members, Sink};

use crate::connector::Connector;
use crate::error::PoolError;
use crate::stream::{StreamItem, StreamState};
use crate::totals::Totals;

/// Leaves a group: what a [`Member`] calls when its slot goes.
pub(crate) trait Leave: Send + Sync {
    fn leave(&self, group: &Arc<Group>, topic: &Arc<str>, sink: &Arc<Sink>);
}

/// One route's packed groups.
pub(crate) struct Packer<C> {
    pub(crate) context: Arc<Context<C>>,
    /// `host:port` of its URL, for the per-host cap.
    pub(crate) host: Arc<str>,
    groups: Mutex<Vec<Arc<Group>>>,
    next_id: AtomicU64,
    /// Groups of every packer of the pool (shared): each is one stream of
    /// the pool's cap.
    open: Arc<AtomicUsize>,
    /// The pool's "a slot freed up" signal.
    freed: Arc<Notify>,
    /// The route's streams gauge: its groups.
    gauge: ::metrics::Gauge,
    /// Tasks of groups that closed, until they end (`drain` awaits them).
    ending: Mutex<Vec<JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
}

/// A packed topic's place in its group: what its pool slot holds.
/// Dropping it leaves the group.
pub(crate) struct Member {
    pub(crate) sink: Arc<Sink>,
    topic: Arc<str>,
    group: Arc<Group>,
    packer: Arc<dyn Leave>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("topic", &self.topic)
            .field("group", &self.group.id)
            .finish_non_exhaustive()
    }
}

impl Member {
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StreamItem> {
        self.sink
            .first
            .lock()
            .take()
            .unwrap_or_else(|| self.sink.items.subscribe())
    }

    /// Asks the group for a reconnect (`rotate`: make-before-break).
    pub(crate) fn request(&self, rotate: bool) -> bool {
        let mut members = self.group.members.lock();
        if members.closed {
            return false;
        }
        if rotate {
            members.rotate = true;
        } else {
            members.reconnect = true;
        }
        drop(members);
        self.group.changed.notify_one();
        true
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.packer.leave(&self.group, &self.topic, &self.sink);
    }
}

impl<C: Connector> Packer<C> {
    pub(crate) fn new(
        context: Context<C>,
        open: Arc<AtomicUsize>,
        freed: Arc<Notify>,
        gauge: ::metrics::Gauge,
    ) -> Self {
        let url = context.pack.url_for(&["topic-placeholder"]);
        let host = crate::request::UpstreamRequest::get(&url)
            .map(|r| {
                let target = crate::request::target(r.url());
                format!("{}:{}", target.host, target.port)
            })
            .unwrap_or_default();
        Self {
            host: Arc::from(host),
            context: Arc::new(context),
            groups: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            open,
            freed,
            gauge,
            ending: Mutex::new(Vec::new()),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Waits for every group task to end (the pool closed: their members
    /// are gone).
    pub(crate) async fn drain(&self) {
        let mut tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.ending.lock());
        for group in self.groups.lock().iter() {
            group.members.lock().closed = true;
            group.changed.notify_one();
            tasks.extend(group.task.lock().take());
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Places `topic` in a group: the fullest with room (fewest
    /// connections), or a new one if `room` (the pool's caps) allows and
    /// the route's `max_streams` does. Call it under the pool's lock.
    pub(crate) fn join(
        self: &Arc<Self>,
        topic: &Arc<str>,
        route_cap: Option<usize>,
        retry_after: std::time::Duration,
        room: impl FnOnce() -> Result<(), PoolError>,
        initial: StreamState,
    ) -> Result<Member, PoolError> {
        let max = self.context.pack.max_topics;
        let mut groups = self.groups.lock();
        let fullest = groups
            .iter()
            .map(|g| (g.len(), g))
            .filter(|(len, _)| *len < max)
            .max_by_key(|(len, _)| *len)
            .map(|(_, g)| g.clone());
        let group = match fullest {
            Some(group) => group,
            None => {
                if let Some(limit) = route_cap
                    && groups.len() >= limit
                {
                    return Err(PoolError::RouteAtCapacity {
                        route: self.context.route.to_string(),
                        limit,
                        retry_after,
                    });
                }
                room()?;
                let group = Arc::new(Group {
                    members: Mutex::new(Members::default()),
                    changed: Notify::new(),
                    live: Mutex::new(Vec::new()),
                    id: self.next_id.fetch_add(1, Ordering::Relaxed),
                    task: Mutex::new(None),
                });
                groups.push(group.clone());
                self.open.fetch_add(1, Ordering::SeqCst);
                self.gauge.set(groups.len() as f64);
                let task = self
                    .runtime
                    .spawn(group::run(self.context.clone(), group.clone()));
                *group.task.lock() = Some(task);
                group
            }
        };
        let (items, first) = broadcast::channel(self.context.stream.channel_capacity.max(1));
        let sink = Arc::new(Sink {
            items,
            first: Mutex::new(Some(first)),
            state: watch::channel(initial).0,
        });
        group
            .members
            .lock()
            .topics
            .insert(topic.clone(), sink.clone());
        group.changed.notify_one();
        Ok(Member {
            sink,
            topic: topic.clone(),
            group,
            packer: self.clone(),
        })
    }

    /// Connections of this route now (groups).
    pub(crate) fn groups(&self) -> usize {
        self.groups.lock().len()
    }

    /// The counters of this route's connections, live and retired.
    pub(crate) fn totals(&self) -> Totals {
        let mut totals = *self.context.retired.lock();
        for group in self.groups.lock().iter() {
            for state in group.live.lock().iter() {
                totals.add(&state.borrow());
            }
        }
        totals
    }
}

impl<C: Connector> Leave for Packer<C> {
    fn leave(&self, group: &Arc<Group>, topic: &Arc<str>, sink: &Arc<Sink>) {
        let mut groups = self.groups.lock();
        let mut members = group.members.lock();
        // Only the member this was: a topic that left and came back to the
        // same group is another member.
        if members
            .topics
            .get(topic)
            .is_some_and(|s| Arc::ptr_eq(s, sink))
        {
            members.topics.remove(topic);
        }
        if members.topics.is_empty() && !members.closed {
            members.closed = true;
            groups.retain(|g| !Arc::ptr_eq(g, group));
            self.open.fetch_sub(1, Ordering::SeqCst);
            self.gauge.set(groups.len() as f64);
            if let Some(task) = group.task.lock().take() {
                let mut ending = self.ending.lock();
                ending.retain(|t| !t.is_finished());
                ending.push(task);
            }
            drop(members);
            drop(groups);
            self.freed.notify_waiters();
        } else {
            drop(members);
        }
        group.changed.notify_one();
    }
}
