//! The pool: one upstream stream per topic, shared by every subscriber,
//! released after an idle linger, within a cap.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::checks::valid_topic;
pub use crate::config::PoolConfig;
use crate::connector::Connector;
pub use crate::error::PoolError;
use crate::feed::Feed;
pub use crate::info::{PoolCounts, StreamInfo};
use crate::metrics;
use crate::pack::{Context, Packer};
use crate::refused::Refused;
use crate::request::UpstreamRequest;
use crate::slots::{Join, Slots};
use crate::stream::{StreamHandle, StreamItem, StreamState, spawn_stream};
pub use crate::subscription::Subscription;
use crate::subscription::{Guard, Release};
use crate::totals::Totals;
use sse_state_machine::{Phase, Reason, StopReason};

/// A shared pool of upstream streams. Cheap to clone.
pub struct Pool<C: Connector> {
    inner: Arc<Inner<C>>,
}

impl<C: Connector> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C> {
    config: PoolConfig,
    connector: C,
    runtime: tokio::runtime::Handle,
    state: Mutex<Slots<Entry>>,
    /// Signalled whenever a stream leaves the pool (a slot frees up).
    slot_freed: Arc<tokio::sync::Notify>,
    /// Subscriptions waiting for a slot.
    pending: std::sync::atomic::AtomicUsize,
    /// The counters of streams already removed.
    retired: Mutex<Totals>,
    /// The stream cap in force (reloadable; `config.max_streams` at start).
    max_streams: std::sync::atomic::AtomicUsize,
    /// The pool's seed (`config.seed`, or drawn at start).
    seed: u64,
    /// Topics the upstream refused for good, and its answers.
    refused: Refused,
    /// Each route's streams gauge, in the routes' order (a packed route's
    /// is its packer's).
    route_gauges: Vec<::metrics::Gauge>,
    /// Each route's packer, if it packs (in the routes' order).
    packers: Vec<Option<Arc<Packer<C>>>>,
    /// Packed connections (groups) of every packer: streams of the cap.
    packed_open: Arc<std::sync::atomic::AtomicUsize>,
}

/// What [`Pool::request_for`] resolved for a topic.
struct Upstream {
    request: UpstreamRequest,
    host: Arc<str>,
    route: Option<usize>,
}

/// What the pool keeps per topic.
struct Entry {
    handle: Feed,
    /// Shared by every subscription's guard: no allocation per subscriber.
    topic: Arc<str>,
    /// `host:port` of its URL, for the per-host cap.
    host: Arc<str>,
    /// Its route (an index into `routes`), for the route's cap.
    route: Option<usize>,
    /// The linger timer, while no subscriber is left.
    linger: Option<JoinHandle<()>>,
}

/// Records the pool's size (called with the lock held, after a change).
/// `routes` holds each route's streams gauge, in the routes' order, made
/// once: this runs under the lock on every join and release, so it costs
/// one pass over the slots and no metric lookup, and nothing without routes.
/// A packed route's gauge is its packer's to set (its groups), so skipped.
fn record<C>(
    slots: &Slots<Entry>,
    routes: &[::metrics::Gauge],
    packers: &[Option<Arc<Packer<C>>>],
) {
    metrics::record_pool(slots.len(), slots.subscribers());
    if routes.is_empty() {
        return;
    }
    let mut held = vec![0usize; routes.len()];
    for (_, slot) in slots.iter() {
        if let Some(count) = slot.value.route.and_then(|i| held.get_mut(i)) {
            *count += 1;
        }
    }
    for ((gauge, held), packer) in routes.iter().zip(held).zip(packers) {
        if packer.is_none() {
            gauge.set(held as f64);
        }
    }
}

impl<C: Connector> Pool<C> {
    /// A pool; call it inside a tokio runtime (linger timers run on it).
    ///
    /// # Errors
    ///
    /// The configuration is invalid ([`PoolConfig::validate`]).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn new(config: PoolConfig, connector: C) -> Result<Self, PoolError> {
        config
            .validate()
            .map_err(|e| PoolError::Config(e.to_string()))?;
        let cap = config.max_streams;
        let route_gauges: Vec<::metrics::Gauge> = config
            .routes
            .iter()
            .map(|route| metrics::route_gauge(&route.name))
            .collect();
        for gauge in &route_gauges {
            gauge.set(0.0);
        }
        let config_seed = config.seed.unwrap_or_else(random_seed);
        let negative_ttl = config.negative_ttl;
        let slot_freed = Arc::new(tokio::sync::Notify::new());
        let packed_open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let packers = config
            .routes
            .iter()
            .zip(&route_gauges)
            .map(|(route, gauge)| {
                let pack = route.pack.clone()?;
                let mut stream = config.stream.clone();
                stream.route = Some(Arc::from(route.name.as_str()));
                if let Some(health) = &route.health {
                    stream.health = health.clone();
                }
                stream.seed = config_seed ^ seed_of(&route.name);
                metrics::describe_pack(&route.name);
                let context = Context {
                    route: Arc::from(route.name.as_str()),
                    pack,
                    headers: route.headers.clone(),
                    stream,
                    connector: connector.clone(),
                    retired: Mutex::new(Totals::default()),
                };
                Some(Arc::new(Packer::new(
                    context,
                    packed_open.clone(),
                    slot_freed.clone(),
                    gauge.clone(),
                )))
            })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                state: Mutex::new(Slots::new(cap)),
                route_gauges,
                packers,
                packed_open,
                config,
                connector,
                runtime: tokio::runtime::Handle::current(),
                slot_freed,
                pending: std::sync::atomic::AtomicUsize::new(0),
                retired: Mutex::new(Totals::default()),
                max_streams: std::sync::atomic::AtomicUsize::new(cap),
                seed: config_seed,
                refused: Refused::new(negative_ttl),
            }),
        })
    }

    /// Checks `topic` against the topic rules without subscribing.
    ///
    /// # Errors
    ///
    /// `InvalidTopic`, saying what is allowed.
    pub fn check_topic(&self, topic: &str) -> Result<(), PoolError> {
        if !valid_topic(topic, self.inner.config.max_topic_len) {
            return Err(PoolError::InvalidTopic(topic.chars().take(80).collect()));
        }
        if self.inner.config.resolve(topic).is_none() {
            return Err(PoolError::UnknownStream(topic.to_string()));
        }
        Ok(())
    }

    /// Subscribes to `topic`: joins its stream if one is open (at "now"), or
    /// opens it. Dropping the subscription releases it, on every path.
    ///
    /// # Errors
    ///
    /// An invalid topic, the cap reached, or a closed pool. Nothing is
    /// half-created on error.
    pub fn subscribe(&self, topic: &str) -> Result<Subscription, PoolError> {
        self.subscribe_from(topic, None)
    }

    /// As [`subscribe`](Self::subscribe); a stream this opens sends
    /// `last_event_id` (if any) as `Last-Event-ID` on its first request, so
    /// the upstream continues after it. A stream already open is joined as
    /// it is. A cluster's new owner resumes a topic where the old one left.
    ///
    /// # Errors
    ///
    /// As `subscribe`.
    pub fn subscribe_from(
        &self,
        topic: &str,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, PoolError> {
        let config = &self.inner.config;
        if !valid_topic(topic, config.max_topic_len) {
            metrics::record_refused("invalid_topic");
            return Err(PoolError::InvalidTopic(topic.chars().take(80).collect()));
        }
        if let Some(refused) = self.inner.refused(topic) {
            metrics::record_refused("upstream_stopped");
            return Err(refused);
        }
        let packer = self.inner.packer_of(topic);
        let mut state = self.inner.state.lock();
        // A stream that stopped for good and is not yet evicted (its
        // watcher has not run): evicted now, its answer remembered.
        if let Some(slot) = state.get(topic)
            && let Some(reason) = stopped_for_good(&slot.value.handle.state())
        {
            let arc = slot.value.topic.clone();
            drop(state);
            self.inner.stopped(&arc, reason);
            return Err(self.inner.refused(topic).unwrap_or(PoolError::Stopped {
                topic: topic.to_string(),
                reason,
                retry_after: self.inner.config.negative_ttl,
            }));
        }
        state.set_reserved(
            self.inner
                .packed_open
                .load(std::sync::atomic::Ordering::SeqCst),
        );
        match state.join_as(topic, packer.is_none()) {
            Join::Joined(slot) => {
                if let Some(linger) = slot.value.linger.take() {
                    linger.abort();
                }
                // A stream that stopped for good (a 204, a 4xx) is retried
                // for a new subscriber: new demand, one new attempt.
                if slot.value.handle.is_finished()
                    && let Ok(upstream) = self.request_for(topic)
                    && let Ok(handle) = self.spawn(topic, upstream, last_event_id)
                {
                    slot.value.handle = Feed::Stream(handle);
                }
                let rx = slot.value.handle.subscribe();
                let topic = slot.value.topic.clone();
                record(&state, &self.inner.route_gauges, &self.inner.packers);
                return Ok(self.subscription(topic, rx));
            }
            Join::Vacant => {}
            Join::AtCapacity => {
                metrics::record_refused("at_capacity");
                return Err(PoolError::AtCapacity {
                    limit: self.max_streams(),
                    retry_after: config.idle_linger,
                });
            }
            Join::Closed => {
                metrics::record_refused("closed");
                return Err(PoolError::Closed);
            }
        }
        if let Some((index, packer)) = packer {
            return self.join_packed(state, topic, index, &packer);
        }
        let upstream = self.request_for(topic)?;
        let host = upstream.host.clone();
        let route = upstream.route;
        let on_host = state
            .iter()
            .filter(|(_, s)| s.value.handle.is_stream() && s.value.host == host)
            .count()
            + self.inner.groups_on(&host);
        if on_host >= config.max_streams_per_host {
            metrics::record_refused("host_at_capacity");
            return Err(PoolError::HostAtCapacity {
                limit: config.max_streams_per_host,
                retry_after: config.idle_linger,
            });
        }
        if let Some(index) = route
            && let Some(limit) = config.routes[index].max_streams
            && state.iter().filter(|(_, s)| s.value.route == route).count() >= limit
        {
            metrics::record_refused("route_at_capacity");
            return Err(PoolError::RouteAtCapacity {
                route: config.routes[index].name.clone(),
                limit,
                retry_after: config.idle_linger,
            });
        }
        let handle = Feed::Stream(self.spawn(topic, upstream, last_event_id)?);
        let rx = handle.subscribe();
        let shared: Arc<str> = Arc::from(topic);
        self.watch_for_stop(shared.clone(), handle.watch_state());
        state.insert(
            topic,
            Entry {
                handle,
                topic: shared.clone(),
                host,
                route,
                linger: None,
            },
        );
        record(&state, &self.inner.route_gauges, &self.inner.packers);
        Ok(self.subscription(shared, rx))
    }

    /// Subscribes to `topic` of the packed route `index` (its slot was
    /// vacant): a place in one of the route's groups. A group is one stream
    /// of the pool's cap and of the route's; topics are bounded by them
    /// (`max_topics` each).
    fn join_packed(
        &self,
        mut state: parking_lot::MutexGuard<'_, Slots<Entry>>,
        topic: &str,
        index: usize,
        packer: &Arc<Packer<C>>,
    ) -> Result<Subscription, PoolError> {
        let config = &self.inner.config;
        let shared: Arc<str> = Arc::from(topic);
        let counted = state.counted();
        let cap = self.max_streams();
        let open = &self.inner.packed_open;
        let host = packer.host.clone();
        // Counted before the packer's lock is taken (`room` runs under it).
        let on_host = state
            .iter()
            .filter(|(_, s)| s.value.handle.is_stream() && s.value.host == host)
            .count()
            + self.inner.groups_on(&host);
        let room = || {
            if counted + open.load(std::sync::atomic::Ordering::SeqCst) >= cap {
                return Err(PoolError::AtCapacity {
                    limit: cap,
                    retry_after: config.idle_linger,
                });
            }
            if on_host >= config.max_streams_per_host {
                return Err(PoolError::HostAtCapacity {
                    limit: config.max_streams_per_host,
                    retry_after: config.idle_linger,
                });
            }
            Ok(())
        };
        let member = packer
            .join(
                &shared,
                config.routes[index].max_streams,
                config.idle_linger,
                room,
                StreamState::initial(None),
            )
            .inspect_err(|e| {
                metrics::record_refused(match e {
                    PoolError::RouteAtCapacity { .. } => "route_at_capacity",
                    PoolError::HostAtCapacity { .. } => "host_at_capacity",
                    _ => "at_capacity",
                });
            })?;
        let feed = Feed::Packed(member);
        let rx = feed.subscribe();
        self.watch_for_stop(shared.clone(), feed.watch_state());
        state.insert_as(
            topic,
            Entry {
                handle: feed,
                topic: shared.clone(),
                host: Arc::from(""),
                route: Some(index),
                linger: None,
            },
            false,
        );
        record(&state, &self.inner.route_gauges, &self.inner.packers);
        Ok(self.subscription(shared, rx))
    }

    /// The request for `topic`, its `host:port`, and the route that takes
    /// it (an index into `routes`).
    fn request_for(&self, topic: &str) -> Result<Upstream, PoolError> {
        let Some(resolved) = self.inner.config.resolve(topic) else {
            metrics::record_refused("unknown_stream");
            return Err(PoolError::UnknownStream(topic.to_string()));
        };
        let mut request =
            UpstreamRequest::get(&resolved.url).map_err(|e| PoolError::Config(e.to_string()))?;
        request.headers = resolved.headers.clone();
        let target = crate::request::target(request.url());
        let host = Arc::from(format!("{}:{}", target.host, target.port));
        Ok(Upstream {
            request,
            host,
            route: resolved.route,
        })
    }

    /// Watches the stream of `topic` (the incarnation `arc` names) until it
    /// stops; if its upstream stopped it for good, frees its slot at once.
    fn watch_for_stop(&self, arc: Arc<str>, mut state: tokio::sync::watch::Receiver<StreamState>) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.runtime.spawn(async move {
            let reason = match state.wait_for(|s| s.phase == Phase::Stopped).await {
                Ok(stopped) => stopped_for_good(&stopped),
                Err(_) => None,
            };
            if let (Some(reason), Some(inner)) = (reason, weak.upgrade()) {
                inner.stopped(&arc, reason);
            }
        });
    }

    /// The state of `topic`'s stream as it changes, if the pool has one.
    pub(crate) fn watch_of(
        &self,
        topic: &str,
    ) -> Option<tokio::sync::watch::Receiver<StreamState>> {
        let state = self.inner.state.lock();
        state.get(topic).map(|slot| slot.value.handle.watch_state())
    }

    /// Starts the stream of `topic` on the pool's runtime.
    fn spawn(
        &self,
        topic: &str,
        upstream: Upstream,
        last_event_id: Option<&str>,
    ) -> Result<StreamHandle, PoolError> {
        let request = upstream.request;
        let mut stream_config = self.inner.config.stream.clone();
        if let Some(route) = upstream.route.map(|i| &self.inner.config.routes[i]) {
            stream_config.route = Some(Arc::from(route.name.as_str()));
            if let Some(health) = &route.health {
                stream_config.health = health.clone();
            }
        }
        stream_config.seed = self.inner.seed ^ seed_of(topic);
        if let Some(id) = last_event_id {
            stream_config.last_event_id = Some(id.to_string());
        }
        let _runtime = self.inner.runtime.enter();
        spawn_stream(self.inner.connector.clone(), request, stream_config)
            .map_err(|e| PoolError::Config(e.to_string()))
    }

    pub(crate) fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    pub(crate) fn slot_freed(&self) -> &tokio::sync::Notify {
        &self.inner.slot_freed
    }

    /// The count of subscriptions waiting for a slot.
    pub(crate) fn waiters(&self) -> &std::sync::atomic::AtomicUsize {
        &self.inner.pending
    }

    /// Stops `topic`'s stream now if no subscriber is left (skipping its
    /// idle linger): a cluster owner that lost its lease must close the
    /// upstream within the lease's time, not after a linger. Whether it
    /// stopped one.
    pub async fn stop_idle(&self, topic: &str) -> bool {
        let entry = {
            let mut state = self.inner.state.lock();
            let entry = match state.get(topic) {
                Some(slot) if slot.subscribers == 0 => state.evict(topic),
                _ => None,
            };
            record(&state, &self.inner.route_gauges, &self.inner.packers);
            entry
        };
        let Some(entry) = entry else { return false };
        if let Some(linger) = &entry.linger {
            linger.abort();
        }
        self.inner.slot_freed.notify_waiters();
        self.inner.retire(&entry);
        entry.handle.stop().await;
        true
    }

    /// Drops `topic`'s connection and reconnects at once (an operator's
    /// "kick"). False if the pool has no such stream.
    pub fn reconnect(&self, topic: &str) -> bool {
        let state = self.inner.state.lock();
        state
            .get(topic)
            .is_some_and(|slot| slot.value.handle.request_reconnect())
    }

    /// Replaces `topic`'s connection make-before-break: no gap, no
    /// duplicate. False if the pool has no such stream.
    pub fn rotate(&self, topic: &str) -> bool {
        let state = self.inner.state.lock();
        state
            .get(topic)
            .is_some_and(|slot| slot.value.handle.request_rotate())
    }

    /// The sockets of the pool's streams (for admin views and tests).
    pub fn connections(&self) -> &crate::transport::Connections {
        &self.inner.config.stream.connections
    }

    fn subscription(&self, topic: Arc<str>, rx: broadcast::Receiver<StreamItem>) -> Subscription {
        Subscription {
            rx,
            _guard: Guard::Pool {
                pool: Arc::downgrade(&self.inner) as Weak<dyn Release>,
                topic,
            },
        }
    }

    /// How long a stream's connection attempt may take (its machine's
    /// `connect_timeout`).
    pub fn connect_timeout(&self) -> Duration {
        self.inner.config.stream.machine.connect_timeout
    }

    /// The cap on streams ([`PoolConfig::max_streams`]).
    pub fn max_streams(&self) -> usize {
        self.inner
            .max_streams
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new cap on streams (reloaded configuration): streams beyond it stay
    /// until released; new topics are refused until the pool is under it.
    pub fn set_max_streams(&self, max_streams: usize) {
        self.inner.state.lock().set_cap(max_streams.max(1));
        self.inner
            .max_streams
            .store(max_streams.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Subscriptions waiting for a slot now.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Its counts, consistent with each other.
    pub fn counts(&self) -> PoolCounts {
        let state = self.inner.state.lock();
        let (created, removed) = state.lifetime();
        let mut total = *self.inner.retired.lock();
        for (_, slot) in state
            .iter()
            .filter(|(_, slot)| slot.value.handle.is_stream())
        {
            total.add(&slot.value.handle.state());
        }
        for packer in self.inner.packers.iter().flatten() {
            total.merge(&packer.totals());
        }
        PoolCounts {
            streams: state.len(),
            subscribers: state.subscribers(),
            created,
            removed,
            attempts: total.attempts,
            connections_opened: total.opened,
            events: total.events,
            rotations: total.rotations,
            bytes: total.bytes,
            errors: total.errors,
        }
    }

    /// Every stream, for the admin view.
    pub fn snapshot(&self) -> Vec<StreamInfo> {
        let state = self.inner.state.lock();
        let mut infos: Vec<StreamInfo> = state
            .iter()
            .map(|(topic, slot)| StreamInfo {
                topic: topic.clone(),
                subscribers: slot.subscribers,
                lingering: slot.value.linger.is_some(),
                route: slot
                    .value
                    .route
                    .map(|i| self.inner.config.routes[i].name.clone()),
                state: slot.value.handle.state(),
            })
            .collect();
        infos.sort_by(|a, b| a.topic.cmp(&b.topic));
        infos
    }

    /// Closes every stream and refuses new subscriptions. Idempotent; returns
    /// when every stream task has ended.
    pub async fn close(&self) {
        let streams: Vec<Entry> = {
            let mut state = self.inner.state.lock();
            let streams = state.close();
            record(&state, &self.inner.route_gauges, &self.inner.packers);
            streams
        };
        // Waiters learn at once that the pool is closed.
        self.inner.slot_freed.notify_waiters();
        for entry in streams {
            if let Some(linger) = &entry.linger {
                linger.abort();
            }
            self.inner.retire(&entry);
            entry.handle.stop().await;
        }
        // Their members gone, the packed groups end: waited for too.
        for packer in self.inner.packers.iter().flatten() {
            packer.drain().await;
        }
    }
}

impl<C: Connector> Release for Inner<C> {
    fn release(self: Arc<Self>, topic: &Arc<str>) {
        let mut state = self.state.lock();
        // Only the incarnation this subscription joined (an evicted slot's
        // subscribers release nothing).
        if let Some((generation, entry)) =
            state.release_if(topic, |entry| Arc::ptr_eq(&entry.topic, topic))
        {
            let linger = self.config.idle_linger;
            let topic = topic.to_string();
            // The timer holds only a weak reference: it does not keep the
            // pool alive, and a closed pool has nothing left for it.
            let weak = Arc::downgrade(&self);
            entry.linger = Some(self.runtime.spawn(async move {
                tokio::time::sleep(linger).await;
                if let Some(inner) = weak.upgrade() {
                    inner.expire(&topic, generation).await;
                }
            }));
        }
        record(&state, &self.route_gauges, &self.packers);
    }
}

impl<C: Connector> Inner<C> {
    /// The remembered answer for `topic`, if it is still fresh.
    fn refused(&self, topic: &str) -> Option<PoolError> {
        let (reason, retry_after) = self.refused.get(topic)?;
        Some(PoolError::Stopped {
            topic: topic.to_string(),
            reason,
            retry_after,
        })
    }

    /// The stream of `topic` (the incarnation `arc` names) stopped for good
    /// with `reason`: its slot is freed now, its subscribers' streams end,
    /// and the answer is remembered for `negative_ttl`.
    fn stopped(&self, arc: &Arc<str>, reason: StopReason) {
        self.refused.insert(arc, reason);
        let entry = {
            let mut state = self.state.lock();
            let same = state
                .get(arc)
                .is_some_and(|slot| Arc::ptr_eq(&slot.value.topic, arc));
            let entry = if same { state.evict(arc) } else { None };
            record(&state, &self.route_gauges, &self.packers);
            entry
        };
        if let Some(entry) = entry {
            tracing::info!(topic = %arc, %reason, "upstream refused the topic: slot freed, answer remembered");
            if let Some(linger) = &entry.linger {
                linger.abort();
            }
            self.retire(&entry);
            self.slot_freed.notify_waiters();
        }
    }

    /// The linger of `topic` ran out: release its stream unless a subscriber
    /// came back meanwhile (the generation changed).
    async fn expire(&self, topic: &str, generation: u64) {
        let entry = {
            let mut state = self.state.lock();
            let entry = state.expire(topic, generation);
            record(&state, &self.route_gauges, &self.packers);
            entry
        };
        if let Some(entry) = entry {
            self.slot_freed.notify_waiters();
            self.retire(&entry);
            entry.handle.stop().await;
        }
    }

    /// Keeps a removed stream's counters in the pool's lifetime totals
    /// (read as it stops: a connection it was still opening is not counted).
    fn retire(&self, entry: &Entry) {
        if entry.handle.is_stream() {
            self.retired.lock().add(&entry.handle.state());
        }
    }

    /// Packed connections (groups) to `host` (`host:port`).
    fn groups_on(&self, host: &str) -> usize {
        self.packers
            .iter()
            .flatten()
            .filter(|p| &*p.host == host)
            .map(|p| p.groups())
            .sum()
    }

    /// The packed route that serves `topic`, if one does (and no named
    /// stream or earlier route does first).
    fn packer_of(&self, topic: &str) -> Option<(usize, Arc<Packer<C>>)> {
        if self.packers.iter().all(Option::is_none) {
            return None;
        }
        let index = self.config.resolve(topic)?.route?;
        Some((index, self.packers[index].clone()?))
    }
}

/// The stop reason, if `state` is a stream stopped for good by its
/// upstream (not by the pool).
pub(crate) fn stopped_for_good(state: &StreamState) -> Option<StopReason> {
    match (state.phase, state.reason) {
        (Phase::Stopped, Reason::Stop(reason)) if reason != StopReason::Requested => Some(reason),
        _ => None,
    }
}
/// 64 random bits from the operating system (the standard library seeds
/// its hash maps from it).
fn random_seed() -> u64 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(0x5EED_u64)
}

fn seed_of(topic: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    topic.hash(&mut hasher);
    hasher.finish()
}
