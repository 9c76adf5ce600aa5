//! The metrics health reports: names, units and descriptions in one place,
//! and the functions that record them. Labels are low-cardinality enums only
//! (levels, error kinds, causes): never topic names, addresses or tokens.

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use crate::pool::Readiness;
use crate::stream::{ErrorKind, Level, RotateCause};

/// Gauge: upstream streams by health level. Label `level`.
pub const STREAMS: &str = "ssegate_upstream_streams";
/// Counter: events received from upstreams.
pub const EVENTS: &str = "ssegate_upstream_events_total";
/// Counter: upstream body bytes received.
pub const BYTES: &str = "ssegate_upstream_bytes_total";
/// Counter: upstream errors. Label `kind`.
pub const ERRORS: &str = "ssegate_upstream_errors_total";
/// Histogram: event latency (event timestamp to receipt), seconds. The
/// gateway's upstream streams record it with a `route` label (`default` for
/// the template and named streams) where `event_time` says where the
/// timestamp is: a label per route, not per topic, so the series stay as
/// many as the configuration's routes however many topics come and go.
pub const LATENCY: &str = "ssegate_upstream_event_latency_seconds";
/// Counter: rotations advised by health. Label `cause`.
pub const ROTATIONS_ADVISED: &str = "ssegate_upstream_rotations_advised_total";
/// Gauge: 1 when the pool is ready, 0 when not.
pub const READY: &str = "ssegate_pool_ready";
/// Gauge: open upstream connections over the cap (0 to 1).
pub const PRESSURE: &str = "ssegate_pool_pressure_ratio";

/// Registers the descriptions with the installed recorder. Call once after
/// installing it.
pub fn describe_metrics() {
    describe_gauge!(
        STREAMS,
        Unit::Count,
        "Upstream streams by health level (label: level)."
    );
    describe_counter!(
        EVENTS,
        Unit::Count,
        "Events received from upstream streams."
    );
    describe_counter!(
        BYTES,
        Unit::Bytes,
        "Body bytes received from upstream streams."
    );
    describe_counter!(
        ERRORS,
        Unit::Count,
        "Upstream errors by kind (label: kind)."
    );
    describe_histogram!(
        LATENCY,
        Unit::Seconds,
        "Event latency, from the event's own timestamp to its receipt."
    );
    describe_counter!(
        ROTATIONS_ADVISED,
        Unit::Count,
        "Connection rotations advised by health (label: cause)."
    );
    describe_gauge!(
        READY,
        Unit::Count,
        "1 when the pool is ready to serve, 0 when not."
    );
    describe_gauge!(
        PRESSURE,
        Unit::Percent,
        "Open upstream connections as a fraction of the cap."
    );
    // Every series exists from the start, at zero (see the pool's metrics).
    record_levels(0, 0, 0);
    for kind in [
        ErrorKind::Connect,
        ErrorKind::Status,
        ErrorKind::Stream,
        ErrorKind::Timeout,
    ] {
        counter!(ERRORS, "kind" => kind.as_str()).increment(0);
    }
    for cause in ["errors", "eventless", "degraded", "failure_ratio"] {
        counter!(ROTATIONS_ADVISED, "cause" => cause).increment(0);
    }
    gauge!(PRESSURE).set(0.0);
}

/// Records how many streams are at each level.
pub fn record_levels(healthy: usize, degraded: usize, unhealthy: usize) {
    for (level, count) in [
        (Level::Healthy, healthy),
        (Level::Degraded, degraded),
        (Level::Unhealthy, unhealthy),
    ] {
        gauge!(STREAMS, "level" => level.as_str()).set(count as f64);
    }
}

/// Records an event, its size and its latency.
pub fn record_event(bytes: usize, latency: Option<std::time::Duration>) {
    counter!(EVENTS).increment(1);
    counter!(BYTES).increment(bytes as u64);
    if let Some(latency) = latency {
        histogram!(LATENCY).record(latency.as_secs_f64());
    }
}

/// Records an error.
pub fn record_error(kind: ErrorKind) {
    counter!(ERRORS, "kind" => kind.as_str()).increment(1);
}

/// Records an advised rotation.
pub fn record_rotation_advised(cause: RotateCause) {
    let cause = match cause {
        RotateCause::Errors(_) => "errors",
        RotateCause::Eventless(_) => "eventless",
        RotateCause::Degraded(_) => "degraded",
        RotateCause::FailureRatio(_) => "failure_ratio",
    };
    counter!(ROTATIONS_ADVISED, "cause" => cause).increment(1);
}

/// Records readiness and capacity pressure.
pub fn record_pool(readiness: &Readiness, active: usize, cap: usize) {
    gauge!(READY).set(if readiness.ready { 1.0 } else { 0.0 });
    let ratio = if cap == 0 {
        1.0
    } else {
        active as f64 / cap as f64
    };
    gauge!(PRESSURE).set(ratio);
}
