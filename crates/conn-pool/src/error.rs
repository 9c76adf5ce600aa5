//! Why the pool refuses a subscription: [`PoolError`], each case with what
//! a client needs to hear (the bridge turns them into statuses).

use std::fmt;
use std::time::Duration;

use sse_state_machine::StopReason;

/// Why a subscription was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// The topic is empty, longer than `max_topic_len`, `.` or `..`, or has a
    /// character outside `[A-Za-z0-9._-]`.
    InvalidTopic(String),
    /// The pool holds `max_streams` streams; try again after `retry_after`.
    AtCapacity {
        /// The cap.
        limit: usize,
        /// A hint for the client (the idle linger: when a slot may free up).
        retry_after: Duration,
    },
    /// The pool is at its cap and `max_pending` subscriptions already wait.
    QueueFull {
        /// `max_pending`.
        limit: usize,
    },
    /// The host this topic's stream would connect to already has
    /// `max_streams_per_host` streams.
    HostAtCapacity {
        /// `max_streams_per_host`.
        limit: usize,
        /// As for [`PoolError::AtCapacity`].
        retry_after: Duration,
    },
    /// The topic's route holds its `max_streams` streams.
    RouteAtCapacity {
        /// The route's name.
        route: String,
        /// Its `max_streams`.
        limit: usize,
        /// As for [`PoolError::AtCapacity`].
        retry_after: Duration,
    },
    /// No upstream serves this topic: it is no named stream, no route's
    /// topics match it, and there is no catch-all `url_template`.
    UnknownStream(String),
    /// The upstream answered this topic with a stop (a 204, a 404, another
    /// 4xx, a redirect it may not follow) within `negative_ttl`: the answer
    /// is remembered, and not asked again before `retry_after`.
    Stopped {
        /// The topic.
        topic: String,
        /// The upstream's answer.
        reason: StopReason,
        /// When it may be asked again.
        retry_after: Duration,
    },
    /// The pool was closed.
    Closed,
    /// The source of the events cannot be reached now (a cluster's NATS):
    /// try again shortly.
    Unavailable(String),
    /// The URL template or the stream configuration is invalid.
    Config(String),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidTopic(topic) => {
                write!(f, "invalid topic {topic:?}: use 1-64 of A-Z a-z 0-9 . _ -")
            }
            Self::AtCapacity { limit, .. } => {
                write!(f, "the upstream pool is at its cap of {limit} streams")
            }
            Self::QueueFull { limit } => write!(
                f,
                "the upstream pool is at its cap and {limit} subscriptions already wait"
            ),
            Self::HostAtCapacity { limit, .. } => write!(
                f,
                "the upstream host of this topic is at its cap of {limit} streams"
            ),
            Self::RouteAtCapacity { route, limit, .. } => write!(
                f,
                "the upstream route {route:?} of this topic is at its cap of {limit} streams"
            ),
            Self::UnknownStream(key) => write!(f, "no upstream serves the topic {key:?}"),
            Self::Stopped { topic, reason, .. } => {
                write!(f, "the upstream answered topic {topic:?} with: {reason}")
            }
            Self::Closed => f.write_str("the upstream pool is closed"),
            Self::Unavailable(why) => write!(f, "the event source is unavailable: {why}"),
            Self::Config(why) => write!(f, "invalid upstream configuration: {why}"),
        }
    }
}

impl std::error::Error for PoolError {}
