//! What the pool reports: each stream for the admin view, and its counts.

use crate::stream::StreamState;

/// One stream as the admin view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The topic.
    pub topic: String,
    /// Subscribers now.
    pub subscribers: usize,
    /// Whether it is in its idle linger (no subscriber).
    pub lingering: bool,
    /// The route that serves it (`None`: a named stream or the pool's
    /// template).
    pub route: Option<String>,
    /// Its state and counters.
    pub state: StreamState,
}

/// The pool's counts, read together under its lock, so that
/// `created - removed == streams` holds exactly (the soak checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCounts {
    /// Streams in the pool now (lingering ones too).
    pub streams: usize,
    /// Subscriptions over every stream now.
    pub subscribers: usize,
    /// Streams ever created.
    pub created: u64,
    /// Streams ever removed (linger expired, or the pool closed).
    pub removed: u64,
    /// Connection attempts over the pool's life (removed streams included).
    pub attempts: u64,
    /// Connections that reached the open phase, over the pool's life.
    pub connections_opened: u64,
    /// Events received from upstreams, over the pool's life.
    pub events: u64,
    /// Rotations completed, over the pool's life.
    pub rotations: u64,
    /// Body bytes received from upstreams, over the pool's life.
    pub bytes: u64,
    /// Errors by kind over the pool's life, in `sse_health::ErrorKind::ALL`
    /// order (connect, status, stream, timeout).
    pub errors: [u64; 4],
}
