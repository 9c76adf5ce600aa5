//! What a load process reports (a JSON file the harness reads back), and
//! the resolution of its delivery gaps.

use std::collections::HashMap;

use serde::Serialize;

/// The JSON report of one load process.
#[derive(Debug, Default, Serialize, serde::Deserialize, Clone)]
pub(crate) struct Report {
    pub(crate) role: String,
    /// Sessions started and completed as intended.
    pub(crate) sessions: u64,
    pub(crate) sessions_ok: u64,
    pub(crate) resets_sent: u64,
    /// Failures by kind: `status-503`, `connect`, `timeout`, `ended`, ...
    pub(crate) failures: HashMap<String, u64>,
    pub(crate) events: u64,
    pub(crate) quotes: u64,
    /// Unannounced missing events, duplicates and reorders, malformed quotes.
    pub(crate) missing: u64,
    pub(crate) duplicates: u64,
    pub(crate) malformed: u64,
    pub(crate) gap_notices: u64,
    pub(crate) reset_notices: u64,
    pub(crate) garbage: u64,
    /// Resumes: total, continued exactly, reset by the gateway.
    pub(crate) resumes: u64,
    pub(crate) resumes_exact: u64,
    pub(crate) resumes_reset: u64,
    /// Slow consumers: cut by the gateway, and not cut.
    pub(crate) slow_cut: u64,
    pub(crate) slow_not_cut: u64,
    /// Checker reconnections (the gateway ended a long-lived stream).
    pub(crate) reconnects: u64,
    /// Live latency (ms): count, mean, p50, p99, max; and events delivered
    /// late because of an upstream outage (excluded from the latency).
    pub(crate) latency_count: u64,
    pub(crate) latency_mean_ms: f64,
    pub(crate) latency_p50_ms: u64,
    pub(crate) latency_p99_ms: u64,
    pub(crate) latency_max_ms: u64,
    pub(crate) catch_up_events: u64,
    /// Latency histogram buckets (ms upper bound, count), to merge reports.
    pub(crate) latency_buckets: Vec<(u64, u64)>,
    /// Per topic: (from, to) unix ms of each pause in delivery.
    pub(crate) delivery_gaps: Vec<(String, u64, u64)>,
    /// The first order anomalies (topic, expected n, got n, unix ms), for
    /// a look at what a failed run saw.
    #[serde(default)]
    pub(crate) anomalies: Vec<(String, u64, u64, u64)>,
    /// Per topic: unix ms of the first and last event seen.
    pub(crate) first_last: HashMap<String, (u64, u64)>,
    /// Per topic: events missing and duplicated (the packed route's
    /// topics are judged on their own).
    #[serde(default)]
    pub(crate) by_topic: HashMap<String, (u64, u64)>,
}

/// A pause in a topic's events longer than this is recorded as a delivery
/// gap: the resolution at which reconnections are measured (the soak feeds
/// 100 events per second per topic, one every 10 ms).
pub(crate) const GAP_MS: u64 = 25;
