//! What a packed group's task and the pool share: the group's members
//! (changed under the pool's lock), each member's sink, and the route's
//! fixed context.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderMap;
use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::pack::config::Pack;
use crate::stream::{StreamConfig, StreamItem, StreamState};
use crate::totals::Totals;

/// What one packed topic's subscribers receive from, and its state.
#[derive(Debug)]
pub(crate) struct Sink {
    pub(crate) items: broadcast::Sender<StreamItem>,
    /// Made with the sink, so the first subscriber misses nothing.
    pub(crate) first: Mutex<Option<broadcast::Receiver<StreamItem>>>,
    pub(crate) state: watch::Sender<StreamState>,
}

/// A group's members, as the pool changes them.
#[derive(Debug, Default)]
pub(crate) struct Members {
    pub(crate) topics: BTreeMap<Arc<str>, Arc<Sink>>,
    /// No member is left: the task ends.
    pub(crate) closed: bool,
    /// An operator asked for a reconnect or a rotation of a member.
    pub(crate) reconnect: bool,
    pub(crate) rotate: bool,
}

/// One packed connection's shared state.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) members: Mutex<Members>,
    /// Members changed (or a command came): the task looks again.
    pub(crate) changed: Notify,
    /// The states of its live connections (one, two during a re-pack),
    /// for the pool's counts.
    pub(crate) live: Mutex<Vec<watch::Receiver<StreamState>>>,
    /// Its number within the route (seeds its jitter, names it in logs).
    pub(crate) id: u64,
    /// Its task.
    pub(crate) task: Mutex<Option<JoinHandle<()>>>,
}

impl Group {
    pub(crate) fn len(&self) -> usize {
        self.members.lock().topics.len()
    }
}

/// What a group task needs, fixed for the route's life.
pub(crate) struct Context<C> {
    pub(crate) route: Arc<str>,
    pub(crate) pack: Pack,
    pub(crate) headers: HeaderMap,
    pub(crate) stream: StreamConfig,
    pub(crate) connector: C,
    /// The counters of connections no longer live.
    pub(crate) retired: Mutex<Totals>,
}
