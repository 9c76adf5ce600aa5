//! [`ClusterSource`]: the gateway's [`Source`] in cluster mode.
//!
//! Per topic with local subscribers, an instance runs two things:
//!
//! - a *steward*, which tries to own the topic (a lease), and while it does,
//!   holds the topic's upstream in the local pool (resumed with the id of
//!   the last event in the log as `Last-Event-ID`) and publishes every
//!   event to the log, each naming its predecessor. It gives the upstream
//!   up when the lease is lost (the keeper's fence), and releases both when
//!   no instance has wanted the topic for `idle_linger`. While another
//!   instance owns the topic, the steward checks every third of the lease
//!   time whether the lease is free, so a dead owner's topic is taken over
//!   within `lease_ttl` and a third.
//! - a *follower* per subscription (the gateway's hub holds one per topic),
//!   an ordered consumer of the topic's subject from the position asked
//!   for. Every event comes numbered by its stream sequence
//!   ([`StreamItem::Sequenced`]); a break in the chain of predecessors
//!   comes as [`StreamItem::Missed`].
//!
//! The cluster-wide cap: a topic that nobody owns and for which every slot
//! is held is refused (`PoolError::AtCapacity`) on whichever instance it is
//! asked.
//!
//! Interest: every third of the lease time each instance announces the
//! topics it has local subscribers of ([`Members`]); an owner keeps a topic
//! while it or any other instance wants it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use sse_conn_pool::{
    Connector, From, Opened, Pool, PoolError, Source, SourceFuture, StreamItem, Subscription,
};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::events::{EventLog, Start};
use crate::fallback::Fallback;
use crate::interest::{FollowGuard, Interest, LocalCount, Owner, follow};
use crate::keeper::Keeper;
use crate::lease::{Acquired, Lease, Leases};
use crate::members::Members;
use crate::metrics;

/// How a [`ClusterSource`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct SourceOptions {
    /// How long an owner keeps a topic nobody wants any more (the pool's
    /// `idle_linger`).
    pub idle_linger: Duration,
    /// Items buffered per follower for the gateway's hub.
    pub channel_capacity: usize,
    /// Fallback upstreams at most while NATS is out of reach
    /// (`cluster.fallback_max_streams`; [`ClusterSource::join`] takes it
    /// from the configuration).
    pub fallback_max_streams: usize,
}

impl Default for SourceOptions {
    fn default() -> Self {
        Self {
            idle_linger: Duration::from_secs(300),
            channel_capacity: 1024,
            fallback_max_streams: 5,
        }
    }
}

pub(crate) struct Inner<C: Connector> {
    pub(crate) pool: Pool<C>,
    pub(crate) leases: Arc<Leases>,
    pub(crate) events: EventLog,
    pub(crate) members: Members,
    pub(crate) epoch: Arc<str>,
    /// The NATS connection, when joined through [`ClusterSource::join`]
    /// (its state is the degraded flag).
    pub(crate) client: Option<async_nats::Client>,
    pub(crate) options: SourceOptions,
    pub(crate) topics: Mutex<HashMap<Arc<str>, Arc<Interest>>>,
    pub(crate) stewards: Mutex<Vec<JoinHandle<()>>>,
    /// Since when NATS has been out of reach (not connected, or the last
    /// announcement failed), as the announcer last saw it.
    pub(crate) down_since: Mutex<Option<Instant>>,
    /// Fallback upstreams held now.
    pub(crate) fallbacks: Arc<AtomicUsize>,
    /// Counts NATS's returns after an outage: followers make their
    /// consumers again at once rather than wait for the client to notice
    /// missed heartbeats (measured: 15 s after a NATS restart).
    pub(crate) returns: watch::Sender<u64>,
    pub(crate) shutdown: watch::Sender<bool>,
}

/// The gateway's source of events in cluster mode. Cheap to clone.
pub struct ClusterSource<C: Connector> {
    pub(crate) inner: Arc<Inner<C>>,
    announcer: Arc<JoinHandle<()>>,
}

impl<C: Connector> Clone for ClusterSource<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            announcer: self.announcer.clone(),
        }
    }
}

/// Why joining a cluster failed.
#[derive(Debug)]
pub struct JoinError(pub String);

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JoinError {}

impl<C: Connector> ClusterSource<C> {
    /// Connects to the cluster's NATS as `config` says, opens its buckets
    /// and stream (creating them if this is the first instance), and
    /// returns the source over `pool`. The cluster-wide cap is the pool's
    /// `max_streams`.
    ///
    /// # Errors
    ///
    /// The configuration is invalid, or NATS (with JetStream) does not
    /// answer within `request_timeout`.
    pub async fn join(
        config: &crate::config::ClusterConfig,
        pool: Pool<C>,
        retention: crate::events::Retention,
        options: SourceOptions,
    ) -> Result<Self, JoinError> {
        config.validate().map_err(|e| JoinError(e.to_string()))?;
        let urls = config.nats_urls.join(",");
        let connect = config
            .connect_options()
            .await
            .map_err(|e| JoinError(e.to_string()))?
            .connect(urls.as_str());
        let client = tokio::time::timeout(config.request_timeout, connect)
            .await
            .map_err(|_| {
                JoinError(format!(
                    "NATS at {urls} did not answer within {:?} (cluster.request_timeout)",
                    config.request_timeout
                ))
            })?
            .map_err(|e| JoinError(format!("cannot connect to NATS at {urls}: {e}")))?;
        let mut jetstream = async_nats::jetstream::new(client.clone());
        jetstream.set_timeout(config.request_timeout);
        let instance = config.instance_name();
        let nats = |what: &str, e: &dyn std::fmt::Display| {
            JoinError(format!("NATS at {urls}: cannot open {what}: {e}"))
        };
        let leases = Leases::open(
            &jetstream,
            &config.name,
            &instance,
            config.lease_ttl,
            pool.max_streams(),
        )
        .await
        .map_err(|e| nats("the lease bucket", &e))?;
        let events = EventLog::open(&jetstream, &config.name, retention)
            .await
            .map_err(|e| nats("the event stream", &e))?;
        let members = Members::open(
            &jetstream,
            &config.name,
            &instance,
            env!("CARGO_PKG_VERSION"),
            config.lease_ttl,
        )
        .await
        .map_err(|e| nats("the member bucket", &e))?;
        tracing::info!(%instance, cluster = %config.name, nats = %urls, epoch = %events.epoch(), "joined the cluster");
        let options = SourceOptions {
            fallback_max_streams: config.fallback_max_streams,
            ..options
        };
        Ok(Self::build(
            pool,
            Arc::new(leases),
            events,
            members,
            options,
            Some(client),
        ))
    }

    /// A source over `pool` (this instance's upstreams), the cluster's
    /// `leases`, event log and members. Starts announcing this instance.
    pub fn new(
        pool: Pool<C>,
        leases: Arc<Leases>,
        events: EventLog,
        members: Members,
        options: SourceOptions,
    ) -> Self {
        Self::build(pool, leases, events, members, options, None)
    }

    fn build(
        pool: Pool<C>,
        leases: Arc<Leases>,
        events: EventLog,
        members: Members,
        options: SourceOptions,
        client: Option<async_nats::Client>,
    ) -> Self {
        let epoch = events.epoch().into();
        let inner = Arc::new(Inner {
            pool,
            leases,
            events,
            members,
            epoch,
            client,
            options,
            topics: Mutex::default(),
            stewards: Mutex::default(),
            down_since: Mutex::new(None),
            fallbacks: Arc::new(AtomicUsize::new(0)),
            returns: watch::channel(0).0,
            shutdown: watch::channel(false).0,
        });
        let announcer = Arc::new(tokio::spawn(announce(Arc::downgrade(&inner))));
        Self { inner, announcer }
    }

    /// The leases, for `/admin/cluster`.
    pub fn leases(&self) -> &Arc<Leases> {
        &self.inner.leases
    }

    /// The members bucket, for `/admin/cluster`.
    pub fn members(&self) -> &Members {
        &self.inner.members
    }

    /// Releases every lease this instance holds (its upstreams close and
    /// other instances take the topics over at once) and leaves the member
    /// list. Returns when done; the source serves nothing new after.
    pub async fn close(&self) {
        let _ = self.inner.shutdown.send(true);
        self.announcer.abort();
        let stewards: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.stewards.lock());
        for steward in stewards {
            let _ = steward.await;
        }
        if let Err(e) = self.inner.members.leave().await {
            tracing::warn!(error = %e, "could not leave the member list; it ages out");
        }
    }
}

impl<C: Connector> Source for ClusterSource<C> {
    fn subscribe<'a>(
        &'a self,
        topic: &'a str,
        from: From,
    ) -> SourceFuture<'a, Result<Opened, PoolError>> {
        Box::pin(self.inner.clone().subscribe(topic, from))
    }

    fn positions(&self) -> Option<Arc<str>> {
        Some(self.inner.epoch.clone())
    }

    fn history<'a>(
        &'a self,
        topic: &'a str,
        after: u64,
        until: u64,
    ) -> SourceFuture<'a, Option<Vec<(u64, sse_parser::Event)>>> {
        Box::pin(async move {
            let wait = self.inner.leases.ttl();
            let stored = self.inner.events.history(topic, after, until, wait).await?;
            Some(stored.into_iter().map(|s| (s.sequence, s.event)).collect())
        })
    }
}

impl<C: Connector> Inner<C> {
    async fn subscribe(self: Arc<Self>, topic: &str, from: From) -> Result<Opened, PoolError> {
        self.pool.check_topic(topic)?;
        if *self.shutdown.borrow() {
            return Err(PoolError::Closed);
        }
        let (interest, fresh) = {
            let mut topics = self.topics.lock();
            let (interest, fresh) = match topics.get(topic) {
                Some(interest) => (interest.clone(), false),
                None => {
                    let interest = Arc::new(Interest {
                        topic: topic.into(),
                        local: Mutex::new((0, None)),
                        owner: Mutex::new(Owner::Unknown),
                        owned_since: Mutex::new(None),
                        changed: Notify::new(),
                        followed: AtomicU64::new(0),
                        renewed: Mutex::new(None),
                        senders: Mutex::default(),
                        delivered: Mutex::default(),
                        pending: AtomicU64::new(0),
                    });
                    topics.insert(interest.topic.clone(), interest.clone());
                    (interest, true)
                }
            };
            let mut local = interest.local.lock();
            local.0 += 1;
            local.1 = None;
            drop(local);
            (interest, fresh)
        };
        // Counted from here: dropped on every error path below.
        let mut guard = LocalCount(Some(interest.clone()));
        if fresh {
            // The first local subscriber asks for the lease at once: a topic
            // over the cluster-wide cap is refused here, on any instance.
            let lease = match self.leases.acquire(topic).await {
                Ok(Acquired::Owned(lease)) => Some(lease),
                Ok(Acquired::Taken { owner, renewed }) => {
                    *interest.owner.lock() = Owner::Other(owner);
                    *interest.renewed.lock() = Some(renewed);
                    None
                }
                Ok(Acquired::AtCapacity) => {
                    *interest.owner.lock() = Owner::Capped;
                    None
                }
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "NATS did not answer for the topic's lease");
                    *interest.owner.lock() = Owner::Unreachable;
                    None
                }
            };
            let steward = tokio::spawn(steward(Arc::downgrade(&self), interest.clone(), lease));
            self.stewards.lock().push(steward);
            self.stewards.lock().retain(|s| !s.is_finished());
        }
        if *interest.owner.lock() == Owner::Capped {
            return Err(PoolError::AtCapacity {
                limit: self.leases.max_streams(),
                retry_after: self.leases.ttl(),
            });
        }
        let after = match from {
            From::After(p) => p,
            From::Now => match self.events.last(topic).await {
                Ok(last) => last.map_or(0, |s| s.sequence),
                Err(e) => return Err(PoolError::Unavailable(e.to_string())),
            },
        };
        let stream = self
            .events
            .follow(topic, Start::After(after))
            .await
            .map_err(|e| PoolError::Unavailable(e.to_string()))?;
        let (tx, rx) = broadcast::channel(self.options.channel_capacity);
        interest.senders.lock().push(tx.clone());
        metrics::record_followed(1.0);
        // After an outage the follower starts again from its last position.
        let weak = Arc::downgrade(&self);
        let resubscribe: crate::interest::Resubscribe = Box::new(move |topic, after| {
            let weak = weak.clone();
            Box::pin(async move {
                let inner = weak.upgrade().ok_or(crate::events::EventError::Nats(
                    "the cluster source is closed".to_string(),
                ))?;
                let stream = inner.events.follow(&topic, Start::After(after)).await?;
                Ok(Box::pin(stream) as crate::interest::Events)
            })
        });
        let task = tokio::spawn(follow(
            Box::pin(stream),
            tx,
            after,
            interest.clone(),
            (resubscribe, self.returns.subscribe()),
        ));
        // The count moves from the guard to the follower's guard.
        let Some(interest) = guard.0.take() else {
            return Err(PoolError::Closed);
        };
        Ok(Opened {
            subscription: Subscription::new(rx, FollowGuard { task, interest }),
            after: Some(after),
        })
    }
}

/// How a spell of ownership ended.
enum Ended {
    /// Nobody wanted the topic for the linger: released, and forgotten.
    Idle,
    /// The lease was lost or could not be used: try again.
    Lost,
    /// NATS went out of reach under the owner: its upstream is closed (the
    /// fence), and this instance's subscribers are served from a fallback
    /// upstream at once, resumed after the last event they got.
    Cut,
    /// The source is closing.
    Shutdown,
}

/// Owns `interest`'s topic whenever it can, while anyone wants it.
async fn steward<C: Connector>(
    inner: Weak<Inner<C>>,
    interest: Arc<Interest>,
    mut lease: Option<Lease>,
) {
    let Some(ttl) = inner.upgrade().map(|i| i.leases.ttl()) else {
        return;
    };
    let mut shutdown = match inner.upgrade() {
        Some(i) => i.shutdown.subscribe(),
        None => return,
    };
    let mut fallback: Option<Fallback> = None;
    loop {
        if let Some(held) = lease.take() {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            // The owner's upstream replaces the fallback (and resumes
            // after the log's last event, so the log gets what it missed).
            if let Some(fallback) = fallback.take() {
                fallback.stop(&strong.pool, &interest.topic).await;
            }
            match own(&strong, &interest, held, &mut shutdown).await {
                Ended::Idle | Ended::Shutdown => return,
                Ended::Lost => {}
                // The owner knows NATS is away: no lease's wait, as the
                // other instances need (they cannot tell an outage from a
                // blip).
                Ended::Cut => {
                    fallback = Fallback::start(
                        &strong.pool,
                        &interest,
                        &strong.fallbacks,
                        strong.options.fallback_max_streams,
                    );
                }
            }
        }
        {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            if *shutdown.borrow() || forget_if_idle(&strong, &interest) {
                if let Some(fallback) = fallback.take() {
                    fallback.stop(&strong.pool, &interest.topic).await;
                }
                return;
            }
            let down = strong.down_for() >= ttl;
            let owned = matches!(*interest.owner.lock(), Owner::Other(_) | Owner::Me);
            if down && fallback.is_none() {
                fallback = Fallback::start(
                    &strong.pool,
                    &interest,
                    &strong.fallbacks,
                    strong.options.fallback_max_streams,
                );
            } else if (!down && owned || fallback.as_ref().is_some_and(Fallback::finished))
                && let Some(open) = fallback.take()
            {
                open.stop(&strong.pool, &interest.topic).await;
            }
        }
        // Not the owner: look again when the owner's lease would run out
        // unless renewed (so a dead owner is replaced moments after its
        // lease is gone), within a tenth and a third of the lease time
        // (clocks may differ), or as soon as the last local subscriber
        // leaves.
        let wait = next_look(&interest, ttl);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = interest.changed.notified() => continue,
            _ = shutdown.changed() => return,
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        match strong.leases.acquire(&interest.topic).await {
            Ok(Acquired::Owned(held)) => lease = Some(held),
            Ok(Acquired::Taken { owner, renewed }) => {
                *interest.owner.lock() = Owner::Other(owner);
                *interest.renewed.lock() = Some(renewed);
                // Heard again: the owner's events come through the log.
                if !strong.degraded()
                    && let Some(open) = fallback.take()
                {
                    open.stop(&strong.pool, &interest.topic).await;
                }
            }
            Ok(Acquired::AtCapacity) => *interest.owner.lock() = Owner::Capped,
            Err(_) => *interest.owner.lock() = Owner::Unreachable,
        }
    }
}

/// How long a non-owner waits before asking for the lease again: until
/// just after the owner's lease would run out, bounded to a tenth and a
/// third of the lease time.
fn next_look(interest: &Interest, ttl: Duration) -> Duration {
    let (low, high) = (ttl / 10, ttl / 3);
    let Some(renewed) = interest.renewed.lock().take() else {
        return high;
    };
    let expires = renewed + ttl + Duration::from_millis(20);
    expires
        .duration_since(std::time::SystemTime::now())
        .unwrap_or(Duration::ZERO)
        .clamp(low, high)
}

/// Forgets `interest` if it has no local subscriber (under the map's
/// lock, which new subscribers take too). Whether it did.
fn forget_if_idle<C: Connector>(inner: &Inner<C>, interest: &Arc<Interest>) -> bool {
    let mut topics = inner.topics.lock();
    if interest.local.lock().0 > 0 {
        return false;
    }
    if topics
        .get(&interest.topic)
        .is_some_and(|i| Arc::ptr_eq(i, interest))
    {
        topics.remove(&interest.topic);
    }
    true
}

/// The predecessor a publish names after the owner lost events on the way
/// to the log: no position equals it, so every follower sees the break.
const BROKEN: u64 = u64::MAX;

/// Holds the topic's upstream and publishes its events while the lease
/// lasts.
async fn own<C: Connector>(
    inner: &Arc<Inner<C>>,
    interest: &Arc<Interest>,
    lease: Lease,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let topic = interest.topic.clone();
    let keeper = Keeper::spawn(inner.leases.clone(), lease);
    *interest.owner.lock() = Owner::Me;
    *interest.owned_since.lock() = Some(Instant::now());
    let ended = publish_while_held(inner, interest, &keeper, shutdown).await;
    *interest.owned_since.lock() = None;
    *interest.owner.lock() = Owner::Unknown;
    // The upstream closes first, then the lease goes: never two owners.
    inner.pool.stop_idle(&topic).await;
    if matches!(ended, Ended::Cut) {
        // NATS cannot hear a release: the keys expire.
        drop(keeper);
    } else {
        keeper.release().await;
    }
    if matches!(ended, Ended::Idle) && !forget_if_idle(inner, interest) {
        // A subscriber came back at the last moment: the steward goes on.
        return Ended::Lost;
    }
    ended
}

async fn publish_while_held<C: Connector>(
    inner: &Arc<Inner<C>>,
    interest: &Arc<Interest>,
    keeper: &Keeper,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let topic = &*interest.topic;
    let ttl = inner.leases.ttl();
    // Where the last owner left: the upstream resumes after its last event.
    let last = match inner.events.last(topic).await {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(%topic, error = %e, "cannot read the topic's last event; giving the lease back");
            return Ended::Lost;
        }
    };
    let mut previous = last.as_ref().map_or(0, |s| s.sequence);
    let resume_id = last
        .as_ref()
        .map(|s| s.event.id.to_string())
        .filter(|id| !id.is_empty());
    let mut upstream = match inner.pool.subscribe_from(topic, resume_id.as_deref()) {
        Ok(subscription) => subscription,
        Err(e) => {
            tracing::warn!(%topic, error = %e, "the local pool refused the topic it owns");
            return Ended::Lost;
        }
    };
    tracing::info!(%topic, resume = resume_id.as_deref().unwrap_or(""), "owner: upstream opened");
    // When another instance last wanted the topic (the start counts).
    let mut wanted_at = Instant::now();
    let mut check = tokio::time::interval(ttl);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = keeper.lost() => return lease_lost(topic, keeper).await,
            _ = shutdown.changed() => return Ended::Shutdown,
            item = upstream.recv() => match item {
                Ok(StreamItem::Event(event)) => {
                    let publish = fenced(keeper, inner.events.publish(topic, &event, Some(previous)));
                    tokio::pin!(publish);
                    // A publish that takes a tenth of the lease while NATS
                    // is out of reach (before or during it) will not land
                    // in time: the subscribers here are served from a
                    // fallback now rather than after the request timeout
                    // or the fence. Connected, it may take its time.
                    let published = match tokio::time::timeout(ttl / 10, &mut publish).await {
                        Ok(published) => published,
                        Err(_) if !inner.connected() => return cut(topic),
                        Err(_) => publish.await,
                    };
                    match published {
                        None if !inner.connected() => return cut(topic),
                        None => return lease_lost(topic, keeper).await,
                        Some(Ok(published)) => {
                            tracing::trace!(%topic, sequence = published.sequence, duplicate = published.duplicate, "owner: published");
                            previous = published.sequence;
                        }
                        Some(Err(_)) if !inner.connected() => return cut(topic),
                        Some(Err(e)) => {
                            // Whether it was stored is unknown (a publish
                            // that timed out may still land). The upstream
                            // is given up; the next owner (this instance or
                            // another) resumes it after the log's last
                            // event, and the stream's duplicate window
                            // drops what lands twice: nothing is lost, and
                            // the chain of predecessors stays whole.
                            tracing::warn!(%topic, error = %e, "owner: an event could not be stored; the upstream is resumed from the log");
                            metrics::record_publish_failure();
                            return Ended::Lost;
                        }
                    }
                }
                Ok(StreamItem::Status(status)) if status.terminal => {
                    tracing::warn!(%topic, reason = %status.reason, "owner: the upstream stopped the topic");
                    return Ended::Lost;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // The upstream sends faster than the log stores (one
                    // publish at a time: each names its predecessor's
                    // sequence). Resuming from the log would only fall
                    // behind again, so the owner goes on, and the next
                    // event names a predecessor no position equals: every
                    // follower sees the loss and resets its subscribers.
                    tracing::warn!(%topic, missed = n, "owner: fell behind its upstream; the loss is marked in the log");
                    metrics::record_owner_lag(n);
                    previous = BROKEN;
                }
                Err(broadcast::error::RecvError::Closed) => return Ended::Lost,
            },
            _ = check.tick() => {
                let Some(idle) = interest.idle_since() else {
                    wanted_at = Instant::now();
                    continue;
                };
                match fenced(keeper, inner.members.list()).await {
                    None => return lease_lost(topic, keeper).await,
                    Some(Ok(members)) if !inner.members.others_want(&members, topic) => {}
                    // Wanted elsewhere, or unknown: kept.
                    _ => wanted_at = Instant::now(),
                }
                let linger = inner.options.idle_linger;
                if idle.elapsed() >= linger && wanted_at.elapsed() >= linger {
                    tracing::info!(%topic, "owner: nobody wants the topic; released");
                    return Ended::Idle;
                }
            }
        }
    }
}

impl<C: Connector> Inner<C> {
    /// Whether the NATS connection is up (true when not known).
    /// How long NATS has been out of reach (zero when it is not).
    pub(crate) fn down_for(&self) -> Duration {
        self.down_since
            .lock()
            .map_or(Duration::ZERO, |t| t.elapsed())
    }

    pub(crate) fn degraded(&self) -> bool {
        self.down_since.lock().is_some()
    }

    pub(crate) fn connected(&self) -> bool {
        self.client
            .as_ref()
            .is_none_or(|c| c.connection_state() == async_nats::connection::State::Connected)
    }
}

/// Runs `work` unless the lease is lost first (the fence): an owner never
/// waits on NATS past its fence.
async fn fenced<T>(keeper: &Keeper, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        _ = keeper.lost() => None,
        out = work => Some(out),
    }
}

fn cut(topic: &str) -> Ended {
    tracing::warn!(%topic, "owner: NATS out of reach; upstream closed, this instance's subscribers go on from a fallback upstream");
    Ended::Cut
}

async fn lease_lost(topic: &str, keeper: &Keeper) -> Ended {
    let why = keeper.lost().await;
    tracing::warn!(%topic, why = why.label(), "owner: lease lost; upstream closed");
    Ended::Lost
}

/// Announces this instance and its topics every third of the lease time,
/// and records whether the cluster is degraded (NATS not answering).
async fn announce<C: Connector>(inner: Weak<Inner<C>>) {
    loop {
        let (members, topics, ttl) = {
            let Some(inner) = inner.upgrade() else { return };
            let interests: Vec<Arc<Interest>> = inner.topics.lock().values().cloned().collect();
            let wanted: Vec<&Arc<Interest>> =
                interests.iter().filter(|i| i.local.lock().0 > 0).collect();
            let unowned = wanted
                .iter()
                .filter(|i| matches!(*i.owner.lock(), Owner::Unknown | Owner::Unreachable))
                .count();
            let pending: u64 = wanted
                .iter()
                .map(|i| i.pending.load(Ordering::Relaxed))
                .sum();
            metrics::record_interest(unowned, pending);
            let mut topics: Vec<String> = wanted.iter().map(|i| i.topic.to_string()).collect();
            topics.sort();
            (inner.members.clone(), topics, inner.leases.ttl())
        };
        let attempt = Instant::now();
        let announced = members.announce(&topics).await;
        if let Err(e) = &announced {
            tracing::debug!(error = %e, "announcing this instance");
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let degraded = !strong.connected() || announced.is_err();
        {
            let mut since = strong.down_since.lock();
            match (degraded, *since) {
                // Out of reach since the attempt that failed began.
                (true, None) => *since = Some(attempt),
                (false, Some(_)) => {
                    *since = None;
                    strong.returns.send_modify(|n| *n += 1);
                }
                _ => {}
            }
        }
        drop(strong);
        metrics::record_degraded(degraded);
        tokio::time::sleep(ttl / 3).await;
    }
}
