//! Degradation, hysteresis, maintenance, readiness, reports and metrics, over
//! virtual time.

use std::time::{Duration, Instant};

use sse_health::{
    Cause, ErrorKind, HealthConfig, Level, Maintenance, Minute, Pressure, ReadinessConfig, Reports,
    Resources, RotateCause, StreamHealth, pressure, readiness,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A stream and its clock, stepped a second at a time.
struct Sim {
    health: StreamHealth,
    t0: Instant,
    now: Instant,
}

impl Sim {
    fn new(config: HealthConfig) -> Self {
        let t0 = Instant::now();
        let mut health = StreamHealth::new(config, t0);
        health.on_connected(t0);
        health.on_subscribers(t0, 1);
        Self {
            health,
            t0,
            now: t0,
        }
    }

    /// Runs `seconds` seconds; each second `tick` says what arrives.
    fn run(
        &mut self,
        seconds: u64,
        mut tick: impl FnMut(&mut StreamHealth, Instant, u64),
    ) -> Vec<Level> {
        let mut levels = Vec::new();
        for s in 0..seconds {
            self.now += secs(1);
            tick(&mut self.health, self.now, s);
            levels.push(self.health.evaluate(self.now).level);
        }
        levels
    }

    fn t(&self) -> u64 {
        (self.now - self.t0).as_secs()
    }
}

/// One event per second with a heartbeat: 60 events per minute.
fn steady(h: &mut StreamHealth, now: Instant, _: u64) {
    h.on_bytes(now, 100);
    h.on_event(now, Some(Duration::from_millis(20)));
}

/// Heartbeat comments only.
fn heartbeats(h: &mut StreamHealth, now: Instant, _: u64) {
    h.on_bytes(now, 12);
}

#[test]
fn a_steady_stream_stays_healthy() {
    let mut sim = Sim::new(HealthConfig::default());
    let levels = sim.run(600, steady);
    assert!(levels.iter().all(|l| *l == Level::Healthy));
    let stats = sim.health.stats(sim.now);
    assert_eq!(stats.events_per_min, 60.0);
    assert_eq!(stats.latency_p90, Some(Duration::from_millis(20)));
    assert_eq!(stats.since_last_event, Some(Duration::ZERO));
    assert_eq!(stats.connection_age, Some(secs(600)));
}

#[test]
fn low_event_rate_degrades_after_the_hold_and_recovers_only_when_sustained() {
    let config = HealthConfig::default();
    let mut sim = Sim::new(config.clone());
    sim.run(120, steady);
    // Events stop; heartbeats go on. The 60 s window drains below 10/min
    // after ~51 s; the verdict follows 10 s later.
    let levels = sim.run(120, heartbeats);
    let degraded_at = levels
        .iter()
        .position(|l| *l == Level::Degraded)
        .expect("degraded");
    assert!(
        (55..=65).contains(&degraded_at),
        "degraded after {degraded_at}s"
    );
    let verdict = sim.health.verdict().clone();
    assert!(
        matches!(verdict.causes[..], [Cause::LowEventRate { min: 10, .. }]),
        "{:?}",
        verdict.causes
    );
    // Events come back: the raw verdict is healthy within ~10 s, but the
    // reported one waits for 60 s of it.
    let levels = sim.run(120, steady);
    let healthy_at = levels
        .iter()
        .position(|l| *l == Level::Healthy)
        .expect("recovered");
    assert!(
        (65..=75).contains(&healthy_at),
        "recovered after {healthy_at}s"
    );
}

#[test]
fn a_blip_neither_alarms_nor_clears_an_alarm() {
    let config = HealthConfig {
        max_errors_per_min: 5,
        ..HealthConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.run(120, steady);
    // Errors in one second: above 5/min for the window, but the raw verdict
    // is what holds; raise it only briefly by clearing with time.
    let levels = sim.run(5, |h, now, s| {
        steady(h, now, s);
        if s == 0 {
            for _ in 0..6 {
                h.on_error(now, ErrorKind::Stream);
            }
        }
    });
    assert!(
        levels.iter().all(|l| *l == Level::Healthy),
        "5 s of errors is a blip: {levels:?}"
    );
    // Held past degrade_after, it is reported.
    let levels = sim.run(10, steady);
    assert_eq!(levels.last(), Some(&Level::Degraded));
    assert!(
        sim.health
            .verdict()
            .causes
            .iter()
            .any(|c| matches!(c, Cause::HighErrorRate { max: 5, .. }))
    );
}

#[test]
fn a_quiet_stream_can_turn_off_the_minimum_rate() {
    let config = HealthConfig {
        min_events_per_min: None,
        rotate_when_eventless: None,
        ..HealthConfig::default()
    };
    let mut sim = Sim::new(config);
    let levels = sim.run(3600, heartbeats);
    assert!(levels.iter().all(|l| *l == Level::Healthy));
    assert_eq!(sim.health.maintenance(sim.now), None);
    // Silence (no byte at all) is still unhealthy.
    let levels = sim.run(120, |_, _, _| {});
    assert_eq!(levels.last(), Some(&Level::Unhealthy));
    assert!(matches!(
        sim.health.verdict().causes[..],
        [Cause::Silent(_)]
    ));
}

#[test]
fn high_latency_degrades() {
    let mut sim = Sim::new(HealthConfig::default());
    let levels = sim.run(120, |h, now, s| {
        h.on_bytes(now, 100);
        // One event in five is 2 s late: the p90 is above 1 s.
        let late = if s % 5 == 0 { 2000 } else { 10 };
        h.on_event(now, Some(Duration::from_millis(late)));
    });
    assert_eq!(levels.last(), Some(&Level::Degraded));
    assert!(matches!(
        sim.health.verdict().causes[..],
        [Cause::HighLatency { latency, .. }] if latency == secs(2)
    ));
}

#[test]
fn disconnected_too_long_is_unhealthy() {
    let mut sim = Sim::new(HealthConfig::default());
    sim.run(60, steady);
    sim.health.on_disconnected(sim.now);
    let levels = sim.run(60, |_, _, _| {});
    let at = levels
        .iter()
        .position(|l| *l == Level::Unhealthy)
        .expect("unhealthy");
    assert!((38..=42).contains(&at), "after {at}s (30 s + 10 s hold)");
    assert!(matches!(
        sim.health.verdict().causes[..],
        [Cause::Disconnected(_)]
    ));
    assert_eq!(sim.health.stats(sim.now).connection_age, None);
}

#[test]
fn maintenance_rotates_on_errors_then_waits_for_the_interval() {
    let mut sim = Sim::new(HealthConfig::default());
    sim.run(30, steady);
    for _ in 0..10 {
        sim.health.on_error(sim.now, ErrorKind::Stream);
    }
    assert_eq!(
        sim.health.maintenance(sim.now),
        Some(Maintenance::Rotate(RotateCause::Errors(10)))
    );
    sim.health.on_rotated(sim.now);
    assert_eq!(
        sim.health.maintenance(sim.now),
        None,
        "not twice within min_rotation_interval"
    );
    assert_eq!(sim.health.stats(sim.now).reconnects, 1);
}

#[test]
fn maintenance_rotates_by_age_when_asked_to() {
    let mut sim = Sim::new(HealthConfig {
        rotate_after_age: Some(secs(3600)),
        ..HealthConfig::default()
    });
    sim.run(3599, steady);
    assert_eq!(sim.health.maintenance(sim.now), None);
    sim.run(1, steady);
    assert_eq!(
        sim.health.maintenance(sim.now),
        Some(Maintenance::Rotate(RotateCause::Age(secs(3600))))
    );
    // The default leaves age to the state machine.
    let mut sim = Sim::new(HealthConfig::default());
    sim.run(24 * 3600, steady);
    assert_eq!(sim.health.maintenance(sim.now), None);
}

#[test]
fn maintenance_rotates_on_failure_ratio() {
    let mut sim = Sim::new(HealthConfig::default());
    sim.run(30, |h, now, s| {
        steady(h, now, s);
        if s % 6 == 0 {
            h.on_error(now, ErrorKind::Timeout);
        }
    });
    assert!(matches!(
        sim.health.maintenance(sim.now),
        Some(Maintenance::Rotate(RotateCause::FailureRatio(r))) if r > 0.1
    ));
}

#[test]
fn maintenance_rotates_an_eventless_stream_that_only_sends_heartbeats() {
    let mut sim = Sim::new(HealthConfig {
        min_events_per_min: None,
        ..HealthConfig::default()
    });
    sim.run(60, steady);
    sim.run(299, heartbeats);
    assert_eq!(sim.health.maintenance(sim.now), None);
    sim.run(1, heartbeats);
    assert!(matches!(
        sim.health.maintenance(sim.now),
        Some(Maintenance::Rotate(RotateCause::Eventless(d))) if d == secs(300)
    ));
}

#[test]
fn maintenance_rotates_after_lasting_degradation() {
    let mut sim = Sim::new(HealthConfig {
        rotate_when_eventless: None,
        ..HealthConfig::default()
    });
    sim.run(60, steady);
    // A trickle: 5 events a minute, heartbeats every second.
    sim.run(600, |h, now, s| {
        heartbeats(h, now, s);
        if s % 12 == 0 {
            h.on_event(now, None);
        }
    });
    let advised = sim.health.maintenance(sim.now);
    assert!(
        matches!(advised, Some(Maintenance::Rotate(RotateCause::Degraded(d))) if d >= secs(300))
    );
    assert_eq!(sim.t(), 660);
}

#[test]
fn maintenance_releases_after_the_idle_linger_unless_someone_returns() {
    let mut sim = Sim::new(HealthConfig::default());
    sim.run(10, steady);
    sim.health.on_subscribers(sim.now, 0);
    let left = sim.now;
    sim.run(299, steady);
    assert_eq!(sim.health.maintenance(sim.now), None);
    sim.health.on_subscribers(sim.now, 2);
    sim.run(600, steady);
    assert_eq!(sim.health.maintenance(sim.now), None);
    sim.health.on_subscribers(sim.now, 0);
    let left_again = sim.now;
    sim.run(300, steady);
    assert_eq!(
        sim.health.maintenance(sim.now),
        Some(Maintenance::Release {
            idle_since: left_again
        })
    );
    assert_ne!(left, left_again);
}

#[test]
fn readiness_needs_most_streams_not_unhealthy_for_long() {
    let config = ReadinessConfig::default();
    let t0 = Instant::now();
    let mut streams: Vec<StreamHealth> = (0..3)
        .map(|_| StreamHealth::new(Default::default(), t0))
        .collect();
    for s in &mut streams {
        s.on_connected(t0);
        s.on_bytes(t0, 1);
    }
    // Two of three go silent.
    let mut now = t0;
    for _ in 0..200 {
        now += secs(1);
        streams[0].on_bytes(now, 10);
        streams[0].on_event(now, None);
        for s in &mut streams {
            s.evaluate(now);
        }
    }
    let ready = readiness(&config, now, streams.iter().map(|s| s.verdict()));
    assert!(!ready.ready);
    assert_eq!((ready.unhealthy, ready.total), (2, 3));
    assert!(
        ready
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("2 of 3")
    );
    let ready = readiness(&config, now, streams[..2].iter().map(|s| s.verdict()));
    assert!(ready.ready, "1 of 2 is not more than half");
    assert!(readiness(&config, now, []).ready, "no streams: ready");
}

#[test]
fn pressure_levels() {
    let config = ReadinessConfig::default();
    assert_eq!(pressure(&config, 10, 50), Pressure::Normal);
    assert_eq!(pressure(&config, 40, 50), Pressure::High);
    assert_eq!(pressure(&config, 50, 50), Pressure::Full);
    assert_eq!(pressure(&config, 0, 0), Pressure::Full);
}

#[test]
fn reports_over_the_last_hour_and_day() {
    let t0 = Instant::now();
    let mut reports = Reports::new(t0);
    // 25 hours: 60 events a minute for the first 24, 120 in the last.
    for minute in 0..(25 * 60u64) {
        let now = t0 + secs(60 * minute);
        let m: &mut Minute = reports.current(now);
        m.attempts += 1;
        m.opened += u64::from(minute % 10 != 0);
        m.events += if minute >= 24 * 60 { 120 } else { 60 };
        m.bytes += 6000;
        m.errors[0] += u64::from(minute % 10 == 0);
        m.resources = Resources {
            connections: 5,
            subscribers: 100,
            rss_bytes: 50_000_000 + minute,
            open_fds: 40,
        };
    }
    let end = t0 + secs(60 * 25 * 60);
    let hour = reports.report(end, secs(3600));
    assert_eq!(hour.window, secs(3600));
    assert_eq!(hour.events, 60 * 120);
    assert_eq!(hour.events_per_sec, 2.0);
    assert!((hour.failure_ratio - 0.1).abs() < 1e-9);
    assert_eq!(hour.errors[0], (ErrorKind::Connect, 6));
    assert_eq!(hour.rss_growth, 59);
    let day = reports.report(end, secs(24 * 3600));
    assert_eq!(day.window, secs(24 * 3600), "1,440 minutes kept, no more");
    assert!(
        day.event_trend > 1.0,
        "the last hour doubled: the trend is up"
    );
    assert_eq!(day.peak_events_per_sec, 2.0);
    assert_eq!(day.resources_max.subscribers, 100);
}

#[test]
fn metrics_are_recorded_with_low_cardinality_labels() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        sse_health::metrics::describe_metrics();
        sse_health::metrics::record_levels(3, 1, 0);
        sse_health::metrics::record_event(120, Some(Duration::from_millis(40)));
        sse_health::metrics::record_event(80, None);
        sse_health::metrics::record_error(ErrorKind::Timeout);
        sse_health::metrics::record_rotation_advised(RotateCause::Errors(10));
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str, label: Option<(&str, &str)>| {
        snapshot
            .iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && label.is_none_or(|(k, v)| {
                        key.key().labels().any(|l| l.key() == k && l.value() == v)
                    })
            })
            .map(|(_, _, _, value)| value)
    };
    use sse_health::metrics as m;
    assert_eq!(find(m::EVENTS, None), Some(&DebugValue::Counter(2)));
    assert_eq!(find(m::BYTES, None), Some(&DebugValue::Counter(200)));
    assert_eq!(
        find(m::ERRORS, Some(("kind", "timeout"))),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        find(m::ROTATIONS_ADVISED, Some(("cause", "errors"))),
        Some(&DebugValue::Counter(1))
    );
    assert!(
        matches!(find(m::STREAMS, Some(("level", "healthy"))), Some(DebugValue::Gauge(v)) if v.into_inner() == 3.0)
    );
    assert!(matches!(find(m::LATENCY, None), Some(DebugValue::Histogram(v)) if v.len() == 1));
    // Every label value comes from a fixed set.
    for (key, _, _, _) in &snapshot {
        for label in key.key().labels() {
            assert!(
                [
                    "healthy",
                    "degraded",
                    "unhealthy",
                    "connect",
                    "status",
                    "stream",
                    "timeout",
                    "errors",
                    // Rotation causes, registered at zero by describe.
                    "age",
                    "eventless",
                    "failure_ratio"
                ]
                .contains(&label.value()),
                "unexpected label value {}",
                label.value()
            );
        }
    }
}
