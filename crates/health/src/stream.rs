//! The health of one upstream stream: statistics over sliding windows, a
//! verdict with hysteresis and reasons, and maintenance decisions.

use std::fmt;
use std::time::{Duration, Instant};

use crate::window::{Counter, Samples};

/// Thresholds and timings. Defaults from the old plan and reliability.md.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// The statistics window. Default 60 s (rates are per minute).
    pub window: Duration,
    /// Fewer events per minute than this is degraded (while connected).
    /// Default 10; `None` for a stream known to be quiet.
    pub min_events_per_min: Option<u64>,
    /// More errors per minute than this is degraded. Default 5.
    pub max_errors_per_min: u64,
    /// Latency (event timestamp to receipt) above this at `latency_quantile`
    /// is degraded. Default 1 s.
    pub max_latency: Duration,
    /// Which quantile of latency is compared. Default 0.9.
    pub latency_quantile: f64,
    /// Latency samples kept per window. Default 1024.
    pub latency_samples: usize,
    /// No byte at all for this long (while connected) is unhealthy.
    /// Default 60 s.
    pub silent_after: Duration,
    /// Not connected for this long is unhealthy. Default 30 s.
    pub disconnected_after: Duration,
    /// A worse verdict must hold this long before it is reported. Default 10 s.
    pub degrade_after: Duration,
    /// A better verdict must hold this long before it is reported (recovery is
    /// sustained, not a blip). Default 60 s.
    pub recover_after: Duration,
    /// Rotate a connection older than this. Default `None`: the state
    /// machine already rotates by age, with jitter; set this when health
    /// drives all rotations.
    pub rotate_after_age: Option<Duration>,
    /// Rotate after this many errors within the window. Default 10.
    pub rotate_after_errors: u64,
    /// Rotate when no event came for this long although bytes (heartbeats)
    /// do: the stream looks alive but says nothing. Default 5 min; `None`
    /// for quiet streams.
    pub rotate_when_eventless: Option<Duration>,
    /// Rotate after being degraded or unhealthy for this long. Default 5 min.
    pub rotate_when_degraded: Duration,
    /// Rotate when errors are more than this fraction of events and errors in
    /// the window (with at least 20 of them). Default 0.1.
    pub rotate_failure_ratio: f64,
    /// No two rotations closer than this. Default 10 min.
    pub min_rotation_interval: Duration,
    /// Release the stream this long after its last subscriber left. Default 5 min.
    pub idle_linger: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            min_events_per_min: Some(10),
            max_errors_per_min: 5,
            max_latency: Duration::from_secs(1),
            latency_quantile: 0.9,
            latency_samples: 1024,
            silent_after: Duration::from_secs(60),
            disconnected_after: Duration::from_secs(30),
            degrade_after: Duration::from_secs(10),
            recover_after: Duration::from_secs(60),
            rotate_after_age: None,
            rotate_after_errors: 10,
            rotate_when_eventless: Some(Duration::from_secs(300)),
            rotate_when_degraded: Duration::from_secs(300),
            rotate_failure_ratio: 0.1,
            min_rotation_interval: Duration::from_secs(600),
            idle_linger: Duration::from_secs(300),
        }
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

/// What the maintenance task should do with a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Maintenance {
    /// Replace its connection, make-before-break.
    Rotate(RotateCause),
    /// Close it: nobody has subscribed for the linger period.
    Release {
        /// Since when it has had no subscriber.
        idle_since: Instant,
    },
}

/// Why a rotation is advised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RotateCause {
    /// The connection is this old.
    Age(Duration),
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
    subscribers: usize,
    idle_since: Option<Instant>,
    verdict: Verdict,
    /// A different raw level and since when it has held.
    pending: Option<(Level, Instant)>,
    /// Since when the reported level is worse than healthy.
    unhealthy_since: Option<Instant>,
    last_rotation: Option<Instant>,
}

impl StreamHealth {
    /// A new stream, not yet connected, with no subscriber.
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
            subscribers: 0,
            idle_since: Some(now),
            verdict: Verdict {
                level: Level::Healthy,
                since: now,
                causes: Vec::new(),
            },
            pending: None,
            unhealthy_since: None,
            last_rotation: None,
        }
    }

    /// An event arrived, `bytes` long, `latency` after its own timestamp (if
    /// it carries one).
    pub fn on_event(&mut self, now: Instant, latency: Option<Duration>) {
        self.events.add(now, 1);
        self.events_total += 1;
        self.last_event = Some(now);
        if let Some(latency) = latency {
            self.latency.add(now, latency);
        }
    }

    /// Body bytes arrived (comments and partial events included).
    pub fn on_bytes(&mut self, now: Instant, bytes: usize) {
        self.bytes.add(now, bytes as u64);
        self.last_byte = Some(now);
    }

    /// Something failed.
    pub fn on_error(&mut self, now: Instant, kind: ErrorKind) {
        self.errors.add(now, 1);
        let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.errors_total[i] += 1;
    }

    /// A connection opened (200, event stream).
    pub fn on_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
        self.disconnected_at = None;
        self.connections += 1;
    }

    /// The connection was lost (or closed).
    pub fn on_disconnected(&mut self, now: Instant) {
        if self.connected_at.take().is_some() {
            self.disconnected_at = Some(now);
        }
    }

    /// A rotation was started (on health's advice or otherwise): no other is
    /// advised within `min_rotation_interval`.
    pub fn on_rotation_started(&mut self, now: Instant) {
        self.last_rotation = Some(now);
    }

    /// A rotation handed over to a new connection.
    pub fn on_rotated(&mut self, now: Instant) {
        self.last_rotation = Some(now);
        self.connected_at = Some(now);
        self.connections += 1;
    }

    /// The stream has `count` subscribers now.
    pub fn on_subscribers(&mut self, now: Instant, count: usize) {
        match (self.subscribers, count) {
            (0, 1..) => self.idle_since = None,
            (1.., 0) => self.idle_since = Some(now),
            _ => {}
        }
        self.subscribers = count;
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

    /// The number of subscribers last reported.
    pub fn subscribers(&self) -> usize {
        self.subscribers
    }

    /// Evaluates the stream at `now` and returns the reported verdict.
    ///
    /// The raw verdict is the worst level any threshold gives. It is reported
    /// once it has held for `degrade_after` (when worse) or `recover_after`
    /// (when better), so a blip neither alarms nor clears an alarm.
    pub fn evaluate(&mut self, now: Instant) -> &Verdict {
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
            let hold = if level > self.verdict.level {
                self.config.degrade_after
            } else {
                self.config.recover_after
            };
            if now.saturating_duration_since(since) >= hold {
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

    /// What maintenance should do now, if anything. Call [`evaluate`]
    /// first; report a rotation that happened with [`on_rotated`].
    ///
    /// [`evaluate`]: Self::evaluate
    /// [`on_rotated`]: Self::on_rotated
    pub fn maintenance(&mut self, now: Instant) -> Option<Maintenance> {
        let c = &self.config;
        if let Some(idle_since) = self.idle_since
            && now.saturating_duration_since(idle_since) >= c.idle_linger
        {
            return Some(Maintenance::Release { idle_since });
        }
        let connected_at = self.connected_at?;
        let recent = self
            .last_rotation
            .is_some_and(|t| now.saturating_duration_since(t) < c.min_rotation_interval);
        if recent {
            return None;
        }
        let age = now.saturating_duration_since(connected_at);
        if c.rotate_after_age.is_some_and(|limit| age >= limit) {
            return Some(Maintenance::Rotate(RotateCause::Age(age)));
        }
        let errors = self.errors.sum(now);
        if errors >= c.rotate_after_errors {
            return Some(Maintenance::Rotate(RotateCause::Errors(errors)));
        }
        let events = self.events.sum(now);
        if errors + events >= 20 {
            let ratio = errors as f64 / (errors + events) as f64;
            if ratio > c.rotate_failure_ratio {
                return Some(Maintenance::Rotate(RotateCause::FailureRatio(ratio)));
            }
        }
        if let Some(limit) = c.rotate_when_eventless {
            let quiet = now.saturating_duration_since(
                self.last_event.unwrap_or(connected_at).max(connected_at),
            );
            let alive = self
                .last_byte
                .is_some_and(|t| now.saturating_duration_since(t) < c.silent_after);
            if quiet >= limit && alive {
                return Some(Maintenance::Rotate(RotateCause::Eventless(quiet)));
            }
        }
        if let Some(since) = self.unhealthy_since {
            let bad_for = now.saturating_duration_since(since);
            if bad_for >= c.rotate_when_degraded {
                return Some(Maintenance::Rotate(RotateCause::Degraded(bad_for)));
            }
        }
        None
    }

    /// When the stream was created.
    pub fn created(&self) -> Instant {
        self.created
    }
}
