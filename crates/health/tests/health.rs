//! Degradation, hysteresis, maintenance, readiness, reports and metrics, over
//! virtual time.

use std::time::{Duration, Instant};

use sse_health::{
    Cause, ErrorKind, HealthConfig, Level, Minute, ReadinessConfig, Reports, Resources,
    RotateCause, StreamHealth, readiness,
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
    // A feed that must be busy asks for a rate (none is required by default).
    let config = HealthConfig {
        min_events_per_min: Some(10),
        ..HealthConfig::default()
    };
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
    assert_eq!(sim.health.rotation(sim.now), None);
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
fn health_advises_a_rotation_on_errors_then_waits_for_the_interval() {
    let mut sim = Sim::new(HealthConfig::default());
    sim.run(30, steady);
    for _ in 0..10 {
        sim.health.on_error(sim.now, ErrorKind::Stream);
    }
    assert_eq!(sim.health.rotation(sim.now), Some(RotateCause::Errors(10)));
    sim.health.on_rotated(sim.now);
    assert_eq!(
        sim.health.rotation(sim.now),
        None,
        "not twice within min_rotation_interval"
    );
    assert_eq!(sim.health.stats(sim.now).reconnects, 1);
}

#[test]
fn health_advises_a_rotation_on_failure_ratio() {
    let mut sim = Sim::new(HealthConfig::default());
    sim.run(30, |h, now, s| {
        steady(h, now, s);
        if s % 6 == 0 {
            h.on_error(now, ErrorKind::Timeout);
        }
    });
    assert!(matches!(
        sim.health.rotation(sim.now),
        Some(RotateCause::FailureRatio(r)) if r > 0.1
    ));
}

#[test]
fn health_advises_a_rotation_an_eventless_stream_that_only_sends_heartbeats() {
    // Eventless rotation applies to a stream that asked for a rate.
    let mut sim = Sim::new(HealthConfig {
        min_events_per_min: Some(1),
        rotate_when_degraded: secs(3600),
        ..HealthConfig::default()
    });
    sim.run(60, steady);
    sim.run(299, heartbeats);
    assert_eq!(sim.health.rotation(sim.now), None);
    sim.run(1, heartbeats);
    assert!(matches!(
        sim.health.rotation(sim.now),
        Some(RotateCause::Eventless(d)) if d == secs(300)
    ));
}

#[test]
fn health_advises_a_rotation_after_lasting_degradation() {
    let mut sim = Sim::new(HealthConfig {
        min_events_per_min: Some(10),
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
    let advised = sim.health.rotation(sim.now);
    assert!(matches!(advised, Some(RotateCause::Degraded(d)) if d >= secs(300)));
    assert_eq!(sim.t(), 660);
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

/// Evaluates `health` at each `poll_timeout` up to `now`; how many times.
fn catch_up(health: &mut StreamHealth, now: Instant) -> usize {
    let mut evaluations = 0;
    while let Some(at) = health.poll_timeout().filter(|at| *at <= now) {
        health.evaluate(at);
        let _ = health.rotation(at);
        evaluations += 1;
        assert!(
            evaluations < 10_000,
            "poll_timeout keeps asking for the same moment"
        );
    }
    evaluations
}

#[test]
fn a_silent_stream_wakes_health_only_at_its_limits() {
    let t0 = Instant::now();
    let config = HealthConfig::default();
    let mut health = StreamHealth::new(config.clone(), t0);
    health.on_connected(t0);
    health.on_bytes(t0, 10);
    // The input is looked at within a second.
    assert_eq!(health.poll_timeout(), Some(t0 + secs(1)));
    health.evaluate(t0 + secs(1));
    // Then nothing until the bytes leave the window... or silence counts.
    assert_eq!(health.poll_timeout(), Some(t0 + config.silent_after));
    health.evaluate(t0 + config.silent_after);
    // Silent: unhealthy once it held for degrade_after.
    let due = t0 + config.silent_after + config.degrade_after;
    assert_eq!(health.poll_timeout(), Some(due));
    assert_eq!(health.evaluate(due).level, Level::Unhealthy);
    // Only the lasting-degradation rotation remains to be timed.
    assert_eq!(
        health.poll_timeout(),
        Some(due + config.rotate_when_degraded)
    );
}

#[test]
fn a_disconnected_stream_needs_no_time_once_reported() {
    let t0 = Instant::now();
    let config = HealthConfig::default();
    let mut health = StreamHealth::new(config.clone(), t0);
    assert_eq!(health.poll_timeout(), Some(t0 + config.disconnected_after));
    let evaluations = catch_up(&mut health, t0 + secs(24 * 3600));
    assert_eq!(health.verdict().level, Level::Unhealthy);
    assert!(
        evaluations <= 3,
        "a day disconnected costs {evaluations} evaluations, not 86,400"
    );
}

#[test]
fn driving_health_by_poll_timeout_agrees_with_ticking_every_second() {
    let t0 = Instant::now();
    let mut ticked = StreamHealth::new(HealthConfig::default(), t0);
    let mut polled = StreamHealth::new(HealthConfig::default(), t0);
    let (mut ticks, mut polls) = (0, 0);
    // Two minutes of events, a minute of heartbeats only, an error burst,
    // five minutes of silence, a reconnect, then events again.
    for s in 0..900u64 {
        let now = t0 + secs(s);
        polls += catch_up(&mut polled, now);
        for h in [&mut ticked, &mut polled] {
            match s {
                0 | 480 => h.on_connected(now),
                1..=120 | 481.. => {
                    h.on_bytes(now, 100);
                    h.on_event(now, Some(Duration::from_millis(20)));
                }
                121..=180 => h.on_bytes(now, 2),
                181..=190 => h.on_error(now, ErrorKind::Stream),
                470 => h.on_disconnected(now),
                _ => {}
            }
        }
        ticked.evaluate(now);
        let _ = ticked.rotation(now);
        ticks += 1;
        // The polled one sees each input within a second of the ticked one.
        let before = ticked.verdict().level;
        let level = polled.verdict().level;
        if level != before {
            let next = now + secs(1);
            polls += catch_up(&mut polled, next);
            assert_eq!(
                polled.verdict().level,
                before,
                "second {s}: ticked {before:?}, polled {level:?}"
            );
        }
    }
    assert!(polls < ticks, "{polls} evaluations against {ticks}");
}

#[test]
fn thresholds_are_checked_with_their_key() {
    assert_eq!(HealthConfig::default().validate(), Ok(()));
    let mut config = HealthConfig {
        latency_quantile: 1.5,
        ..HealthConfig::default()
    };
    assert_eq!(
        config.validate().map_err(|e| e.key),
        Err("latency_quantile")
    );
    config = HealthConfig {
        window: Duration::ZERO,
        ..HealthConfig::default()
    };
    assert_eq!(config.validate().map_err(|e| e.key), Err("window"));
}

#[cfg(feature = "serde")]
#[test]
fn thresholds_read_from_a_table_with_quiet_streams_switched_off() {
    let config: HealthConfig = toml::from_str(
        "min_events_per_min = 0\nrotate_when_eventless = \"0s\"\nmax_latency = \"250ms\"\n",
    )
    .expect("valid");
    assert_eq!(config.max_latency, Duration::from_millis(250));
    assert_eq!(config.min_events_per_min, Some(0));
    // A quiet stream with heartbeats: never degraded, never rotated.
    let t0 = Instant::now();
    let mut health = StreamHealth::new(config, t0);
    health.on_connected(t0);
    for s in 1..=1200 {
        let now = t0 + secs(s);
        health.on_bytes(now, 2);
        health.evaluate(now);
        assert_eq!(health.rotation(now), None, "second {s}");
    }
    assert_eq!(health.verdict().level, Level::Healthy);
    let e = toml::from_str::<HealthConfig>("windw = \"1m\"").expect_err("a typo");
    assert!(e.to_string().contains("windw"), "{e}");
}

#[test]
fn a_quiet_topic_is_healthy_and_never_rotated_unless_a_rate_is_asked() {
    // The defaults: heartbeats for an hour, one event at the start.
    let mut sim = Sim::new(HealthConfig::default());
    sim.run(60, steady);
    let levels = sim.run(3600, heartbeats);
    assert!(
        levels.iter().all(|l| *l == Level::Healthy),
        "never degraded"
    );
    assert_eq!(sim.health.rotation(sim.now), None, "never rotated");
    // The same topic on a route that asks for a rate: degraded, and rotated.
    let mut busy = Sim::new(HealthConfig {
        min_events_per_min: Some(10),
        ..HealthConfig::default()
    });
    busy.run(60, steady);
    let levels = busy.run(600, heartbeats);
    assert!(levels.contains(&Level::Degraded));
    assert!(busy.health.rotation(busy.now).is_some());
}
