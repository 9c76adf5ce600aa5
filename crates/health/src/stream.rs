//! The health of one upstream stream: statistics over sliding windows, a
//! verdict with hysteresis and reasons, rotation advice, and when it next
//! needs time.

use std::fmt;
use std::time::{Duration, Instant};

use crate::event_time::EventTime;
use crate::window::{Counter, Samples};

/// Thresholds and timings. Defaults from the old plan and docs/RELIABILITY.md.
///
/// With the `serde` feature it deserializes from a table of these keys
/// (durations written like `"60s"`), each optional.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct HealthConfig {
    /// The statistics window. Default 60 s (rates are per minute).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub window: Duration,
    /// Fewer events per minute than this is degraded (while connected).
    /// Default `None`: no rate is required, so a topic that is quiet by
    /// nature (alive: its heartbeats and comments arrive) stays healthy.
    /// Set it for a feed that must be busy; it also turns on
    /// `rotate_when_eventless`.
    pub min_events_per_min: Option<u64>,
    /// More errors per minute than this is degraded. Default 5.
    pub max_errors_per_min: u64,
    /// Latency (event timestamp to receipt) above this at `latency_quantile`
    /// is degraded. Default 1 s. Only measured with `event_time`: without
    /// it, latency is "not measured" and this rule is off.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_latency: Duration,
    /// Which quantile of latency is compared. Default 0.9.
    pub latency_quantile: f64,
    /// Latency samples kept per window. Default 1024.
    pub latency_samples: usize,
    /// No byte at all for this long (while connected) is unhealthy.
    /// Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub silent_after: Duration,
    /// Not connected for this long is unhealthy. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub disconnected_after: Duration,
    /// A worse verdict must hold this long before it is reported. Default 10 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub degrade_after: Duration,
    /// A better verdict must hold this long before it is reported (recovery is
    /// sustained, not a blip). Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub recover_after: Duration,
    /// Rotate after this many errors within the window. Default 10.
    pub rotate_after_errors: u64,
    /// Rotate when no event came for this long although bytes (heartbeats)
    /// do: the stream looks alive but says nothing. Default 5 min, applied
    /// only when `min_events_per_min` asks for a rate (a topic quiet by
    /// nature is not rotated for being quiet); `None` (or zero): never.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde::option"))]
    pub rotate_when_eventless: Option<Duration>,
    /// Rotate after being degraded or unhealthy for this long. Default 5 min.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub rotate_when_degraded: Duration,
    /// Rotate when errors are more than this fraction of events and errors in
    /// the window (with at least 20 of them). Default 0.1.
    pub rotate_failure_ratio: f64,
    /// No two rotations closer than this. Default 10 min.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub min_rotation_interval: Duration,
    /// Where an event says when it happened: with it, each event's latency
    /// (arrival minus event time) is measured. Default `None`.
    pub event_time: Option<EventTime>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            min_events_per_min: None,
            max_errors_per_min: 5,
            max_latency: Duration::from_secs(1),
            latency_quantile: 0.9,
            latency_samples: 1024,
            silent_after: Duration::from_secs(60),
            disconnected_after: Duration::from_secs(30),
            degrade_after: Duration::from_secs(10),
            recover_after: Duration::from_secs(60),
            rotate_after_errors: 10,
            rotate_when_eventless: Some(Duration::from_secs(300)),
            rotate_when_degraded: Duration::from_secs(300),
            rotate_failure_ratio: 0.1,
            min_rotation_interval: Duration::from_secs(600),
            event_time: None,
        }
    }
}

/// A threshold that makes no sense: its key (the field's name) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfigError {
    /// The field, as the configuration names it.
    pub key: &'static str,
    /// Why it was refused.
    pub reason: &'static str,
}

impl fmt::Display for HealthConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for HealthConfigError {}

impl HealthConfig {
    /// `rotate_when_eventless`, when it applies: only for a stream that
    /// must keep a rate (`min_events_per_min`).
    fn eventless_limit(&self) -> Option<Duration> {
        let rate_asked = self.min_events_per_min.is_some_and(|m| m > 0);
        self.rotate_when_eventless
            .filter(|limit| rate_asked && !limit.is_zero())
    }

    /// Checks every threshold.
    ///
    /// # Errors
    ///
    /// The first that makes no sense: a window under a second or over an
    /// hour, a quantile or ratio outside `[0, 1]`, no latency samples, a
    /// zero silence or disconnection limit.
    pub fn validate(&self) -> Result<(), HealthConfigError> {
        let err = |key, reason| Err(HealthConfigError { key, reason });
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(3600) {
            return err("window", "must be between 1s and 1h");
        }
        if !(0.0..=1.0).contains(&self.latency_quantile) {
            return err("latency_quantile", "must be in [0, 1]");
        }
        if self.latency_samples == 0 || self.latency_samples > 1 << 16 {
            return err("latency_samples", "must be between 1 and 65536");
        }
        if !(self.rotate_failure_ratio > 0.0 && self.rotate_failure_ratio <= 1.0) {
            return err("rotate_failure_ratio", "must be in (0, 1]");
        }
        if let Some(event_time) = &self.event_time {
            event_time.validate().map_err(|e| HealthConfigError {
                key: "event_time.pointer",
                reason: e.reason(),
            })?;
        }
        for (key, value) in [
            ("silent_after", self.silent_after),
            ("disconnected_after", self.disconnected_after),
            ("max_latency", self.max_latency),
        ] {
            if value.is_zero() {
                return err(key, "must be greater than zero");
            }
        }
        Ok(())
    }
}

/// How a stream is doing, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Within every threshold.
    Healthy,
    /// Delivering, but outside a threshold (slow, erratic, late).
    Degraded,
    /// Not delivering: disconnected or silent for too long.
    Unhealthy,
}

impl Level {
    /// A stable lower-case name, for labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// Why a stream is not healthy. Every verdict carries its reasons.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cause {
    /// Fewer events per minute than the minimum.
    LowEventRate {
        /// Events in the last window, per minute.
        per_min: f64,
        /// The minimum.
        min: u64,
    },
    /// More errors per minute than the maximum.
    HighErrorRate {
        /// Errors in the last window, per minute.
        per_min: f64,
        /// The maximum.
        max: u64,
    },
    /// Events arrive late.
    HighLatency {
        /// The latency at the configured quantile.
        latency: Duration,
        /// The maximum.
        max: Duration,
    },
    /// No byte for this long while connected.
    Silent(Duration),
    /// Not connected for this long.
    Disconnected(Duration),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LowEventRate { per_min, min } => {
                write!(f, "{per_min:.1} events/min, below {min}")
            }
            Self::HighErrorRate { per_min, max } => {
                write!(f, "{per_min:.1} errors/min, above {max}")
            }
            Self::HighLatency { latency, max } => write!(f, "latency {latency:?}, above {max:?}"),
            Self::Silent(d) => write!(f, "no byte for {}s", d.as_secs()),
            Self::Disconnected(d) => write!(f, "disconnected for {}s", d.as_secs()),
        }
    }
}

/// A stream's reported health.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The level reported (after hysteresis).
    pub level: Level,
    /// Since when this level is reported.
    pub since: Instant,
    /// What the last evaluation found wrong (empty when healthy). While a
    /// recovery is pending, the level stays worse but the causes may be gone.
    pub causes: Vec<Cause>,
}

/// Why a rotation is advised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RotateCause {
    /// Errors in the window reached the limit.
    Errors(u64),
    /// Bytes arrive but no event did for this long.
    Eventless(Duration),
    /// Degraded or unhealthy for this long.
    Degraded(Duration),
    /// Errors were this fraction of events and errors.
    FailureRatio(f64),
}

/// A kind of error, as the shell classifies it, for rates and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// Connecting failed (DNS, refused, TLS, timeout).
    Connect,
    /// A retryable or fatal HTTP status.
    Status,
    /// Reading the stream failed or it broke a limit.
    Stream,
    /// A deadline of the state machine (idle, assembly, first byte).
    Timeout,
}

impl ErrorKind {
    /// Every kind, in order.
    pub const ALL: [Self; 4] = [Self::Connect, Self::Status, Self::Stream, Self::Timeout];

    /// A stable lower-case name, for labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Status => "status",
            Self::Stream => "stream",
            Self::Timeout => "timeout",
        }
    }
}

/// Statistics over the current window.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Events per minute.
    pub events_per_min: f64,
    /// Errors per minute.
    pub errors_per_min: f64,
    /// Body bytes per second.
    pub bytes_per_sec: f64,
    /// Latency quantiles (50, 90, 99), when events carry timestamps.
    pub latency_p50: Option<Duration>,
    /// See `latency_p50`.
    pub latency_p90: Option<Duration>,
    /// See `latency_p50`.
    pub latency_p99: Option<Duration>,
    /// Since the last byte, if any came.
    pub since_last_byte: Option<Duration>,
    /// Since the last event, if any came.
    pub since_last_event: Option<Duration>,
    /// Age of the current connection, if connected.
    pub connection_age: Option<Duration>,
    /// Connections opened after the first.
    pub reconnects: u64,
    /// Errors since the stream was created, by kind (in `ErrorKind::ALL` order).
    pub errors_total: [u64; 4],
    /// Events since the stream was created.
    pub events_total: u64,
}

/// The health of one stream, fed by the shell, evaluated with `now`.
///
/// # The run loop
///
/// Feed what happens (`on_*`), and call [`evaluate`](Self::evaluate) and
/// then [`rotation`](Self::rotation) at [`poll_timeout`](Self::poll_timeout)
/// (when it is `Some`): health never needs time at any other moment, so a
/// quiet stream costs no wake-ups.
#[derive(Debug, Clone)]
pub struct StreamHealth {
    config: HealthConfig,
    created: Instant,
    events: Counter,
    errors: Counter,
    bytes: Counter,
    latency: Samples,
    last_byte: Option<Instant>,
    last_event: Option<Instant>,
    connected_at: Option<Instant>,
    disconnected_at: Option<Instant>,
    connections: u64,
    errors_total: [u64; 4],
    events_total: u64,
    verdict: Verdict,
    /// A different raw level and since when it has held.
    pending: Option<(Level, Instant)>,
    /// Since when the reported level is worse than healthy.
    unhealthy_since: Option<Instant>,
    last_rotation: Option<Instant>,
    /// When `evaluate` last ran.
    evaluated: Instant,
    /// The first input since then (an input may change the verdict).
    input_since: Option<Instant>,
}

/// After an input, the verdict is brought up to date within this: the
/// windows count whole seconds, so sooner would see the same rates.
const SETTLE: Duration = Duration::from_secs(1);

impl StreamHealth {
    /// A new stream, not yet connected.
    pub fn new(config: HealthConfig, now: Instant) -> Self {
        let window = config.window;
        let samples = config.latency_samples;
        Self {
            events: Counter::new(now, window),
            errors: Counter::new(now, window),
            bytes: Counter::new(now, window),
            latency: Samples::new(window, samples),
            config,
            created: now,
            last_byte: None,
            last_event: None,
            connected_at: None,
            disconnected_at: Some(now),
            connections: 0,
            errors_total: [0; 4],
            events_total: 0,
            verdict: Verdict {
                level: Level::Healthy,
                since: now,
                causes: Vec::new(),
            },
            pending: None,
            unhealthy_since: None,
            last_rotation: None,
            evaluated: now,
            input_since: None,
        }
    }

    fn input(&mut self, now: Instant) {
        self.input_since.get_or_insert(now);
    }

    /// An event arrived, `latency` after its own timestamp (if it carries
    /// one).
    pub fn on_event(&mut self, now: Instant, latency: Option<Duration>) {
        self.events.add(now, 1);
        self.events_total += 1;
        self.last_event = Some(now);
        if let Some(latency) = latency {
            self.latency.add(now, latency);
        }
        self.input(now);
    }

    /// Body bytes arrived (comments and partial events included).
    pub fn on_bytes(&mut self, now: Instant, bytes: usize) {
        self.bytes.add(now, bytes as u64);
        self.last_byte = Some(now);
        self.input(now);
    }

    /// Something failed.
    pub fn on_error(&mut self, now: Instant, kind: ErrorKind) {
        self.errors.add(now, 1);
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.errors_total[i] += 1;
        self.input(now);
    }

    /// A connection opened (200, event stream).
    pub fn on_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
        self.disconnected_at = None;
        self.connections += 1;
        self.input(now);
    }

    /// The connection was lost (or closed).
    pub fn on_disconnected(&mut self, now: Instant) {
        if self.connected_at.take().is_some() {
            self.disconnected_at = Some(now);
        }
        self.input(now);
    }

    /// A rotation was started (on health's advice or otherwise): no other is
    /// advised within `min_rotation_interval`.
    pub fn on_rotation_started(&mut self, now: Instant) {
        self.last_rotation = Some(now);
        self.input(now);
    }

    /// A rotation handed over to a new connection.
    pub fn on_rotated(&mut self, now: Instant) {
        self.last_rotation = Some(now);
        self.connected_at = Some(now);
        self.connections += 1;
        self.input(now);
    }

    /// Statistics over the window ending at `now`.
    pub fn stats(&mut self, now: Instant) -> Stats {
        let minutes = self.events.window().as_secs_f64() / 60.0;
        let seconds = self.bytes.window().as_secs_f64();
        Stats {
            events_per_min: self.events.sum(now) as f64 / minutes,
            errors_per_min: self.errors.sum(now) as f64 / minutes,
            bytes_per_sec: self.bytes.sum(now) as f64 / seconds,
            latency_p50: self.latency.quantile(now, 0.5),
            latency_p90: self.latency.quantile(now, 0.9),
            latency_p99: self.latency.quantile(now, 0.99),
            since_last_byte: self.last_byte.map(|t| now.saturating_duration_since(t)),
            since_last_event: self.last_event.map(|t| now.saturating_duration_since(t)),
            connection_age: self.connected_at.map(|t| now.saturating_duration_since(t)),
            reconnects: self.connections.saturating_sub(1),
            errors_total: self.errors_total,
            events_total: self.events_total,
        }
    }

    /// The verdict last evaluated.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// Evaluates the stream at `now` and returns the reported verdict.
    ///
    /// The raw verdict is the worst level any threshold gives. It is reported
    /// once it has held for `degrade_after` (when worse) or `recover_after`
    /// (when better), so a blip neither alarms nor clears an alarm.
    pub fn evaluate(&mut self, now: Instant) -> &Verdict {
        self.evaluated = now;
        self.input_since = None;
        let (level, causes) = self.raw(now);
        self.verdict.causes = causes;
        if level == self.verdict.level {
            self.pending = None;
        } else {
            let since = match self.pending {
                Some((pending, since)) if pending == level => since,
                _ => now,
            };
            self.pending = Some((level, since));
            if now.saturating_duration_since(since) >= self.hold(level) {
                self.verdict.level = level;
                self.verdict.since = now;
                self.pending = None;
            }
        }
        self.unhealthy_since = match (self.verdict.level, self.unhealthy_since) {
            (Level::Healthy, _) => None,
            (_, Some(since)) => Some(since),
            (_, None) => Some(self.verdict.since),
        };
        &self.verdict
    }

    /// How long a change to `level` must hold before it is reported.
    fn hold(&self, level: Level) -> Duration {
        if level > self.verdict.level {
            self.config.degrade_after
        } else {
            self.config.recover_after
        }
    }

    /// When [`evaluate`](Self::evaluate) (and [`rotation`](Self::rotation))
    /// may next answer differently, with no further input: a change
    /// pending its hysteresis, a limit of silence, disconnection or
    /// eventlessness reached, an event or error leaving the window, the
    /// rotation interval ending. Soon after an input, too. `None`: nothing
    /// can change until the next input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = &self.config;
        let after = self.evaluated;
        let mut next: Option<Instant> = None;
        // Only moments after the last evaluation: one already passed was
        // seen by it.
        let mut at = |t: Instant| {
            if t > after {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if let Some(input) = self.input_since {
            // At least a tick after the last evaluation: never a busy loop.
            at((input + SETTLE).max(after + SETTLE));
        }
        if let Some((level, since)) = self.pending {
            at(since + self.hold(level));
        }
        if let Some(since) = self.disconnected_at {
            at(since + c.disconnected_after);
        }
        if let Some(connected) = self.connected_at {
            let last_byte = self.last_byte.unwrap_or(connected).max(connected);
            at(last_byte + c.silent_after);
            at(connected + c.window);
            if let Some(limit) = c.eventless_limit() {
                let quiet_enough = self.last_event.unwrap_or(connected).max(connected) + limit;
                // Only a stream still sending bytes then is rotated for it.
                if quiet_enough < last_byte + c.silent_after {
                    at(quiet_enough);
                }
            }
        }
        if let Some(since) = self.unhealthy_since {
            at(since + c.rotate_when_degraded);
        }
        if let Some(last) = self.last_rotation {
            at(last + c.min_rotation_interval);
        }
        for expiry in [
            self.events.next_expiry(),
            self.errors.next_expiry(),
            self.latency.next_expiry(),
        ]
        .into_iter()
        .flatten()
        {
            at(expiry);
        }
        next
    }

    fn raw(&mut self, now: Instant) -> (Level, Vec<Cause>) {
        let c = &self.config;
        let mut causes = Vec::new();
        let mut level = Level::Healthy;
        if let Some(since) = self.disconnected_at {
            let down = now.saturating_duration_since(since);
            if down >= c.disconnected_after {
                causes.push(Cause::Disconnected(down));
                level = Level::Unhealthy;
            }
            return (level, causes);
        }
        let connected_at = self.connected_at.unwrap_or(now);
        let silent =
            now.saturating_duration_since(self.last_byte.unwrap_or(connected_at).max(connected_at));
        if silent >= c.silent_after {
            causes.push(Cause::Silent(silent));
            level = Level::Unhealthy;
        }
        let minutes = self.events.window().as_secs_f64() / 60.0;
        // Rates need a full window of connection before they mean anything.
        let settled = now.saturating_duration_since(connected_at) >= c.window;
        if let Some(min) = c.min_events_per_min
            && settled
        {
            let per_min = self.events.sum(now) as f64 / minutes;
            if per_min < min as f64 {
                causes.push(Cause::LowEventRate { per_min, min });
                level = level.max(Level::Degraded);
            }
        }
        let errors_per_min = self.errors.sum(now) as f64 / minutes;
        if errors_per_min > c.max_errors_per_min as f64 {
            causes.push(Cause::HighErrorRate {
                per_min: errors_per_min,
                max: c.max_errors_per_min,
            });
            level = level.max(Level::Degraded);
        }
        if let Some(latency) = self.latency.quantile(now, c.latency_quantile)
            && latency > c.max_latency
        {
            causes.push(Cause::HighLatency {
                latency,
                max: c.max_latency,
            });
            level = level.max(Level::Degraded);
        }
        (level, causes)
    }

    /// The rotation health advises now, if any (the connection's age is the
    /// state machine's business, and releasing an idle stream the pool's).
    /// Call [`evaluate`](Self::evaluate) first; report a rotation that
    /// started with [`on_rotation_started`](Self::on_rotation_started).
    pub fn rotation(&mut self, now: Instant) -> Option<RotateCause> {
        let c = &self.config;
        let connected_at = self.connected_at?;
        let recent = self
            .last_rotation
            .is_some_and(|t| now.saturating_duration_since(t) < c.min_rotation_interval);
        if recent {
            return None;
        }
        let errors = self.errors.sum(now);
        if errors >= c.rotate_after_errors {
            return Some(RotateCause::Errors(errors));
        }
        let events = self.events.sum(now);
        if errors + events >= 20 {
            let ratio = errors as f64 / (errors + events) as f64;
            if ratio > c.rotate_failure_ratio {
                return Some(RotateCause::FailureRatio(ratio));
            }
        }
        if let Some(limit) = c.eventless_limit() {
            let quiet = now.saturating_duration_since(
                self.last_event.unwrap_or(connected_at).max(connected_at),
            );
            let alive = self
                .last_byte
                .is_some_and(|t| now.saturating_duration_since(t) < c.silent_after);
            if quiet >= limit && alive {
                return Some(RotateCause::Eventless(quiet));
            }
        }
        if let Some(since) = self.unhealthy_since {
            let bad_for = now.saturating_duration_since(since);
            if bad_for >= c.rotate_when_degraded {
                return Some(RotateCause::Degraded(bad_for));
            }
        }
        None
    }

    /// When the stream was created.
    pub fn created(&self) -> Instant {
        self.created
    }
}
