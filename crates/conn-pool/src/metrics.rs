//! The metrics the client and the pool report: names, units and descriptions
//! in one place. Labels come from fixed sets (phases, reasons, failure
//! kinds): never topic names, URLs or addresses.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use sse_state_machine::{FailureKind, Phase, Reason, RotateReason};

/// Counter: connection attempts started.
pub const ATTEMPTS: &str = "ssegate_upstream_connect_attempts_total";
/// Counter: connections opened (200, event stream).
pub const OPENED: &str = "ssegate_upstream_connections_opened_total";
/// Counter: connections lost or refused, by reason. Label `reason`.
pub const FAILURES: &str = "ssegate_upstream_failures_total";
/// Counter: make-before-break rotations completed, by reason. Label
/// `reason`: age, errors, stale, degraded, manual.
pub const ROTATIONS: &str = "ssegate_upstream_rotations_total";
/// Counter: body bytes received from upstreams.
pub const BYTES: &str = "ssegate_upstream_bytes_total";
/// Gauge: upstream streams by phase. Label `phase`: idle, connecting, open,
/// backing_off, cooling_off, stopped.
pub const PHASES: &str = "ssegate_upstream_streams_by_phase";
/// Counter: streams that stopped for good, by reason. Label `reason`.
pub const STOPPED: &str = "ssegate_upstream_streams_stopped_total";
/// Counter: events delivered to subscribers (after de-duplication).
pub const EVENTS: &str = "ssegate_upstream_events_delivered_total";
/// Gauge: streams in the pool.
pub const STREAMS: &str = "ssegate_pool_streams";
/// Gauge: streams each upstream route holds (lingering ones too), within
/// its `max_streams`. Label `route`.
pub const ROUTE_STREAMS: &str = "ssegate_pool_route_streams";
/// Histogram: event latency where a route's `health.event_time` says where
/// an event carries its time, seconds. Label `route`. (Named and described
/// by `sse-health`; the streams here record it.)
pub const EVENT_LATENCY: &str = sse_health::metrics::LATENCY;
/// Buckets for [`EVENT_LATENCY`], seconds: 1 ms to 30 s. An exporter should
/// keep it as a histogram with these: fixed memory whatever the traffic,
/// and it adds up across instances.
pub const EVENT_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Gauge: subscriptions in the pool.
pub const SUBSCRIBERS: &str = "ssegate_pool_subscribers";
/// Counter: subscriptions refused, by reason. Label `reason`.
pub const REFUSED: &str = "ssegate_pool_subscriptions_refused_total";
/// Gauge: upstream sockets open (an HTTP/2 socket counts once, however many
/// streams share it).
pub const SOCKETS: &str = "ssegate_upstream_sockets";
/// Counter: connection attempts that had to wait for a per-host slot.
pub const HOST_WAITS: &str = "ssegate_upstream_host_cap_waits_total";
/// Gauge: subscriptions waiting in the pool's pending queue.
pub const PENDING: &str = "ssegate_pool_pending";
/// Gauge: topics whose upstream refused them, remembered for
/// `negative_ttl` (at most 4,096).
pub const NEGATIVE: &str = "ssegate_pool_refused_topics";

/// `ssegate_pool_repacks_total{route}`: packed connections re-opened
/// for a new set of topics (make-before-break).
pub const REPACKS: &str = "ssegate_pool_repacks_total";
/// `ssegate_pool_packed_events_dropped_total{route,reason}`: events of a
/// packed connection no topic took: `no_topic` (the event names none:
/// unreadable data), `unknown_topic` (a topic not in the connection's
/// set), `lagged` (the group fell behind its connection).
pub const PACK_DROPPED: &str = "ssegate_pool_packed_events_dropped_total";
/// `ssegate_pool_packed_duplicates_total{route}`: events a topic had
/// already delivered (the overlap of a re-pack, a resume's replay).
pub const PACK_DUPLICATES: &str = "ssegate_pool_packed_duplicates_total";

/// Registers the descriptions with the installed recorder.
pub fn describe_metrics() {
    describe_counter!(
        ATTEMPTS,
        Unit::Count,
        "Upstream connection attempts started."
    );
    describe_counter!(
        OPENED,
        Unit::Count,
        "Upstream connections opened (200, text/event-stream)."
    );
    describe_counter!(
        FAILURES,
        Unit::Count,
        "Upstream connections lost or refused (label: reason)."
    );
    describe_counter!(
        ROTATIONS,
        Unit::Count,
        "Make-before-break rotations completed (label: reason)."
    );
    describe_counter!(BYTES, Unit::Bytes, "Body bytes received from upstreams.");
    describe_gauge!(
        PHASES,
        Unit::Count,
        "Upstream streams by phase (label: phase)."
    );
    describe_counter!(
        STOPPED,
        Unit::Count,
        "Upstream streams stopped for good (label: reason)."
    );
    describe_counter!(
        EVENTS,
        Unit::Count,
        "Events delivered to subscribers, after de-duplication."
    );
    describe_gauge!(STREAMS, Unit::Count, "Upstream streams held by the pool.");
    describe_gauge!(
        ROUTE_STREAMS,
        Unit::Count,
        "Upstream streams held per route (label: route)."
    );
    describe_gauge!(SUBSCRIBERS, Unit::Count, "Subscriptions held by the pool.");
    describe_counter!(
        REFUSED,
        Unit::Count,
        "Subscriptions refused by the pool (label: reason)."
    );
    describe_gauge!(
        SOCKETS,
        Unit::Count,
        "Upstream sockets open (a shared HTTP/2 socket counts once)."
    );
    describe_counter!(
        HOST_WAITS,
        Unit::Count,
        "Connection attempts that waited for a per-host socket slot."
    );
    describe_gauge!(
        PENDING,
        Unit::Count,
        "Subscriptions waiting for a free stream slot."
    );
    describe_gauge!(
        NEGATIVE,
        Unit::Count,
        "Topics the upstream refused, remembered for negative_ttl."
    );
    // Every series exists from the start, at zero: an absent series makes
    // `rate()` empty, and an alert on it silent.
    for name in [ATTEMPTS, OPENED, BYTES, EVENTS, HOST_WAITS] {
        counter!(name).increment(0);
    }
    for reason in [
        "refused",
        "connect_timeout",
        "status_5xx",
        "status_429",
        "end_of_body",
    ] {
        counter!(FAILURES, "reason" => reason).increment(0);
    }
    for reason in ["age", "errors", "stale", "degraded", "manual"] {
        counter!(ROTATIONS, "reason" => reason).increment(0);
    }
    for reason in [
        "requested",
        "no_content",
        "client_error",
        "redirect_refused",
    ] {
        counter!(STOPPED, "reason" => reason).increment(0);
    }
    for reason in [
        "at_capacity",
        "host_at_capacity",
        "route_at_capacity",
        "unknown_stream",
        "invalid_topic",
        "upstream_stopped",
    ] {
        counter!(REFUSED, "reason" => reason).increment(0);
    }
    for phase in [
        Phase::Idle,
        Phase::Connecting,
        Phase::Open,
        Phase::BackingOff,
        Phase::CoolingOff,
        Phase::Stopped,
    ] {
        gauge!(PHASES, "phase" => phase_label(phase)).increment(0.0);
    }
    describe_counter!(
        REPACKS,
        Unit::Count,
        "Packed connections re-opened for a new set of topics."
    );
    describe_counter!(
        PACK_DROPPED,
        Unit::Count,
        "Events of packed connections that no topic took, by reason."
    );
    describe_counter!(
        PACK_DUPLICATES,
        Unit::Count,
        "Events of packed connections a topic had already delivered."
    );
    for name in [STREAMS, SUBSCRIBERS, SOCKETS, PENDING] {
        gauge!(name).increment(0.0);
    }
    sse_health::metrics::describe_metrics();
}

/// A low-cardinality name for why a stream changed phase.
pub fn reason_label(reason: Reason) -> &'static str {
    match reason {
        Reason::Start => "start",
        Reason::Opened => "opened",
        Reason::BackoffElapsed => "backoff_elapsed",
        Reason::CoolOffElapsed => "cool_off_elapsed",
        Reason::Failed(kind) => match kind {
            FailureKind::Dns => "dns",
            FailureKind::Refused => "refused",
            FailureKind::Tls => "tls",
            FailureKind::Io => "io",
            FailureKind::Timeout => "connect_timeout",
            FailureKind::Protocol => "protocol",
            FailureKind::Limit => "limit",
            FailureKind::RedirectRefused => "redirect_refused",
            _ => "other",
        },
        Reason::Status(status) => match status {
            429 => "status_429",
            401 | 403 => "status_auth",
            500..=599 => "status_5xx",
            _ => "status_other",
        },
        Reason::NotEventStream => "not_event_stream",
        Reason::EndOfBody => "end_of_body",
        Reason::Timeout(kind) => match kind {
            sse_state_machine::TimeoutKind::Connect => "timeout_connect",
            sse_state_machine::TimeoutKind::FirstByte => "timeout_first_byte",
            sse_state_machine::TimeoutKind::Idle => "timeout_idle",
            sse_state_machine::TimeoutKind::EventAssembly => "timeout_event_assembly",
        },
        Reason::AttemptBudget => "attempt_budget",
        Reason::Rotated(_) => "rotated",
        Reason::Reconnect => "reconnect",
        Reason::Stop(stop) => match stop {
            sse_state_machine::StopReason::Requested => "requested",
            sse_state_machine::StopReason::NoContent => "no_content",
            sse_state_machine::StopReason::ClientError(_) => "client_error",
            sse_state_machine::StopReason::RedirectRefused => "redirect_refused",
        },
    }
}

/// Records a phase change of a stream.
pub(crate) fn record_change(to: Phase, reason: Reason) {
    match (to, reason) {
        (Phase::Open, Reason::Opened) => counter!(OPENED).increment(1),
        (Phase::Open, Reason::Rotated(why)) => {
            let why = match why {
                RotateReason::Age => "age",
                RotateReason::Errors => "errors",
                RotateReason::Stale => "stale",
                RotateReason::Degraded => "degraded",
                RotateReason::Manual => "manual",
            };
            counter!(ROTATIONS, "reason" => why).increment(1);
        }
        (Phase::Stopped, _) => counter!(STOPPED, "reason" => reason_label(reason)).increment(1),
        (Phase::BackingOff | Phase::CoolingOff, _)
        | (
            Phase::Open | Phase::Connecting,
            Reason::Failed(_) | Reason::Timeout(_) | Reason::EndOfBody,
        ) => {
            counter!(FAILURES, "reason" => reason_label(reason)).increment(1);
        }
        _ => {}
    }
}

/// Records a connection attempt.
pub(crate) fn record_attempt() {
    counter!(ATTEMPTS).increment(1);
}

/// Records delivered events (one call per chunk, not per event).
pub(crate) fn record_events(n: u64) {
    if n > 0 {
        counter!(EVENTS).increment(n);
    }
}

/// Records the pool's size.
pub(crate) fn record_pool(streams: usize, subscribers: usize) {
    gauge!(STREAMS).set(streams as f64);
    gauge!(SUBSCRIBERS).set(subscribers as f64);
}

/// The gauge of the streams `route` holds.
pub(crate) fn route_gauge(route: &str) -> metrics::Gauge {
    gauge!(ROUTE_STREAMS, "route" => route.to_string())
}

/// Records a refused subscription.
pub(crate) fn record_refused(reason: &'static str) {
    counter!(REFUSED, "reason" => reason).increment(1);
}

/// Records a socket opened (+1) or closed (-1).
pub(crate) fn record_socket(delta: f64) {
    gauge!(SOCKETS).increment(delta);
}

/// Records an attempt waiting for a per-host slot.
pub(crate) fn record_host_wait() {
    counter!(HOST_WAITS).increment(1);
}

/// Records the pending queue's length.
pub(crate) fn record_refused_topics(n: usize) {
    gauge!(NEGATIVE).set(n as f64);
}

pub(crate) fn record_pending(waiting: usize) {
    gauge!(PENDING).set(waiting as f64);
}

/// A low-cardinality name for a phase.
pub fn phase_label(phase: Phase) -> &'static str {
    match phase {
        Phase::Idle => "idle",
        Phase::Connecting => "connecting",
        Phase::Open => "open",
        Phase::BackingOff => "backing_off",
        Phase::CoolingOff => "cooling_off",
        Phase::Stopped => "stopped",
    }
}

/// Records body bytes received (one call per chunk).
pub(crate) fn record_bytes(n: usize) {
    counter!(BYTES).increment(n as u64);
}

/// Counts one stream in `phase` while alive; moves with the stream's phase
/// and leaves the gauge when dropped (also when the stream task is aborted).
pub(crate) struct PhaseGauge(Phase);

impl PhaseGauge {
    pub(crate) fn new(phase: Phase) -> Self {
        gauge!(PHASES, "phase" => phase_label(phase)).increment(1.0);
        Self(phase)
    }

    pub(crate) fn set(&mut self, phase: Phase) {
        if phase != self.0 {
            gauge!(PHASES, "phase" => phase_label(self.0)).decrement(1.0);
            gauge!(PHASES, "phase" => phase_label(phase)).increment(1.0);
            self.0 = phase;
        }
    }
}

impl Drop for PhaseGauge {
    fn drop(&mut self) {
        gauge!(PHASES, "phase" => phase_label(self.0)).decrement(1.0);
    }
}

/// The counters of one packed route, made once per group.
pub(crate) struct PackCounters {
    repacks: metrics::Counter,
    duplicates: metrics::Counter,
    route: std::sync::Arc<str>,
}

impl PackCounters {
    pub(crate) fn new(route: &std::sync::Arc<str>) -> Self {
        let name = route.to_string();
        Self {
            repacks: counter!(REPACKS, "route" => name.clone()),
            duplicates: counter!(PACK_DUPLICATES, "route" => name),
            route: route.clone(),
        }
    }

    pub(crate) fn repack(&self) {
        self.repacks.increment(1);
    }

    pub(crate) fn duplicate(&self) {
        self.duplicates.increment(1);
    }

    /// Rare (bad data), so looked up each time.
    pub(crate) fn dropped(&self, reason: &'static str, n: u64) {
        counter!(PACK_DROPPED, "route" => self.route.to_string(), "reason" => reason).increment(n);
    }
}

/// Every packed route's series at zero from the start.
pub(crate) fn describe_pack(route: &str) {
    counter!(REPACKS, "route" => route.to_string()).increment(0);
    counter!(PACK_DUPLICATES, "route" => route.to_string()).increment(0);
    for reason in ["no_topic", "unknown_topic", "lagged"] {
        counter!(PACK_DROPPED, "route" => route.to_string(), "reason" => reason).increment(0);
    }
}
