//! The metrics cluster mode reports: names, units and descriptions in one
//! place. Labels come from fixed sets: never topic or instance names.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

/// Counter: lease acquisitions, by result. Label `result`: owned, taken,
/// at_capacity, error.
pub const ACQUIRES: &str = "ssegate_cluster_lease_acquires_total";
/// Gauge: leases this instance holds (topics whose upstream it owns).
pub const HELD: &str = "ssegate_cluster_leases_held";
/// Counter: leases ended, by reason. Label `reason`: released, taken_over,
/// expired. A rising `expired` is lease flapping or NATS trouble.
pub const ENDS: &str = "ssegate_cluster_lease_ends_total";
/// Counter: renewals that failed and were retried before the fence.
pub const RENEW_FAILURES: &str = "ssegate_cluster_lease_renew_failures_total";
/// Counter: events published to the event stream, stored for the first time.
pub const PUBLISHED: &str = "ssegate_cluster_events_published_total";
/// Counter: events the stream already had (same topic and upstream id),
/// dropped by its duplicate window.
pub const DUPLICATES: &str = "ssegate_cluster_events_duplicate_total";
/// Counter: breaks in a topic's chain of events seen by a follower (events
/// aged out before they were read, or never stored).
pub const MISSED: &str = "ssegate_cluster_events_missed_total";
/// Counter: events an owner read from its upstream and could not store.
pub const PUBLISH_FAILURES: &str = "ssegate_cluster_publish_failures_total";
/// Gauge: 1 while this instance cannot reach NATS (or cannot announce
/// itself): the cluster is degraded.
pub const DEGRADED: &str = "ssegate_cluster_degraded";
/// Gauge: topics this instance has subscribers of and knows no owner of
/// (nobody could take the lease, or NATS did not answer).
pub const UNOWNED: &str = "ssegate_cluster_topics_unowned";
/// Gauge: events the log holds that this instance's followers have not
/// read yet, over all its topics (the consumers' lag).
pub const PENDING: &str = "ssegate_cluster_consumer_pending";
/// Counter: upstream events an owner missed because it fell behind its
/// upstream (the log stores one event at a time); marked in the log.
pub const OWNER_LAGGED: &str = "ssegate_cluster_owner_lagged_events_total";
/// Gauge: fallback upstreams this instance holds (NATS out of reach).
pub const FALLBACKS: &str = "ssegate_cluster_fallback_streams";
/// Gauge: topics this instance follows (one consumer each).
pub const FOLLOWED: &str = "ssegate_cluster_topics_followed";

/// Registers the descriptions with the installed recorder.
pub fn describe_metrics() {
    describe_counter!(
        ACQUIRES,
        Unit::Count,
        "Topic lease acquisitions (label: result: owned, taken, at_capacity, error)."
    );
    describe_gauge!(
        HELD,
        Unit::Count,
        "Topic leases this instance holds (upstreams it owns)."
    );
    describe_counter!(
        ENDS,
        Unit::Count,
        "Topic leases ended (label: reason: released, taken_over, expired)."
    );
    describe_counter!(
        RENEW_FAILURES,
        Unit::Count,
        "Lease renewals that failed and were retried before the fence."
    );
    describe_counter!(
        PUBLISHED,
        Unit::Count,
        "Upstream events stored in the cluster's event stream."
    );
    describe_counter!(
        DUPLICATES,
        Unit::Count,
        "Upstream events the event stream already had (dropped as duplicates)."
    );
    describe_counter!(
        MISSED,
        Unit::Count,
        "Breaks in a topic's chain of events seen by a follower; its subscribers were reset."
    );
    describe_counter!(
        PUBLISH_FAILURES,
        Unit::Count,
        "Upstream events an owner could not store in the event stream."
    );
    describe_gauge!(
        DEGRADED,
        Unit::Count,
        "1 while this instance cannot reach NATS (or announce itself): the cluster is degraded."
    );
    describe_gauge!(
        UNOWNED,
        Unit::Count,
        "Topics this instance has subscribers of and knows no owner of."
    );
    describe_gauge!(
        PENDING,
        Unit::Count,
        "Events in the log this instance's followers have not read yet (consumer lag)."
    );
    describe_counter!(
        OWNER_LAGGED,
        Unit::Count,
        "Upstream events an owner missed because its upstream sent faster than the log stores."
    );
    describe_gauge!(
        FALLBACKS,
        Unit::Count,
        "Fallback upstreams this instance holds while NATS is out of reach (cluster.fallback_max_streams)."
    );
    describe_gauge!(
        FOLLOWED,
        Unit::Count,
        "Topics this instance follows in the event stream (one consumer each)."
    );
    // Every series exists from the start, at zero: an absent series makes
    // `rate()` empty, and an alert on it silent.
    for result in ["owned", "taken", "at_capacity", "error"] {
        counter!(ACQUIRES, "result" => result).increment(0);
    }
    for reason in ["released", "taken_over", "expired"] {
        counter!(ENDS, "reason" => reason).increment(0);
    }
    for name in [
        RENEW_FAILURES,
        PUBLISHED,
        DUPLICATES,
        MISSED,
        PUBLISH_FAILURES,
        OWNER_LAGGED,
    ] {
        counter!(name).increment(0);
    }
    for name in [HELD, DEGRADED, UNOWNED, PENDING, FOLLOWED, FALLBACKS] {
        gauge!(name).set(0.0);
    }
}

pub(crate) fn record_degraded(degraded: bool) {
    gauge!(DEGRADED).set(f64::from(u8::from(degraded)));
}

pub(crate) fn record_interest(unowned: usize, pending: u64) {
    gauge!(UNOWNED).set(unowned as f64);
    gauge!(PENDING).set(pending as f64);
}

pub(crate) fn record_owner_lag(missed: u64) {
    counter!(OWNER_LAGGED).increment(missed);
}

pub(crate) fn record_fallbacks(n: usize) {
    gauge!(FALLBACKS).set(n as f64);
}

pub(crate) fn record_missed() {
    counter!(MISSED).increment(1);
}

pub(crate) fn record_publish_failure() {
    counter!(PUBLISH_FAILURES).increment(1);
}

pub(crate) fn record_followed(delta: f64) {
    gauge!(FOLLOWED).increment(delta);
}

pub(crate) fn record_acquire(result: &'static str) {
    counter!(ACQUIRES, "result" => result).increment(1);
}

pub(crate) fn record_held(delta: f64) {
    gauge!(HELD).increment(delta);
}

pub(crate) fn record_end(reason: &'static str) {
    counter!(ENDS, "reason" => reason).increment(1);
}

pub(crate) fn record_renew_failure() {
    counter!(RENEW_FAILURES).increment(1);
}

pub(crate) fn record_published(duplicate: bool) {
    if duplicate {
        counter!(DUPLICATES).increment(1);
    } else {
        counter!(PUBLISHED).increment(1);
    }
}
