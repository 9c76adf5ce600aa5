//! The fault rows of docs/RELIABILITY.md that the state machine decides (F1-F4,
//! F6, F14, F15, F19, F20), plus the transition table, each over virtual time.

mod common;

use std::time::Duration;

use common::{Driver, exact, secs};
use sse_state_machine::{
    CloseReason, Config, Delivery, Error, FailureKind, Input, Jitter, Output, Phase, Reason,
    RotateReason, StopReason, TimeoutKind,
};

/// The band a backoff delay must fall in after the `k`-th consecutive failure
/// (1-based) under `config`, with or without the reconnect spread.
fn band(
    config: &Config,
    base: Duration,
    k: u32,
    cap: Duration,
    spread: bool,
) -> (Duration, Duration) {
    let raw = (base.as_secs_f64() * config.backoff.multiplier.powi(k as i32 - 1))
        .min(cap.max(base).as_secs_f64());
    let (lo, hi) = match config.backoff.jitter {
        Jitter::None => (raw, raw),
        Jitter::Half => (raw / 2.0, raw),
        Jitter::Full => (0.0, raw),
    };
    let extra = if spread {
        config.backoff.reconnect_spread.as_secs_f64()
    } else {
        0.0
    };
    (
        Duration::from_secs_f64(lo),
        Duration::from_secs_f64(hi + extra),
    )
}

fn assert_in(delay: Duration, (lo, hi): (Duration, Duration), what: &str) {
    // One microsecond of slack for float rounding.
    let eps = Duration::from_micros(1);
    assert!(
        delay + eps >= lo && delay <= hi + eps,
        "{what}: {delay:?} not in [{lo:?}, {hi:?}]"
    );
}

#[test]
fn f1_refused_connections_back_off_within_the_jitter_band_and_recover() {
    let config = Config::default();
    let mut d = Driver::started(config.clone(), 1);
    for k in 1..=1000u32 {
        let conn = d.last_connect();
        d.input(Input::Failed {
            conn,
            kind: FailureKind::Refused,
        });
        assert_eq!(d.last_reason(), Reason::Failed(FailureKind::Refused));
        let delay = d.backoff();
        assert_in(
            delay,
            band(&config, secs(1), k, config.backoff.max, false),
            &format!("attempt {k}"),
        );
        assert_eq!(d.next_deadline(), delay);
        assert_eq!(d.phase(), Phase::Connecting);
    }
    // The upstream comes back: one connection, open, and no other left.
    let conn = d.accept();
    assert_eq!(d.phase(), Phase::Open);
    assert_eq!(d.machine.delivering(), Some(conn));
    d.assert_closed_exactly_once(&[conn]);
}

#[test]
fn f2_retry_after_is_honoured_and_clamped_and_the_body_is_not_parsed() {
    let config = exact();
    // Seconds (or a date the shell resolved to a delay): honoured exactly.
    let mut d = Driver::started(config.clone(), 2);
    d.respond(503, Some(secs(120)));
    assert_eq!(d.last_reason(), Reason::Status(503));
    assert_eq!(d.backoff(), secs(120));
    // Absurd: clamped to 600 s.
    d.next_deadline();
    d.respond(503, Some(secs(1_000_000_000)));
    assert_eq!(d.backoff(), secs(600));
    // Garbage (the shell could not parse it): plain backoff, third attempt.
    d.next_deadline();
    d.respond(500, None);
    assert_eq!(d.backoff(), secs(4));
    // Shorter than the backoff: the backoff wins.
    d.next_deadline();
    d.respond(502, Some(secs(1)));
    assert_eq!(d.backoff(), secs(8));
    // The error response is closed; no data of it ever reaches the machine.
    let conn = d.last_connect();
    assert_eq!(d.closes(conn), [CloseReason::Status(502)]);
    assert!(
        d.try_input(Input::Data {
            conn,
            mid_event: true
        })
        .is_ok(),
        "ignored as stale"
    );
    assert_eq!(d.phase(), Phase::BackingOff);
}

#[test]
fn f2_429_401_403_use_their_own_caps() {
    let mut config = exact();
    config.backoff.max_rate_limited = secs(120);
    config.backoff.max_auth = secs(600);
    for (status, cap) in [
        (429, secs(120)),
        (401, secs(600)),
        (403, secs(600)),
        (503, secs(30)),
    ] {
        let mut d = Driver::started(config.clone(), 3);
        let mut last = Duration::ZERO;
        for _ in 0..12 {
            d.respond(status, None);
            last = d.backoff();
            d.next_deadline();
        }
        assert_eq!(last, cap, "status {status}");
    }
}

#[test]
fn f3_close_mid_event_reconnects_with_the_last_complete_id() {
    let (mut d, conn) = Driver::open(exact(), 3);
    d.data(conn, false);
    assert_eq!(d.event(conn, "1"), Delivery::Deliver);
    assert_eq!(d.event(conn, "2"), Delivery::Deliver);
    // Half of event 3 arrives (its id line included), then the body ends.
    d.data(conn, true);
    d.input(Input::EndOfBody { conn });
    d.next_deadline();
    assert_eq!(d.last_connect_id().as_deref(), Some("2"));
}

#[test]
fn f3_last_event_id_committed_without_data_is_carried() {
    let (mut d, conn) = Driver::open(exact(), 3);
    d.event(conn, "7");
    d.input(Input::LastEventId {
        conn,
        id: "8".into(),
    });
    d.input(Input::Failed {
        conn,
        kind: FailureKind::Io,
    });
    d.next_deadline();
    assert_eq!(d.last_connect_id().as_deref(), Some("8"));
}

#[test]
fn f4_a_stalled_stream_is_detected_at_the_idle_timeout() {
    let config = exact();
    let (mut d, conn) = Driver::open(config.clone(), 4);
    d.advance(secs(2));
    d.data(conn, false);
    let last_byte = d.now;
    // Comments (any byte) keep it alive...
    for _ in 0..10 {
        d.advance(secs(60));
        d.data(conn, false);
    }
    assert_eq!(d.phase(), Phase::Open);
    // ...silence does not.
    let silent_from = d.now;
    assert!(silent_from > last_byte);
    assert_eq!(d.next_deadline(), config.idle_timeout);
    assert_eq!(d.closes(conn), [CloseReason::Timeout(TimeoutKind::Idle)]);
    // A stale connection is a lost established one: replaced at once (this
    // config has no spread).
    assert_eq!(d.phase(), Phase::Connecting);
    assert_eq!(d.machine.attempts(), 1);
}

#[test]
fn f4_connect_and_first_byte_deadlines() {
    let config = exact();
    let mut d = Driver::started(config.clone(), 4);
    assert_eq!(d.next_deadline(), config.connect_timeout);
    assert_eq!(d.last_reason(), Reason::Timeout(TimeoutKind::Connect));
    d.next_deadline();
    d.accept();
    assert_eq!(d.next_deadline(), config.first_byte_timeout);
    assert_eq!(d.last_reason(), Reason::Timeout(TimeoutKind::FirstByte));
}

#[test]
fn f6_a_one_byte_per_second_drip_is_recycled_at_the_assembly_deadline() {
    let config = exact();
    let (mut d, conn) = Driver::open(config.clone(), 6);
    d.data(conn, true); // an event starts
    let started = d.now;
    while d.phase() == Phase::Open {
        d.advance(secs(1));
        if d.phase() == Phase::Open {
            d.data(conn, true); // one more byte of the same event
        }
    }
    assert_eq!(
        d.closes(conn),
        [CloseReason::Timeout(TimeoutKind::EventAssembly)]
    );
    assert!(d.now - started <= config.event_assembly_timeout + secs(1));
    assert!(
        d.now - started < config.idle_timeout,
        "the idle timer alone would never fire"
    );
}

#[test]
fn f6_completed_events_reset_the_assembly_deadline() {
    let config = exact();
    let (mut d, conn) = Driver::open(config.clone(), 6);
    // Slow but complete events, each within the deadline: the stream lives.
    for _ in 0..100 {
        d.data(conn, true);
        d.advance(secs(20));
        d.data(conn, false);
        d.advance(secs(20));
    }
    assert_eq!(d.phase(), Phase::Open);
}

#[test]
fn f14_204_stops_for_good() {
    let mut d = Driver::started(exact(), 14);
    let conn = d.respond(204, None);
    assert_eq!(d.phase(), Phase::Stopped);
    assert_eq!(d.last_reason(), Reason::Stop(StopReason::NoContent));
    assert_eq!(d.closes(conn), [CloseReason::Status(204)]);
    assert_eq!(d.machine.poll_timeout(), None);
    d.drain();
    d.advance(secs(86_400));
    assert!(d.drain().is_empty(), "nothing happens after a stop");
    assert_eq!(
        d.log
            .iter()
            .filter(|(_, o)| matches!(o, Output::Connect { .. }))
            .count(),
        1
    );
}

#[test]
fn f14_other_4xx_stop_and_say_why() {
    for status in [400, 404, 410] {
        let mut d = Driver::started(exact(), 14);
        d.respond(status, None);
        assert_eq!(
            d.last_reason(),
            Reason::Stop(StopReason::ClientError(status))
        );
        assert_eq!(d.machine.poll_timeout(), None);
    }
    // 408 is a timeout: retried.
    let mut d = Driver::started(exact(), 14);
    d.respond(408, None);
    assert_eq!(d.phase(), Phase::BackingOff);
}

#[test]
fn f14_wrong_content_type_is_an_error_with_backoff() {
    let mut d = Driver::started(exact(), 14);
    let conn = d.last_connect();
    d.input(Input::Connected {
        conn,
        status: 200,
        event_stream: false,
        retry_after: None,
    });
    assert_eq!(d.last_reason(), Reason::NotEventStream);
    assert_eq!(d.closes(conn), [CloseReason::NotEventStream]);
    assert_eq!(d.backoff(), secs(1));
}

#[test]
fn f15_retry_field_is_clamped() {
    let config = exact();
    for (asked, used) in [
        (Duration::ZERO, secs(1)),
        (Duration::from_millis(999_999_999), secs(60)),
        (secs(7), secs(7)),
    ] {
        let (mut d, conn) = Driver::open(config.clone(), 15);
        d.input(Input::Retry { conn, delay: asked });
        d.input(Input::EndOfBody { conn });
        assert_eq!(d.backoff(), used, "retry: {asked:?}");
    }
}

#[test]
fn f19_a_flapping_upstream_backs_off_up_to_the_cap() {
    let config = Config {
        max_age: None,
        ..Config::default()
    };
    let mut d = Driver::started(config.clone(), 19);
    let mut delays = Vec::new();
    // 72 virtual hours: accept, send a little, die within a second.
    while d.now - d.start < secs(72 * 3600) {
        let conn = d.accept();
        d.advance(Duration::from_millis(300));
        d.data(conn, false);
        d.advance(Duration::from_millis(500));
        d.input(Input::EndOfBody { conn });
        let k = d.machine.attempts();
        let delay = d.backoff();
        // Never established (it dies within a second): the backoff grows
        // from the first loss on.
        assert_in(
            delay,
            band(&config, secs(1), k, config.backoff.max, false),
            &format!("attempt {k}"),
        );
        delays.push(delay);
        d.next_deadline();
    }
    // The delays reach the cap and stay in its band: the count never resets.
    assert!(delays[10..].iter().all(|d| *d >= config.backoff.max / 2));
    // At least cap/2 + 0.8 s per cycle once capped: never more attempts than that allows.
    let max_attempts = 10 + 72 * 3600 / (config.backoff.max.as_secs() / 2);
    assert!(
        delays.len() as u64 <= max_attempts,
        "{} attempts",
        delays.len()
    );
}

#[test]
fn f19_a_healthy_minute_resets_the_backoff() {
    let config = exact();
    let mut d = Driver::started(config.clone(), 19);
    for _ in 0..5 {
        let conn = d.accept();
        d.data(conn, false);
        d.input(Input::EndOfBody { conn });
        d.next_deadline();
    }
    assert_eq!(d.machine.attempts(), 5);
    let conn = d.accept();
    for _ in 0..7 {
        d.advance(secs(10));
        d.data(conn, false);
    }
    d.input(Input::EndOfBody { conn });
    assert_eq!(d.machine.attempts(), 1);
    assert_eq!(
        d.backoff(),
        Duration::ZERO,
        "a healthy connection lost: at once"
    );
}

#[test]
fn f20_a_thousand_streams_dropped_together_reconnect_spread_out() {
    let config = Config::default();
    let mut times = Vec::new();
    for i in 0..1000u64 {
        // Production seeds each stream from its key and the process's randomness.
        let seed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED;
        let (mut d, conn) = Driver::open(config.clone(), seed);
        d.data(conn, false);
        d.advance(secs(5));
        // The upstream restarts: every stream loses its connection now.
        d.input(Input::EndOfBody { conn });
        times.push(d.backoff());
    }
    let mut buckets = std::collections::BTreeMap::new();
    for t in &times {
        *buckets.entry(t.as_millis() / 100).or_insert(0u32) += 1;
    }
    let fullest = buckets.values().max().copied().unwrap_or(0);
    println!(
        "1,000 reconnects over {} buckets of 100 ms; the fullest holds {fullest}",
        buckets.len()
    );
    assert!(
        fullest <= 50,
        "a 100 ms bucket holds {fullest} of 1000 reconnects: {buckets:?}"
    );
}

/// Reconnect delays of `n` streams dropped together, each told by the shell
/// how many of its origin were lost before it in that second.
fn dropped_together(config: &Config, n: u32) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let seed = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xF20;
            let (mut d, conn) = Driver::open(config.clone(), seed);
            d.data(conn, false);
            d.advance(secs(5));
            d.machine.set_lost_together(i + 1);
            d.input(Input::EndOfBody { conn });
            d.backoff()
        })
        .collect()
}

/// Two healthy minutes on `conn` (data every 30 s): its loss is the loss
/// of an established connection.
fn stay_healthy(d: &mut Driver, conn: sse_state_machine::ConnId) {
    for _ in 0..4 {
        d.data(conn, false);
        d.advance(secs(30));
    }
    d.data(conn, false);
}

#[test]
fn f20_counted_by_the_shell_a_mass_drop_still_spreads() {
    let config = Config::default();
    let times = dropped_together(&config, 1000);
    let mut buckets = std::collections::BTreeMap::new();
    for t in &times {
        *buckets.entry(t.as_millis() / 100).or_insert(0u32) += 1;
    }
    let fullest = buckets.values().max().copied().unwrap_or(0);
    assert!(
        fullest <= 50,
        "a 100 ms bucket holds {fullest}: {buckets:?}"
    );
    assert!(times.iter().all(|t| *t < config.backoff.reconnect_spread));
}

#[test]
fn f25_one_lost_stream_reconnects_within_the_spread_step() {
    let config = Config::default();
    for seed in 0..1000 {
        let (mut d, conn) = Driver::open(config.clone(), seed);
        stay_healthy(&mut d, conn);
        d.machine.set_lost_together(1);
        d.input(Input::EndOfBody { conn });
        let delay = d.backoff();
        assert!(delay < config.backoff.reconnect_spread_step, "{delay:?}");
    }
    // Two lost together: within two steps.
    let times = dropped_together(&config, 2);
    assert!(times[1] < config.backoff.reconnect_spread_step * 2);
}

#[test]
fn f25_a_stream_restarted_every_few_seconds_reconnects_at_once_each_time() {
    // Not a flapping upstream: each connection delivers for seconds. The
    // consecutive-failure count is not reset (that takes a healthy minute),
    // yet every loss is reconnected at once, and a failed reconnect starts
    // the short schedule again.
    let config = Config::default();
    let (mut d, mut conn) = Driver::open(config.clone(), 27);
    for round in 0..10 {
        d.data(conn, false);
        d.advance(secs(5));
        d.data(conn, false);
        d.machine.set_lost_together(1);
        d.input(Input::EndOfBody { conn });
        let delay = d.backoff();
        assert!(
            delay < config.backoff.reconnect_spread_step,
            "round {round}: {delay:?}"
        );
        d.next_deadline();
        if round % 2 == 1 {
            // The upstream is still down once: the retry is short too.
            let failed = d.last_connect();
            d.input(Input::Failed {
                conn: failed,
                kind: FailureKind::Refused,
            });
            let retry = d.backoff();
            assert!(
                retry <= config.backoff.after_loss,
                "round {round}: {retry:?}"
            );
            d.next_deadline();
        }
        conn = d.accept();
    }
}

#[test]
fn f25_after_a_lost_stream_the_retries_start_short() {
    let config = Config {
        max_age: None,
        ..Config::default()
    };
    let (mut d, conn) = Driver::open(config.clone(), 25);
    stay_healthy(&mut d, conn);
    d.machine.set_lost_together(1);
    d.input(Input::EndOfBody { conn });
    let mut elapsed = d.next_deadline();
    // The upstream is still restarting: the retries come at 50-100 ms,
    // 100-200 ms, 200-400 ms, 400-800 ms (half jitter).
    for k in 2..=5u32 {
        let conn = d.last_connect();
        d.input(Input::Failed {
            conn,
            kind: FailureKind::Refused,
        });
        let delay = d.backoff();
        assert_in(
            delay,
            band(
                &config,
                config.backoff.after_loss,
                k - 1,
                config.backoff.max,
                false,
            ),
            &format!("retry {k}"),
        );
        elapsed += d.next_deadline();
    }
    assert!(elapsed < secs(2), "five tries within {elapsed:?}");
    // A server that set its reconnection time gets it, even at once.
    let (mut d, conn) = Driver::open(config.clone(), 26);
    d.data(conn, false);
    d.advance(secs(2));
    d.input(Input::Retry {
        conn,
        delay: secs(4),
    });
    d.input(Input::EndOfBody { conn });
    assert_eq!(d.backoff(), secs(4));
}

#[test]
fn time_queued_for_a_permit_is_not_a_connect_timeout() {
    let config = exact();
    let mut d = Driver::started(config.clone(), 14);
    let conn = d.last_connect();
    d.input(Input::Queued { conn });
    // Four connect deadlines pass in the shell's queue: nothing fires.
    d.advance(config.connect_timeout * 4);
    assert_eq!(d.phase(), Phase::Connecting);
    assert!(d.closes(conn).is_empty());
    // The permit comes: the deadline runs from now.
    d.input(Input::Dialing { conn });
    assert_eq!(d.next_deadline(), config.connect_timeout);
    assert_eq!(d.closes(conn), [CloseReason::Timeout(TimeoutKind::Connect)]);
    // News about a closed connection is ignored; about an unknown one, an error.
    d.input(Input::Dialing { conn });
    let never = {
        let mut other = Driver::new(exact(), 0);
        other.input(Input::Start);
        for _ in 0..5 {
            other.input(Input::Reconnect);
        }
        other.last_connect()
    };
    assert!(matches!(
        d.try_input(Input::Queued { conn: never }),
        Err(Error::UnknownConnection(_))
    ));
}

#[test]
fn attempt_budget_leads_to_a_cool_off_not_to_giving_up() {
    let config = Config {
        attempt_budget: Some(3),
        ..exact()
    };
    let mut d = Driver::started(config.clone(), 9);
    for _ in 0..2 {
        d.respond(503, None);
        d.next_deadline();
    }
    d.respond(503, None);
    assert_eq!(d.phase(), Phase::CoolingOff);
    assert_eq!(d.last_reason(), Reason::AttemptBudget);
    assert_eq!(d.next_deadline(), config.cool_off);
    assert_eq!(d.phase(), Phase::Connecting);
    assert_eq!(d.last_reason(), Reason::CoolOffElapsed);
    assert_eq!(d.machine.attempts(), 0);
}

// ------------------------------------------------------------ rotation

#[test]
fn rotation_by_age_is_make_before_break_with_no_gap_and_no_duplicate() {
    let config = Config {
        max_age: Some(secs(3600)),
        max_age_jitter: 0.0,
        ..exact()
    };
    let (mut d, old) = Driver::open(config, 10);
    d.data(old, false);
    let mut delivered = Vec::new();
    for i in 1..=5 {
        assert_eq!(d.event(old, &i.to_string()), Delivery::Deliver);
        delivered.push(i);
    }
    // An hour of a live stream (the idle timer must not fire).
    for _ in 0..60 {
        d.advance(secs(60));
        if d.phase() == Phase::Open && d.machine.delivering() == Some(old) {
            d.data(old, false);
        }
    }
    let new = d.last_connect();
    assert_ne!(new, old);
    assert_eq!(d.machine.delivering(), Some(old));
    assert_eq!(d.last_connect_id().as_deref(), Some("5"));
    // Both are open; the old one keeps delivering while the new one starts.
    d.accept();
    for i in 6..=7 {
        assert_eq!(d.event(old, &i.to_string()), Delivery::Deliver);
        delivered.push(i);
    }
    d.data(new, false);
    // The new connection replays from 5: 6 and 7 are duplicates...
    assert_eq!(d.event(new, "6"), Delivery::Duplicate);
    assert_eq!(d.machine.delivering(), Some(old));
    // ...and 7 is the last delivered: hand over.
    assert_eq!(d.event(new, "7"), Delivery::Duplicate);
    assert_eq!(d.machine.delivering(), Some(new));
    assert_eq!(d.closes(old), [CloseReason::Replaced]);
    assert_eq!(d.last_reason(), Reason::Rotated(RotateReason::Age));
    // The old one is stale now; the new one delivers what follows.
    assert_eq!(d.event(old, "8"), Delivery::Stale);
    assert_eq!(d.event(new, "8"), Delivery::Deliver);
    delivered.push(8);
    assert_eq!(delivered, (1..=8).collect::<Vec<_>>());
}

#[test]
fn rotation_hands_over_when_the_new_connection_is_ahead() {
    let (mut d, old) = Driver::open(exact(), 11);
    d.event(old, "1");
    d.input(Input::Rotate(RotateReason::Degraded));
    let new = d.accept();
    // The old connection lags: the new one's event 2 is new, so it takes over.
    assert_eq!(d.event(new, "2"), Delivery::Deliver);
    assert_eq!(d.machine.delivering(), Some(new));
    assert_eq!(d.event(old, "2"), Delivery::Stale);
}

#[test]
fn rotation_that_cannot_take_over_is_abandoned_and_retried() {
    let config = exact();
    let (mut d, old) = Driver::open(config.clone(), 12);
    d.data(old, false);
    d.input(Input::Rotate(RotateReason::Stale));
    let first = d.last_connect();
    // The new connection gets a 503: the old one stays.
    d.respond(503, None);
    assert_eq!(d.closes(first), [CloseReason::Status(503)]);
    assert_eq!(d.machine.delivering(), Some(old));
    // Retried after the hand-over timeout.
    d.data(old, false);
    assert_eq!(d.next_deadline(), config.handover_timeout);
    let second = d.last_connect();
    assert_ne!(second, first);
    // This one never delivers: abandoned at the hand-over deadline.
    d.accept();
    d.data(old, false);
    d.data(second, false);
    d.advance(config.handover_timeout);
    assert_eq!(d.closes(second), [CloseReason::HandoverAbandoned]);
    assert_eq!(d.machine.delivering(), Some(old));
}

#[test]
fn losing_the_old_connection_mid_rotation_hands_over_at_once() {
    let (mut d, old) = Driver::open(exact(), 13);
    d.event(old, "1");
    d.input(Input::Rotate(RotateReason::Errors));
    let new = d.accept();
    d.input(Input::Failed {
        conn: old,
        kind: FailureKind::Io,
    });
    assert_eq!(d.machine.delivering(), Some(new));
    assert_eq!(d.phase(), Phase::Open);
    assert_eq!(
        d.machine.attempts(),
        0,
        "no backoff: the new connection was ready"
    );
    // It replays from 1; the duplicate check ended with the rotation, so the
    // shell's resume logic (Last-Event-ID 1) is what prevents repeats.
    assert_eq!(d.last_connect_id().as_deref(), Some("1"));
}

// ------------------------------------------------------------ transitions

/// One response to a connection attempt, and where it must lead.
fn check_response(
    status: u16,
    event_stream: bool,
    phase: Phase,
    reason: Reason,
    close: Option<CloseReason>,
) {
    let mut d = Driver::started(exact(), 30);
    let conn = d.last_connect();
    d.input(Input::Connected {
        conn,
        status,
        event_stream,
        retry_after: None,
    });
    assert_eq!(
        (d.phase(), d.last_reason()),
        (phase, reason),
        "status {status}, event stream {event_stream}"
    );
    assert_eq!(
        d.closes(conn),
        close.into_iter().collect::<Vec<_>>(),
        "status {status}"
    );
}

#[test]
fn response_table() {
    use CloseReason as C;
    use Phase::*;
    check_response(200, true, Open, Reason::Opened, None);
    check_response(
        200,
        false,
        BackingOff,
        Reason::NotEventStream,
        Some(C::NotEventStream),
    );
    check_response(
        204,
        true,
        Stopped,
        Reason::Stop(StopReason::NoContent),
        Some(C::Status(204)),
    );
    for status in [500, 502, 503, 504, 408, 429, 401, 403] {
        check_response(
            status,
            true,
            BackingOff,
            Reason::Status(status),
            Some(C::Status(status)),
        );
    }
    for status in [400, 404, 405, 410, 451] {
        check_response(
            status,
            true,
            Stopped,
            Reason::Stop(StopReason::ClientError(status)),
            Some(C::Status(status)),
        );
    }
    // Redirects are the client's job; one that reaches the machine is retried.
    for status in [301, 302, 307, 100, 206] {
        check_response(
            status,
            true,
            BackingOff,
            Reason::Status(status),
            Some(C::Status(status)),
        );
    }
}

/// One way to lose an open connection, and what the machine says about it.
fn check_loss(
    input: impl Fn(sse_state_machine::ConnId) -> Input,
    reason: Reason,
    close: CloseReason,
) {
    let (mut d, conn) = Driver::open(exact(), 31);
    d.data(conn, false);
    d.input(input(conn));
    assert_eq!((d.phase(), d.last_reason()), (Phase::BackingOff, reason));
    assert_eq!(d.closes(conn), [close]);
}

#[test]
fn loss_table() {
    check_loss(
        |conn| Input::EndOfBody { conn },
        Reason::EndOfBody,
        CloseReason::EndOfBody,
    );
    for kind in [
        FailureKind::Io,
        FailureKind::Limit,
        FailureKind::Protocol,
        FailureKind::Other,
    ] {
        check_loss(
            |conn| Input::Failed { conn, kind },
            Reason::Failed(kind),
            CloseReason::Failed(kind),
        );
    }
}

#[test]
fn stop_is_final_and_idempotent() {
    let (mut d, old) = Driver::open(exact(), 20);
    d.input(Input::Rotate(RotateReason::Manual));
    let new = d.last_connect();
    d.input(Input::Stop);
    assert_eq!(d.phase(), Phase::Stopped);
    assert_eq!(d.closes(old), [CloseReason::Stop]);
    assert_eq!(d.closes(new), [CloseReason::Stop]);
    d.drain();
    // Everything later is absorbed: no output, no deadline.
    for input in [
        Input::Stop,
        Input::Start,
        Input::Reconnect,
        Input::EndOfBody { conn: old },
        Input::Connected {
            conn: new,
            status: 200,
            event_stream: true,
            retry_after: None,
        },
    ] {
        d.input(input);
    }
    assert_eq!(d.event(new, "9"), Delivery::Stale);
    d.advance(secs(3600));
    assert!(d.drain().is_empty());
    assert_eq!(d.machine.poll_timeout(), None);
    d.assert_closed_exactly_once(&[]);
}

#[test]
fn illegal_inputs_are_typed_errors_and_change_nothing() {
    let mut d = Driver::new(exact(), 21);
    assert_eq!(
        d.try_input(Input::Reconnect),
        Err(Error::Unexpected {
            input: "Reconnect",
            phase: Phase::Idle
        })
    );
    d.input(Input::Start);
    let conn = d.last_connect();
    assert_eq!(
        d.try_input(Input::Start),
        Err(Error::Unexpected {
            input: "Start",
            phase: Phase::Connecting
        })
    );
    assert_eq!(
        d.try_input(Input::Data {
            conn,
            mid_event: false
        }),
        Err(Error::Unexpected {
            input: "Data",
            phase: Phase::Connecting
        })
    );
    assert_eq!(
        d.try_input(Input::EndOfBody { conn }),
        Err(Error::Unexpected {
            input: "EndOfBody",
            phase: Phase::Connecting
        })
    );
    let never = {
        // An id beyond any the machine handed out.
        let mut other = Driver::new(exact(), 0);
        other.input(Input::Start);
        other.input(Input::Reconnect);
        other.input(Input::Reconnect);
        other.last_connect()
    };
    assert!(matches!(
        d.try_input(Input::EndOfBody { conn: never }),
        Err(Error::UnknownConnection(_))
    ));
    assert_eq!(d.phase(), Phase::Connecting);
    assert_eq!(d.drain().len(), 2, "only the Start's outputs");
}

#[test]
fn reconnect_drops_and_connects_at_once() {
    let (mut d, conn) = Driver::open(exact(), 22);
    d.event(conn, "4");
    d.input(Input::Reconnect);
    assert_eq!(d.closes(conn), [CloseReason::Reconnect]);
    assert_eq!(d.phase(), Phase::Connecting);
    assert_ne!(d.last_connect(), conn);
    assert_eq!(d.last_connect_id().as_deref(), Some("4"));
}

#[test]
fn news_about_closed_connections_is_ignored() {
    let mut d = Driver::started(exact(), 23);
    let first = d.last_connect();
    d.input(Input::Failed {
        conn: first,
        kind: FailureKind::Dns,
    });
    d.next_deadline();
    let second = d.accept();
    // The first attempt's late answer: ignored, the second stays.
    d.input(Input::Connected {
        conn: first,
        status: 200,
        event_stream: true,
        retry_after: None,
    });
    d.input(Input::EndOfBody { conn: first });
    assert_eq!(d.machine.delivering(), Some(second));
    assert_eq!(d.event(first, "1"), Delivery::Stale);
}

#[test]
fn the_state_changes_name_their_reasons() {
    let (mut d, conn) = Driver::open(exact(), 24);
    d.input(Input::Failed {
        conn,
        kind: FailureKind::Tls,
    });
    d.next_deadline();
    let changes: Vec<(Phase, Phase, Reason)> = d
        .drain()
        .into_iter()
        .filter_map(|o| match o {
            Output::StateChanged { from, to, reason } => Some((from, to, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (Phase::Idle, Phase::Connecting, Reason::Start),
            (Phase::Connecting, Phase::Open, Reason::Opened),
            (
                Phase::Open,
                Phase::BackingOff,
                Reason::Failed(FailureKind::Tls)
            ),
            (Phase::BackingOff, Phase::Connecting, Reason::BackoffElapsed),
        ]
    );
}
