//! Pool-level health: readiness, and rolling reports over
//! the last hour and the last day.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::stream::{ErrorKind, Level, Verdict};

/// When the pool is ready to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadinessConfig {
    /// Not ready when more than this fraction of streams...
    pub max_unhealthy_fraction: f64,
    /// ...have been unhealthy for at least this long. Default 50 %, 60 s.
    pub unhealthy_for: Duration,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            max_unhealthy_fraction: 0.5,
            unhealthy_for: Duration::from_secs(60),
        }
    }
}

/// The pool's readiness, with the reason when it is not.
#[derive(Debug, Clone, PartialEq)]
pub struct Readiness {
    /// Whether to report ready.
    pub ready: bool,
    /// Streams unhealthy for at least `unhealthy_for`.
    pub unhealthy: usize,
    /// Streams counted.
    pub total: usize,
    /// Why not ready, for `/readyz` bodies and logs.
    pub reason: Option<String>,
}

/// Decides readiness from the streams' verdicts. No streams: ready (liveness
/// and readiness never wait for upstreams to exist).
pub fn readiness<'a>(
    config: &ReadinessConfig,
    now: Instant,
    verdicts: impl IntoIterator<Item = &'a Verdict>,
) -> Readiness {
    let mut total = 0;
    let mut unhealthy = 0;
    for verdict in verdicts {
        total += 1;
        if verdict.level == Level::Unhealthy
            && now.saturating_duration_since(verdict.since) >= config.unhealthy_for
        {
            unhealthy += 1;
        }
    }
    let too_many = total > 0 && unhealthy as f64 > config.max_unhealthy_fraction * total as f64;
    Readiness {
        ready: !too_many,
        unhealthy,
        total,
        reason: too_many.then(|| {
            format!(
                "{unhealthy} of {total} upstream streams unhealthy for {}s or more",
                config.unhealthy_for.as_secs()
            )
        }),
    }
}

/// What happened in one minute, fed by the shell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Minute {
    /// Connection attempts.
    pub attempts: u64,
    /// Connections opened.
    pub opened: u64,
    /// Rotations done.
    pub rotations: u64,
    /// Errors by kind (in `ErrorKind::ALL` order).
    pub errors: [u64; 4],
    /// Events received.
    pub events: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Resource figures at the end of the minute (the shell measures them).
    pub resources: Resources,
}

/// Resource figures the shell feeds in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Open upstream connections.
    pub connections: u64,
    /// Downstream subscribers.
    pub subscribers: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
}

/// A report over a window: totals, rates, error summary, resources and a
/// trend (second half against first half).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The window covered (shorter while the process is young).
    pub window: Duration,
    /// Connection attempts.
    pub attempts: u64,
    /// Connections opened.
    pub opened: u64,
    /// Failed attempts (attempts that did not open), as a fraction of attempts.
    pub failure_ratio: f64,
    /// Rotations.
    pub rotations: u64,
    /// Errors by kind.
    pub errors: Vec<(ErrorKind, u64)>,
    /// Events.
    pub events: u64,
    /// Mean events per second over the window.
    pub events_per_sec: f64,
    /// The busiest minute's events per second.
    pub peak_events_per_sec: f64,
    /// Bytes.
    pub bytes: u64,
    /// Events per second in the second half over the first half (1.0 flat).
    pub event_trend: f64,
    /// The latest resource figures, and the highest in the window.
    pub resources_last: Resources,
    /// See `resources_last`.
    pub resources_max: Resources,
    /// RSS change from the window's first minute to its last, bytes (growth
    /// shows leaks).
    pub rss_growth: i64,
}

/// Rolling minute buckets, for reports over the last hour and the last day.
#[derive(Debug, Clone)]
pub struct Reports {
    minutes: VecDeque<Minute>,
    current: Minute,
    current_start: Instant,
    keep: usize,
}

impl Reports {
    /// Keeps the last 24 hours of minutes (1,440 buckets, fixed memory).
    pub fn new(now: Instant) -> Self {
        Self {
            minutes: VecDeque::new(),
            current: Minute::default(),
            current_start: now,
            keep: 24 * 60,
        }
    }

    /// The minute being filled, after rolling to `now`.
    pub fn current(&mut self, now: Instant) -> &mut Minute {
        self.roll(now);
        &mut self.current
    }

    fn roll(&mut self, now: Instant) {
        while now.saturating_duration_since(self.current_start) >= Duration::from_secs(60) {
            let done = std::mem::take(&mut self.current);
            // Resources carry over: they are levels, not counts.
            self.current.resources = done.resources;
            self.minutes.push_back(done);
            if self.minutes.len() > self.keep {
                self.minutes.pop_front();
            }
            self.current_start += Duration::from_secs(60);
            // After a long pause, skip empty minutes in bounded work.
            if self.minutes.len() == self.keep
                && now.saturating_duration_since(self.current_start)
                    > Duration::from_secs(60 * self.keep as u64)
            {
                self.current_start = now;
            }
        }
    }

    /// The report over the last `window` (complete minutes), at `now`.
    pub fn report(&mut self, now: Instant, window: Duration) -> Report {
        self.roll(now);
        let n = (window.as_secs() / 60).max(1) as usize;
        let minutes: Vec<&Minute> = self.minutes.iter().rev().take(n).rev().collect();
        let covered = Duration::from_secs(60 * minutes.len() as u64);
        let sum = |f: fn(&Minute) -> u64| minutes.iter().map(|m| f(m)).sum::<u64>();
        let attempts = sum(|m| m.attempts);
        let opened = sum(|m| m.opened);
        let events = sum(|m| m.events);
        let half = minutes.len() / 2;
        let rate = |ms: &[&Minute]| {
            ms.iter().map(|m| m.events).sum::<u64>() as f64 / (60.0 * ms.len().max(1) as f64)
        };
        let (first, second) = minutes.split_at(half);
        let event_trend = if first.is_empty() || rate(first) == 0.0 {
            1.0
        } else {
            rate(second) / rate(first)
        };
        let mut max = Resources::default();
        for m in &minutes {
            let r = m.resources;
            max.connections = max.connections.max(r.connections);
            max.subscribers = max.subscribers.max(r.subscribers);
            max.rss_bytes = max.rss_bytes.max(r.rss_bytes);
            max.open_fds = max.open_fds.max(r.open_fds);
        }
        let rss = |m: Option<&&Minute>| {
            m.map_or(0, |m| {
                i64::try_from(m.resources.rss_bytes).unwrap_or(i64::MAX)
            })
        };
        Report {
            window: covered,
            attempts,
            opened,
            failure_ratio: if attempts == 0 {
                0.0
            } else {
                attempts.saturating_sub(opened) as f64 / attempts as f64
            },
            rotations: sum(|m| m.rotations),
            errors: ErrorKind::ALL
                .iter()
                .enumerate()
                .map(|(i, kind)| (*kind, minutes.iter().map(|m| m.errors[i]).sum()))
                .collect(),
            events,
            events_per_sec: events as f64 / covered.as_secs_f64().max(1.0),
            peak_events_per_sec: minutes.iter().map(|m| m.events).max().unwrap_or(0) as f64 / 60.0,
            bytes: sum(|m| m.bytes),
            event_trend,
            resources_last: minutes
                .last()
                .map_or(self.current.resources, |m| m.resources),
            resources_max: max,
            rss_growth: rss(minutes.last()) - rss(minutes.first()),
        }
    }
}
