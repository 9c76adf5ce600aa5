//! Topic ownership and the cluster-wide stream cap, as leases in a
//! JetStream key-value bucket.
//!
//! The bucket `<cluster>-leases` keeps one revision per key (`history` 1)
//! and ages every message out after `lease_ttl` (`max_age`), so a key that
//! is not rewritten in time disappears by itself. It holds two kinds of
//! key:
//!
//! - `t.<topic token>`: the topic's owner, the instance holding its
//!   upstream connection. Created only if absent, so there is at most one.
//! - `s.<k>` for `k` below `max_streams`: a slot of the cap, naming the
//!   topic that holds it. A topic's owner holds exactly one slot; since a
//!   slot too is created only if absent, no more than `max_streams` topics
//!   have owners, whichever instances ask, however they race.
//!
//! Renewal rewrites both keys, each conditional on the revision its owner
//! last wrote: a key that expired and was taken by another instance has a
//! new revision, so the old owner's renewal fails and it learns it lost the
//! topic (it was fenced).
//!
//! Time: a key's age counts from when the server stored it, which is after
//! the owner sent the write. So the owner's own `sent + lease_ttl` is never
//! later than the moment another instance can take the key: an owner that
//! stops its upstream by then (see [`crate::keeper`]) never overlaps the
//! next one, whatever the clocks of the machines say (only their rates
//! matter, and those agree to far better than the margin).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::key::{topic_of, topic_token};
use crate::metrics;

/// The most bytes the lease bucket may hold: far above what `max_streams`
/// topics and as many slots need (under 200 bytes a key), so reaching it
/// means something else writes there.
const MAX_BUCKET_BYTES: i64 = 16 * 1024 * 1024;

/// The longest value: an instance name or a topic token.
const MAX_VALUE_BYTES: i32 = 1024;

/// What can go wrong talking to the bucket.
#[derive(Debug)]
pub enum LeaseError {
    /// NATS did not answer, or answered with an error.
    Nats(String),
    /// The lease was taken by another instance after it expired, or its
    /// keys were removed: its holder must give the topic up.
    Lost,
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nats(e) => write!(f, "NATS: {e}"),
            Self::Lost => f.write_str("the lease was lost to another instance"),
        }
    }
}

impl std::error::Error for LeaseError {}

fn nats(e: impl std::fmt::Display) -> LeaseError {
    LeaseError::Nats(e.to_string())
}

/// A conditional write or delete that found another revision: the key is
/// someone else's now.
fn lost_or_nats(e: kv::UpdateError) -> LeaseError {
    match e.kind() {
        UpdateErrorKind::WrongLastRevision => LeaseError::Lost,
        _ => nats(e),
    }
}

/// What creating an owner key found.
enum OwnerKey {
    Created(u64),
    Taken(String, std::time::SystemTime),
}

/// The answer to [`Leases::acquire`].
#[derive(Debug)]
pub enum Acquired {
    /// This instance owns the topic until the lease is lost or released.
    Owned(Lease),
    /// Another instance owns it.
    Taken {
        /// That instance's name.
        owner: String,
        /// When it last renewed the lease (by NATS's clock): the lease
        /// runs out `lease_ttl` after that unless renewed again.
        renewed: std::time::SystemTime,
    },
    /// Every slot of the cluster-wide cap is held.
    AtCapacity,
}

/// A topic owned by this instance: the revisions it last wrote, and when
/// it runs out.
#[derive(Debug)]
pub struct Lease {
    topic: String,
    slot: usize,
    /// `t.<token>`, and its revision last written by this instance.
    owner_key: String,
    topic_revision: u64,
    /// `s.<slot>`, its value (the token), and its revision.
    slot_key: String,
    slot_value: Bytes,
    slot_revision: u64,
    expires: Instant,
}

impl Lease {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The slot of the cap it holds.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The latest moment this instance may still act as the owner: the
    /// send time of the last write that succeeded, plus `lease_ttl`.
    pub fn expires(&self) -> Instant {
        self.expires
    }
}

/// One topic's lease as the bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The topic.
    pub topic: String,
    /// The owner instance.
    pub owner: String,
    /// The bucket's revision of the owner key (it grows with each renewal).
    pub revision: u64,
    /// When the owner last wrote it (its last renewal), by NATS's clock.
    pub written: std::time::SystemTime,
}

/// The lease bucket, as one instance sees it.
#[derive(Debug)]
pub struct Leases {
    kv: kv::Store,
    instance: Arc<str>,
    /// `instance` as the owner keys' value.
    owner_value: Bytes,
    ttl: Duration,
    max_streams: AtomicUsize,
}

impl Leases {
    /// Opens (creating or updating) the bucket of `cluster`. Every
    /// instance of a cluster must use the same `ttl`: the bucket has one
    /// age limit, set by the instance that opened it last.
    pub async fn open(
        jetstream: &jetstream::Context,
        cluster: &str,
        instance: &str,
        ttl: Duration,
        max_streams: usize,
    ) -> Result<Self, LeaseError> {
        let kv = jetstream
            .create_or_update_key_value(kv::Config {
                bucket: format!("{cluster}-leases"),
                description: "ssegate: topic owners and stream-cap slots".to_string(),
                history: 1,
                max_age: ttl,
                max_bytes: MAX_BUCKET_BYTES,
                max_value_size: MAX_VALUE_BYTES,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        Ok(Self {
            kv,
            instance: instance.into(),
            owner_value: Bytes::copy_from_slice(instance.as_bytes()),
            ttl,
            max_streams: AtomicUsize::new(max_streams),
        })
    }

    /// This instance's name, the value of the owner keys it writes.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// How long a lease lives without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The cluster-wide cap this instance enforces when it acquires.
    pub fn max_streams(&self) -> usize {
        self.max_streams.load(Ordering::Relaxed)
    }

    /// Changes the cap (a reload). Lowering it takes no lease away: slots
    /// at or above the new cap are not handed out again, so the count
    /// falls to the cap as their topics are released.
    pub fn set_max_streams(&self, max_streams: usize) {
        self.max_streams.store(max_streams, Ordering::Relaxed);
    }

    /// Takes `topic` if no instance owns it and a slot of the cap is free.
    pub async fn acquire(&self, topic: &str) -> Result<Acquired, LeaseError> {
        let acquired = self.try_acquire(topic).await;
        metrics::record_acquire(match &acquired {
            Ok(Acquired::Owned(_)) => "owned",
            Ok(Acquired::Taken { .. }) => "taken",
            Ok(Acquired::AtCapacity) => "at_capacity",
            Err(_) => "error",
        });
        acquired
    }

    async fn try_acquire(&self, topic: &str) -> Result<Acquired, LeaseError> {
        let token = topic_token(topic);
        let owner_key = format!("t.{token}");
        let sent = Instant::now();
        let topic_revision = match self.create_owner_key(&owner_key).await? {
            OwnerKey::Created(revision) => revision,
            OwnerKey::Taken(owner, renewed) => return Ok(Acquired::Taken { owner, renewed }),
        };
        let slot_value = Bytes::from(token);
        match self.claim_slot(&slot_value).await {
            Ok(Some((slot, slot_revision))) => Ok(Acquired::Owned(Lease {
                topic: topic.to_string(),
                slot,
                owner_key,
                topic_revision,
                slot_key: format!("s.{slot}"),
                slot_value,
                slot_revision,
                expires: sent + self.ttl,
            })),
            no_slot => {
                // No slot (or no answer): the owner key goes back. Best
                // effort: it expires by itself if this fails.
                let _ = self
                    .kv
                    .delete_expect_revision(&owner_key, Some(topic_revision))
                    .await;
                no_slot.map(|_| Acquired::AtCapacity)
            }
        }
    }

    /// Creates the owner key `key` with this instance's name, or says who
    /// has it. A key that expires between the create and the read is
    /// created on the second try.
    async fn create_owner_key(&self, key: &str) -> Result<OwnerKey, LeaseError> {
        let value = self.owner_value.clone();
        for _ in 0..2 {
            match self.kv.create(key, value.clone()).await {
                Ok(revision) => return Ok(OwnerKey::Created(revision)),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(nats(e)),
            }
            match self.kv.entry(key).await.map_err(nats)? {
                // Ours from before (a lease this process gave up locally,
                // or asked for twice): taken back at its revision, as a
                // renewal would.
                Some(entry) if entry.value == value => {
                    return self
                        .kv
                        .update(key, value, entry.revision)
                        .await
                        .map(OwnerKey::Created)
                        .map_err(lost_or_nats);
                }
                // Past its lease time, but not yet removed by the server
                // (it ages values out lazily, up to a second late): its
                // owner has fenced itself by now, so it is taken over at
                // its revision. A renewal in between changes the
                // revision, and this fails as it should.
                Some(entry)
                    if entry.operation == kv::Operation::Put
                        && self.stale(entry.created.into()) =>
                {
                    if let Ok(revision) = self.kv.update(key, value.clone(), entry.revision).await {
                        return Ok(OwnerKey::Created(revision));
                    }
                }
                Some(entry) if entry.operation == kv::Operation::Put => {
                    return Ok(OwnerKey::Taken(
                        String::from_utf8_lossy(&entry.value).into_owned(),
                        entry.created.into(),
                    ));
                }
                // Deleted or expired meanwhile: create again.
                _ => {}
            }
        }
        Err(LeaseError::Nats(format!(
            "the owner key {key} changed under two attempts to create it"
        )))
    }

    /// Whether a value written at `written` (by NATS's clock) is past its
    /// lease time, with a margin for the clocks' difference.
    fn stale(&self, written: std::time::SystemTime) -> bool {
        let margin = (self.ttl / 20).max(Duration::from_millis(100));
        written
            .checked_add(self.ttl + margin)
            .is_some_and(|end| end < std::time::SystemTime::now())
    }

    /// Creates the first free slot, starting from one the token chooses
    /// (so that instances acquiring at once mostly try different slots).
    async fn claim_slot(&self, token: &Bytes) -> Result<Option<(usize, u64)>, LeaseError> {
        let max = self.max_streams();
        if max == 0 {
            return Ok(None);
        }
        let start = token.iter().fold(0usize, |h, &b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        }) % max;
        for i in 0..max {
            let slot = (start + i) % max;
            match self.kv.create(format!("s.{slot}"), token.clone()).await {
                Ok(revision) => return Ok(Some((slot, revision))),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => continue,
                Err(e) => return Err(nats(e)),
            }
        }
        Ok(None)
    }

    /// Rewrites both keys of `lease`, each only if it still has the
    /// revision this instance wrote; on success the lease runs until the
    /// send time plus `lease_ttl`. [`LeaseError::Lost`] when either key
    /// was taken over or removed.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), LeaseError> {
        let sent = Instant::now();
        lease.topic_revision = self
            .kv
            .update(
                &lease.owner_key,
                self.owner_value.clone(),
                lease.topic_revision,
            )
            .await
            .map_err(lost_or_nats)?;
        lease.slot_revision = self
            .kv
            .update(
                &lease.slot_key,
                lease.slot_value.clone(),
                lease.slot_revision,
            )
            .await
            .map_err(lost_or_nats)?;
        lease.expires = sent + self.ttl;
        Ok(())
    }

    /// Gives `lease` up at once: its slot first (so the cap frees), then
    /// its owner key. Each delete is conditional, so a lease that was
    /// already lost removes nothing of its successor's. When NATS cannot be
    /// reached, the keys expire by themselves.
    pub async fn release(&self, lease: Lease) -> Result<(), LeaseError> {
        let slot = self
            .kv
            .delete_expect_revision(&lease.slot_key, Some(lease.slot_revision))
            .await;
        let topic = self
            .kv
            .delete_expect_revision(&lease.owner_key, Some(lease.topic_revision))
            .await;
        slot.and(topic).map_err(lost_or_nats)
    }

    /// Every topic that has an owner now, sorted by topic.
    pub async fn owners(&self) -> Result<Vec<LeaseInfo>, LeaseError> {
        let mut keys = self.kv.keys().await.map_err(nats)?;
        let mut owners = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats)?;
            let Some(topic) = key.strip_prefix("t.").and_then(topic_of) else {
                continue;
            };
            // An entry may expire between the listing and the read.
            if let Some(entry) = self.kv.entry(key.as_str()).await.map_err(nats)?
                && entry.operation == kv::Operation::Put
            {
                owners.push(LeaseInfo {
                    topic,
                    owner: String::from_utf8_lossy(&entry.value).into_owned(),
                    revision: entry.revision,
                    written: entry.created.into(),
                });
            }
        }
        owners.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(owners)
    }

    /// How many slots of the cap are held now.
    pub async fn slots_held(&self) -> Result<usize, LeaseError> {
        let mut keys = self.kv.keys().await.map_err(nats)?;
        let mut held = 0;
        while let Some(key) = keys.next().await {
            if key.map_err(nats)?.starts_with("s.") {
                held += 1;
            }
        }
        Ok(held)
    }
}
