//! What `/admin/cluster` shows of a [`ClusterSource`]: this instance, the
//! members and their interest, the leases, and this instance's topics with
//! their owner and the lag of their followers.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sse_conn_pool::Connector;

use crate::interest::Owner;
use crate::source::ClusterSource;

/// A topic as `/admin/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    /// The topic.
    pub topic: String,
    /// Local subscriptions (the hub holds one per topic).
    pub local: usize,
    /// Its owner as last seen.
    pub owner: Owner,
    /// How long this instance has owned it.
    pub owned_for: Option<Duration>,
}

impl<C: Connector> ClusterSource<C> {
    /// The topics this instance has interest in or owns, sorted.
    pub fn topics(&self) -> Vec<TopicView> {
        let mut out: Vec<TopicView> = self
            .inner
            .topics
            .lock()
            .values()
            .map(|i| TopicView {
                topic: i.topic.to_string(),
                local: i.local.lock().0,
                owner: i.owner.lock().clone(),
                owned_for: i.owned_since.lock().map(|t| t.elapsed()),
            })
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }

    /// The status page's part: this instance, whether NATS answers, and
    /// each topic with its owner, from local state only (cheap, never
    /// waits on NATS).
    pub fn summary(&self) -> serde_json::Value {
        let inner = &self.inner;
        let topics: Vec<serde_json::Value> = self
            .topics()
            .into_iter()
            .map(|view| {
                serde_json::json!({
                    "topic": view.topic,
                    "owner": self.owner_json(&view.owner),
                    "mine": view.owner == Owner::Me,
                    "local_subscriptions": view.local,
                })
            })
            .collect();
        serde_json::json!({
            "instance": inner.leases.instance(),
            "nats_connected": inner.connected(),
            "degraded": inner.degraded(),
            "max_streams": inner.leases.max_streams(),
            "owned": topics.iter().filter(|t| t["mine"] == true).count(),
            "topics": topics,
        })
    }

    /// An owner as JSON: an instance's name, or null while unknown, or why
    /// there is none.
    fn owner_json(&self, owner: &Owner) -> serde_json::Value {
        match owner {
            Owner::Me => serde_json::json!(self.inner.leases.instance()),
            Owner::Other(name) => serde_json::json!(name),
            Owner::Capped => serde_json::json!("none: the cluster-wide cap is reached"),
            Owner::Unreachable => serde_json::json!("unknown: NATS did not answer"),
            Owner::Unknown => serde_json::Value::Null,
        }
    }

    /// `/admin/cluster`: this instance, the members and their interest, the
    /// leases and how long since each was renewed, and this instance's
    /// topics with their owner and lag (positions the follower is behind
    /// the log). What NATS cannot answer is an `error` field, not a
    /// failure: the view is most needed when NATS is in trouble.
    pub async fn view(&self) -> serde_json::Value {
        let inner = &self.inner;
        let wait = inner.leases.ttl();
        let members = match tokio::time::timeout(wait, inner.members.list()).await {
            Ok(Ok(members)) => serde_json::json!(members),
            Ok(Err(e)) => serde_json::json!({"error": e.to_string()}),
            Err(_) => serde_json::json!({"error": "NATS did not answer in time"}),
        };
        let now = std::time::SystemTime::now();
        let leases = match tokio::time::timeout(wait, inner.leases.owners()).await {
            Ok(Ok(owners)) => serde_json::Value::Array(
                owners
                    .into_iter()
                    .map(|l| {
                        serde_json::json!({
                            "topic": l.topic,
                            "owner": l.owner,
                            "revision": l.revision,
                            "renewed_ms_ago": now.duration_since(l.written).map_or(0, |d| d.as_millis()),
                        })
                    })
                    .collect(),
            ),
            Ok(Err(e)) => serde_json::json!({"error": e.to_string()}),
            Err(_) => serde_json::json!({"error": "NATS did not answer in time"}),
        };
        let mut topics = Vec::new();
        for view in self.topics() {
            let followed = inner
                .topics
                .lock()
                .get(view.topic.as_str())
                .map_or(0, |i| i.followed.load(Ordering::Relaxed));
            let newest = match tokio::time::timeout(wait, inner.events.last(&view.topic)).await {
                Ok(Ok(last)) => last.map(|s| s.sequence),
                _ => None,
            };
            topics.push(serde_json::json!({
                "topic": view.topic,
                "local_subscriptions": view.local,
                "owner": self.owner_json(&view.owner),
                "owned_ms": view.owned_for.map(|d| d.as_millis()),
                "followed": followed,
                "newest": newest,
                "lag": newest.map(|n| n.saturating_sub(followed)),
            }));
        }
        serde_json::json!({
            "instance": inner.leases.instance(),
            "epoch": &*inner.epoch,
            "nats_connected": inner.connected(),
            "lease_ttl_ms": wait.as_millis(),
            "max_streams": inner.leases.max_streams(),
            "members": members,
            "leases": leases,
            "topics": topics,
        })
    }
}
