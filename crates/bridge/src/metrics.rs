//! The bridge's metrics: names, units and descriptions in one place. Labels
//! come from fixed sets (policies, refusal reasons): never topics or IPs.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::policy::Policy;

/// Gauge: client streams open.
pub const STREAMS: &str = "ssegate_bridge_streams";
/// Counter: client streams opened.
pub const OPENED: &str = "ssegate_bridge_streams_opened_total";
/// Counter: client streams refused, by reason. Label `reason`.
pub const REFUSED: &str = "ssegate_bridge_streams_refused_total";
/// Counter: events written to clients.
pub const SENT: &str = "ssegate_bridge_events_sent_total";
/// Counter: event bytes written to clients.
pub const SENT_BYTES: &str = "ssegate_bridge_event_bytes_sent_total";
/// Counter: events queued for subscribers (one per subscriber per event).
pub const FANOUT: &str = "ssegate_bridge_events_queued_total";
/// Counter: slow-consumer policy applications. Label `policy`.
pub const SLOW: &str = "ssegate_bridge_slow_consumers_total";
/// Counter: events replayed on resume.
pub const REPLAYED: &str = "ssegate_bridge_events_replayed_total";
/// Counter: resets sent (a position beyond the window or unknown).
pub const RESETS: &str = "ssegate_bridge_resets_total";
/// Counter: heartbeat comments written.
pub const HEARTBEATS: &str = "ssegate_bridge_heartbeats_total";
/// Gauge: topics with at least one subscriber.
pub const TOPICS: &str = "ssegate_bridge_topics";
/// Gauge: the process's resident memory, bytes.
pub const PROCESS_RSS: &str = "ssegate_process_resident_memory_bytes";
/// Gauge: the process's open file descriptors.
pub const PROCESS_FDS: &str = "ssegate_process_open_fds";
/// Gauge: the process's limit on open file descriptors.
pub const PROCESS_MAX_FDS: &str = "ssegate_process_max_fds";
/// Gauge: tokio tasks alive.
pub const RUNTIME_TASKS: &str = "ssegate_runtime_tasks";

/// Gauge: connections open, by listener. Label `listener` (`streams`,
/// `admin`).
pub const CONNECTIONS: &str = "ssegate_bridge_connections";
/// Gauge: the cap on client connections.
pub const CONNECTIONS_MAX: &str = "ssegate_bridge_connections_max";
/// Counter: connections closed at once for being over their listener's
/// cap. Label `listener`.
pub const CONNECTIONS_REFUSED: &str = "ssegate_bridge_connections_refused_total";

/// Gauge: admin browser sessions (status-page logins) live.
pub const ADMIN_SESSIONS: &str = "ssegate_admin_sessions";

/// Gauge: token holders with a stream open (auth on).
pub const PRINCIPALS: &str = "ssegate_auth_principals";
/// Counter: JWTs accepted, by whether the signature was checked or the
/// verification cache answered. Label `by` (`signature`, `cache`).
pub const JWT_VERIFIED: &str = "ssegate_auth_jwt_verified_total";
/// Counter: streams ended because their token expired.
pub const EXPIRED: &str = "ssegate_auth_streams_expired_total";

/// Gauge: when the served certificate's leaf expires (`notAfter`), Unix
/// seconds. Label `listener` (`streams`, `admin`); absent without TLS.
pub const TLS_NOT_AFTER: &str = "ssegate_tls_certificate_not_after_seconds";
/// Counter: TLS handshakes that failed, by listener and reason. Labels
/// `listener`, `reason`.
pub const TLS_FAILURES: &str = "ssegate_tls_handshake_failures_total";
/// Counter: connections whose PROXY protocol header was missing, malformed
/// or late (`bridge.proxy_protocol`). Label `reason` (`malformed`,
/// `timeout`, `eof`).
pub const PROXY_FAILURES: &str = "ssegate_proxy_protocol_failures_total";
/// Counter: HTTP/2 connections closed for resetting streams in a loop (the
/// rapid-reset pattern).
pub const H2_RAPID_RESET: &str = "ssegate_bridge_h2_rapid_reset_closed_total";
/// Counter: HTTP/2 streams the gateway reset for not taking their data
/// (the flow-control window stayed shut for the write timeout).
pub const H2_STALLED: &str = "ssegate_bridge_h2_streams_stalled_total";

/// Why a TLS handshake failed (the `reason` label of [`TLS_FAILURES`]):
/// no ClientHello in time, the client left, a socket error, the client's
/// alert that our certificate expired, that it does not trust it, another
/// alert, nothing in common (versions, ciphers, ALPN), not TLS at all
/// (plain HTTP on the TLS port), anything else.
pub const TLS_FAILURE_REASONS: [&str; 9] = [
    "timeout",
    "eof",
    "io",
    "peer_says_expired",
    "peer_rejects_certificate",
    "alert",
    "incompatible",
    "not_tls",
    "other",
];

/// Why a PROXY header was not accepted (the `reason` label of
/// [`PROXY_FAILURES`]).
pub const PROXY_FAILURE_REASONS: [&str; 3] = ["malformed", "timeout", "eof"];

/// Refusal reasons (the `reason` label of [`REFUSED`]).
const REFUSALS: [&str; 10] = [
    "ip_rate",
    "unauthenticated",
    "forbidden",
    "max_per_token",
    "max_subscribers",
    "max_per_ip",
    "rate",
    "draining",
    "too_many_topics",
    "invalid_topic",
];

/// Registers the descriptions with the installed recorder.
pub fn describe_metrics() {
    describe_gauge!(STREAMS, Unit::Count, "Client streams open.");
    describe_counter!(OPENED, Unit::Count, "Client streams opened.");
    describe_counter!(
        REFUSED,
        Unit::Count,
        "Client streams refused (label: reason)."
    );
    describe_counter!(SENT, Unit::Count, "Events written to clients.");
    describe_counter!(SENT_BYTES, Unit::Bytes, "Event bytes written to clients.");
    describe_counter!(FANOUT, Unit::Count, "Events queued, once per subscriber.");
    describe_counter!(
        SLOW,
        Unit::Count,
        "Slow-consumer policy applications (label: policy)."
    );
    describe_counter!(
        REPLAYED,
        Unit::Count,
        "Events replayed to resuming clients."
    );
    describe_counter!(
        RESETS,
        Unit::Count,
        "Resume positions that could not be honoured."
    );
    describe_counter!(HEARTBEATS, Unit::Count, "Heartbeat comments written.");
    describe_gauge!(PROCESS_RSS, Unit::Bytes, "Resident memory of the process.");
    describe_gauge!(PROCESS_FDS, Unit::Count, "Open file descriptors.");
    describe_gauge!(
        ADMIN_SESSIONS,
        Unit::Count,
        "Admin browser sessions (status-page logins) live; at most 64."
    );
    describe_gauge!(
        PROCESS_MAX_FDS,
        Unit::Count,
        "The open file descriptor limit."
    );
    describe_gauge!(RUNTIME_TASKS, Unit::Count, "Tokio tasks alive.");
    describe_gauge!(
        CONNECTIONS,
        Unit::Count,
        "Connections open (label: listener)."
    );
    describe_gauge!(
        CONNECTIONS_MAX,
        Unit::Count,
        "The cap on client connections (the open-file limit minus a reserve)."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        Unit::Count,
        "Connections closed at once, over their listener's cap (label: listener)."
    );
    for listener in ["streams", "admin"] {
        gauge!(CONNECTIONS, "listener" => listener).set(0.0);
        counter!(CONNECTIONS_REFUSED, "listener" => listener).increment(0);
    }
    describe_gauge!(
        PRINCIPALS,
        Unit::Count,
        "Token holders with a stream open (auth on)."
    );
    describe_counter!(
        JWT_VERIFIED,
        Unit::Count,
        "JWTs accepted (label: by = signature, or cache: verified before)."
    );
    for by in ["signature", "cache"] {
        counter!(JWT_VERIFIED, "by" => by).increment(0);
    }
    describe_counter!(
        EXPIRED,
        Unit::Count,
        "Client streams ended because their token expired."
    );
    // Every series exists from the start, at zero: an absent series makes
    // `rate()` empty, and an alert on it silent.
    for name in [
        OPENED, SENT, SENT_BYTES, FANOUT, REPLAYED, RESETS, HEARTBEATS, EXPIRED,
    ] {
        counter!(name).increment(0);
    }
    for reason in REFUSALS {
        counter!(REFUSED, "reason" => reason).increment(0);
    }
    for policy in Policy::ALL {
        counter!(SLOW, "policy" => policy.label()).increment(0);
    }
    for name in [STREAMS, TOPICS, PRINCIPALS] {
        gauge!(name).set(0.0);
    }
    describe_gauge!(TOPICS, Unit::Count, "Topics with at least one subscriber.");
    describe_edge();
}

/// The edge's metrics: TLS, PROXY protocol, HTTP/2 defences.
fn describe_edge() {
    describe_gauge!(
        TLS_NOT_AFTER,
        Unit::Seconds,
        "When the served certificate expires, Unix seconds (label: listener)."
    );
    describe_counter!(
        TLS_FAILURES,
        Unit::Count,
        "TLS handshakes that failed (labels: listener, reason)."
    );
    for listener in ["streams", "admin"] {
        for reason in TLS_FAILURE_REASONS {
            counter!(TLS_FAILURES, "listener" => listener, "reason" => reason).increment(0);
        }
    }
    describe_counter!(
        PROXY_FAILURES,
        Unit::Count,
        "Connections refused for a missing, malformed or late PROXY header (label: reason)."
    );
    for reason in PROXY_FAILURE_REASONS {
        counter!(PROXY_FAILURES, "reason" => reason).increment(0);
    }
    describe_counter!(
        H2_RAPID_RESET,
        Unit::Count,
        "HTTP/2 connections closed for resetting streams in a loop."
    );
    describe_counter!(
        H2_STALLED,
        Unit::Count,
        "HTTP/2 streams reset because their flow-control window stayed shut."
    );
    counter!(H2_RAPID_RESET).increment(0);
    counter!(H2_STALLED).increment(0);
}

pub(crate) fn record_tls_not_after(listener: &'static str, not_after: f64) {
    gauge!(TLS_NOT_AFTER, "listener" => listener).set(not_after);
}

pub(crate) fn record_tls_failure(listener: &'static str, reason: &'static str) {
    counter!(TLS_FAILURES, "listener" => listener, "reason" => reason).increment(1);
}

pub(crate) fn record_proxy_failure(reason: &'static str) {
    counter!(PROXY_FAILURES, "reason" => reason).increment(1);
}

pub(crate) fn record_h2_rapid_reset() {
    counter!(H2_RAPID_RESET).increment(1);
}

pub(crate) fn record_h2_stalled() {
    counter!(H2_STALLED).increment(1);
}

pub(crate) fn record_process(rss: u64, fds: u64, max_fds: u64, tasks: usize) {
    gauge!(PROCESS_RSS).set(rss as f64);
    gauge!(PROCESS_FDS).set(fds as f64);
    gauge!(PROCESS_MAX_FDS).set(max_fds as f64);
    gauge!(RUNTIME_TASKS).set(tasks as f64);
}

pub(crate) fn record_connections(listener: &'static str, open: u64) {
    gauge!(CONNECTIONS, "listener" => listener).set(open as f64);
}

pub(crate) fn record_connections_max(max: u64) {
    gauge!(CONNECTIONS_MAX).set(max as f64);
}

pub(crate) fn record_connection_refused(listener: &'static str) {
    counter!(CONNECTIONS_REFUSED, "listener" => listener).increment(1);
}

pub(crate) fn record_stream_opened() {
    LIFETIME.opened.fetch_add(1, Ordering::Relaxed);
    counter!(OPENED).increment(1);
    gauge!(STREAMS).increment(1.0);
}

pub(crate) fn record_stream_closed() {
    LIFETIME.closed.fetch_add(1, Ordering::Relaxed);
    gauge!(STREAMS).decrement(1.0);
}

pub(crate) fn record_refused(reason: &'static str) {
    LIFETIME.refused.fetch_add(1, Ordering::Relaxed);
    counter!(REFUSED, "reason" => reason).increment(1);
}

/// A stream's handles on the counters it updates per write. `counter!`
/// looks its key up in the recorder's registry on every call; a stream
/// writes once per event, so it looks them up once, when it opens.
pub(crate) struct StreamCounters {
    sent: metrics::Counter,
    sent_bytes: metrics::Counter,
    heartbeats: metrics::Counter,
}

impl StreamCounters {
    pub(crate) fn new() -> Self {
        Self {
            sent: counter!(SENT),
            sent_bytes: counter!(SENT_BYTES),
            heartbeats: counter!(HEARTBEATS),
        }
    }

    pub(crate) fn sent(&self, events: u64, bytes: usize) {
        LIFETIME.sent.fetch_add(events, Ordering::Relaxed);
        self.sent.increment(events);
        self.sent_bytes.increment(bytes as u64);
    }

    pub(crate) fn heartbeat(&self) {
        self.heartbeats.increment(1);
    }
}

pub(crate) fn record_event(subscribers: usize) {
    LIFETIME.received.fetch_add(1, Ordering::Relaxed);
    counter!(FANOUT).increment(subscribers as u64);
}

pub(crate) fn record_slow(policy: Policy) {
    LIFETIME.slow.fetch_add(1, Ordering::Relaxed);
    counter!(SLOW, "policy" => policy.label()).increment(1);
}

pub(crate) fn record_replay(n: u64) {
    LIFETIME.replayed.fetch_add(n, Ordering::Relaxed);
    counter!(REPLAYED).increment(n);
}

pub(crate) fn record_reset() {
    LIFETIME.resets.fetch_add(1, Ordering::Relaxed);
    counter!(RESETS).increment(1);
}

pub(crate) fn record_admin_sessions(n: usize) {
    gauge!(ADMIN_SESSIONS).set(n as f64);
}

pub(crate) fn record_principals(n: usize) {
    gauge!(PRINCIPALS).set(n as f64);
}

pub(crate) fn record_jwt_verified(cached: bool) {
    counter!(JWT_VERIFIED, "by" => if cached { "cache" } else { "signature" }).increment(1);
}

pub(crate) fn record_expired() {
    counter!(EXPIRED).increment(1);
}

pub(crate) fn record_topics(n: usize) {
    gauge!(TOPICS).set(n as f64);
}

/// Lifetime counters, also kept here (process-wide) so that `/debug/vars`
/// can report them without a metrics recorder.
pub(crate) struct Lifetime {
    pub(crate) opened: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) slow: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) received: AtomicU64,
}

pub(crate) static LIFETIME: Lifetime = Lifetime {
    opened: AtomicU64::new(0),
    closed: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    sent: AtomicU64::new(0),
    slow: AtomicU64::new(0),
    replayed: AtomicU64::new(0),
    resets: AtomicU64::new(0),
    received: AtomicU64::new(0),
};

impl Lifetime {
    pub(crate) fn json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "streams_opened": get(&self.opened),
            "streams_closed": get(&self.closed),
            "streams_refused": get(&self.refused),
            "events_sent": get(&self.sent),
            "slow_consumer_actions": get(&self.slow),
            "events_replayed": get(&self.replayed),
            "resets": get(&self.resets),
            "events_received": get(&self.received),
        })
    }
}
