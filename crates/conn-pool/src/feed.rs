//! What a pool slot holds: a stream of its own, or a place in a packed
//! group. Both answer the same questions.

use tokio::sync::{broadcast, watch};

use crate::pack::Member;
use crate::stream::{StreamHandle, StreamItem, StreamState};

/// A topic's source within the pool.
#[derive(Debug)]
pub(crate) enum Feed {
    /// One upstream stream for the topic.
    Stream(StreamHandle),
    /// One topic of a packed connection.
    Packed(Member),
}

impl Feed {
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StreamItem> {
        match self {
            Self::Stream(handle) => handle.subscribe(),
            Self::Packed(member) => member.subscribe(),
        }
    }

    pub(crate) fn state(&self) -> StreamState {
        match self {
            Self::Stream(handle) => handle.state(),
            Self::Packed(member) => member.sink.state.borrow().clone(),
        }
    }

    pub(crate) fn watch_state(&self) -> watch::Receiver<StreamState> {
        match self {
            Self::Stream(handle) => handle.watch_state(),
            Self::Packed(member) => member.sink.state.subscribe(),
        }
    }

    /// A stream whose task ended; never a packed member (its group runs
    /// on, and a refused member is evicted by the pool).
    pub(crate) fn is_finished(&self) -> bool {
        match self {
            Self::Stream(handle) => handle.is_finished(),
            Self::Packed(_) => false,
        }
    }

    pub(crate) fn request_reconnect(&self) -> bool {
        match self {
            Self::Stream(handle) => handle.request_reconnect(),
            Self::Packed(member) => member.request(false),
        }
    }

    pub(crate) fn request_rotate(&self) -> bool {
        match self {
            Self::Stream(handle) => handle.request_rotate(sse_state_machine::RotateReason::Manual),
            Self::Packed(member) => member.request(true),
        }
    }

    /// Stops it: a stream's task ends; a member leaves its group (the
    /// group re-packs without it, or closes when it was the last).
    pub(crate) async fn stop(self) {
        match self {
            Self::Stream(handle) => handle.stop().await,
            Self::Packed(member) => drop(member),
        }
    }

    /// Whether it is a stream of its own (it counts in the pool's caps
    /// and totals itself; a member's group does).
    pub(crate) fn is_stream(&self) -> bool {
        matches!(self, Self::Stream(_))
    }
}
