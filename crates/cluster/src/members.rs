//! Who is in the cluster, and which topics each instance has local
//! subscribers of (its *interest*).
//!
//! Each instance announces itself in the key-value bucket
//! `<cluster>-members` under `m.<instance token>`: a JSON value with its
//! name, version, start time and the topics it has interest in. The bucket
//! ages a value out after `lease_ttl`, so an instance that stops announcing
//! (dead, partitioned) leaves the list by itself; one that shuts down
//! deletes its key at once.
//!
//! One write per instance per announcement, whatever its number of topics:
//! an owner learns whether anyone still wants its topic (to release the
//! upstream after the linger), and operators see members and interest, from
//! a handful of reads.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::key::topic_token;

/// The largest announcement: at about 20 bytes a topic, tens of thousands
/// of topics per instance.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 1024 * 1024;

/// An instance as it announced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its name.
    pub instance: String,
    /// Its software version.
    pub version: String,
    /// When it started, in seconds since the Unix epoch.
    pub started: u64,
    /// The topics it has local subscribers of (or lingers on), sorted.
    pub topics: Vec<String>,
}

/// What can go wrong with the members bucket.
#[derive(Debug)]
pub enum MembersError {
    /// NATS did not answer, or answered with an error.
    Nats(String),
    /// The announcement is larger than [`MAX_ANNOUNCEMENT_BYTES`].
    TooLarge {
        /// Its size.
        bytes: usize,
    },
}

impl std::fmt::Display for MembersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Nats(e) => write!(f, "NATS: {e}"),
            Self::TooLarge { bytes } => write!(
                f,
                "an announcement of {bytes} bytes is above the limit of {MAX_ANNOUNCEMENT_BYTES}"
            ),
        }
    }
}

impl std::error::Error for MembersError {}

fn nats(e: impl std::fmt::Display) -> MembersError {
    MembersError::Nats(e.to_string())
}

/// The members bucket, as one instance sees and writes it.
#[derive(Debug, Clone)]
pub struct Members {
    kv: kv::Store,
    key: String,
    instance: String,
    version: String,
    started: u64,
}

impl Members {
    /// Opens (creating or updating) the bucket of `cluster`; `ttl` is how
    /// long an announcement lives (every instance must use the same).
    pub async fn open(
        jetstream: &jetstream::Context,
        cluster: &str,
        instance: &str,
        version: &str,
        ttl: Duration,
    ) -> Result<Self, MembersError> {
        let kv = jetstream
            .create_or_update_key_value(kv::Config {
                bucket: format!("{cluster}-members"),
                description: "ssegate: instances and the topics they have subscribers of"
                    .to_string(),
                history: 1,
                max_age: ttl,
                max_value_size: i32::try_from(MAX_ANNOUNCEMENT_BYTES).unwrap_or(i32::MAX),
                // A thousand instances at the largest announcement.
                max_bytes: 1024 * i64::try_from(MAX_ANNOUNCEMENT_BYTES).unwrap_or(i64::MAX),
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Self {
            kv,
            key: format!("m.{}", topic_token(instance)),
            instance: instance.to_string(),
            version: version.to_string(),
            started,
        })
    }

    /// Writes this instance's announcement with its current `topics`.
    pub async fn announce(&self, topics: &[String]) -> Result<(), MembersError> {
        let mut topics = topics.to_vec();
        topics.sort_unstable();
        topics.dedup();
        let member = Member {
            instance: self.instance.clone(),
            version: self.version.clone(),
            started: self.started,
            topics,
        };
        let value = serde_json::to_vec(&member).map_err(nats)?;
        if value.len() > MAX_ANNOUNCEMENT_BYTES {
            return Err(MembersError::TooLarge { bytes: value.len() });
        }
        self.kv
            .put(&self.key, Bytes::from(value))
            .await
            .map_err(nats)?;
        Ok(())
    }

    /// Removes this instance's announcement (a clean shutdown).
    pub async fn leave(&self) -> Result<(), MembersError> {
        self.kv.delete(&self.key).await.map_err(nats)
    }

    /// Every instance whose announcement is alive, sorted by name. An
    /// entry that is not an announcement (written by something else) is
    /// skipped.
    pub async fn list(&self) -> Result<Vec<Member>, MembersError> {
        let mut keys = self.kv.keys().await.map_err(nats)?;
        let mut members = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats)?;
            // It may age out between the listing and the read.
            let Some(value) = self.kv.get(key.as_str()).await.map_err(nats)? else {
                continue;
            };
            match serde_json::from_slice::<Member>(&value) {
                Ok(mut member) => {
                    // Sorted here, not trusted from the writer: `others_want`
                    // searches it.
                    member.topics.sort_unstable();
                    members.push(member);
                }
                Err(e) => tracing::debug!(%key, error = %e, "not a member announcement"),
            }
        }
        members.sort_by(|a, b| a.instance.cmp(&b.instance));
        Ok(members)
    }

    /// Whether any live instance other than this one has interest in
    /// `topic`, by the announcements in `members`.
    pub fn others_want(&self, members: &[Member], topic: &str) -> bool {
        members.iter().any(|m| {
            m.instance != self.instance
                && m.topics.binary_search_by(|t| t.as_str().cmp(topic)).is_ok()
        })
    }
}
