//! `/admin/events`: the status page's feed, a JSON snapshot every 2 s as
//! `event: snapshot`, to at most [`MAX_WATCHERS`] pages at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt as _;
use http_body_util::channel::Channel;
use sse_conn_pool::Connector;

use super::views;
use crate::reply::{self, Reply};
use crate::state::Shared;

/// Status pages watching at once, per gateway.
pub(crate) const MAX_WATCHERS: u64 = 16;

/// How often a snapshot is sent.
const EVERY: Duration = Duration::from_secs(2);

/// A watcher's place; dropping it frees it.
struct Watching<C: Connector>(Arc<Shared<C>>);

impl<C: Connector> Drop for Watching<C> {
    fn drop(&mut self) {
        self.0.status_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The snapshot stream (a reader too slow for it skips snapshots).
pub(super) fn status_events<C: Connector>(shared: &Arc<Shared<C>>) -> Reply {
    if shared.status_streams.fetch_add(1, Ordering::SeqCst) >= MAX_WATCHERS {
        shared.status_streams.fetch_sub(1, Ordering::SeqCst);
        return reply::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many status pages open\n",
        );
    }
    let watching = Watching(shared.clone());
    let (mut tx, body) = Channel::<Bytes, Infallible>::new(2);
    tokio::spawn(async move {
        let shared = &watching.0;
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !shared.draining() {
            tick.tick().await;
            // Compact JSON has no line breaks: one data line.
            let event = format!("event: snapshot\ndata: {}\n\n", views::snapshot(shared));
            // A reader that takes nothing for a whole period skips this
            // snapshot; one that left ends the task.
            let sent = tokio::time::timeout(EVERY, tx.send_data(Bytes::from(event))).await;
            if let Ok(Err(_closed)) = sent {
                break;
            }
        }
    });
    reply::event_stream(body.boxed_unsync())
}
