//! The checks behind the fuzz targets, shared with the corpus replay test so
//! that `cargo xtask ci` runs every corpus input on stable Rust.
//!
//! A check panics when the parser breaks its contract; the fuzzer reports the
//! panic with the input.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sse_parser::{Event, Item, Limits, ParseError, Parser, encode_event};
use sse_state_machine::{
    Config, ConnId, Delivery, FailureKind, Input, Machine, Output, Phase, RotateReason,
};

/// What one run of the parser yielded.
type Run = (Vec<Item>, Option<ParseError>);

/// Feeds `chunks` in order, draining after each, and checks the invariants
/// that hold at every step.
fn run<'a>(limits: Limits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Run {
    let mut parser = Parser::with_limits(limits);
    let cap = limits.line_len() + limits.event_size();
    let mut items = Vec::new();
    let mut fed = 0u64;
    for chunk in chunks {
        parser.feed_slice(chunk);
        fed += chunk.len() as u64;
        loop {
            assert!(
                parser.buffered_bytes() <= cap,
                "buffered memory above the cap"
            );
            match parser.next_item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(err) => return (items, Some(err)),
            }
        }
    }
    let stats = parser.stats();
    assert_eq!(stats.bytes_fed, fed);
    assert_eq!(stats.bytes_scanned, fed, "every byte scanned exactly once");
    (items, None)
}

/// Cuts `input` into chunks whose sizes cycle through a pattern chosen by
/// `seed`, including 1-byte chunks.
fn chunk_by_seed(input: &[u8], seed: u8) -> Vec<&[u8]> {
    let pattern = [1usize, 2, 3, 5, 8, 13, 64, 1];
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut k = usize::from(seed);
    while at < input.len() {
        let size = pattern[k % pattern.len()].min(input.len() - at);
        chunks.push(&input[at..at + size]);
        at += size;
        k = k.wrapping_mul(31).wrapping_add(7);
    }
    chunks
}

/// Arbitrary bytes as a stream: the first byte picks the limits and the
/// chunking, the rest is the stream. Checks that any chunking yields the same
/// items (and the same error) as feeding the stream whole, that the parser's
/// buffers stay under the caps, and that every byte is scanned exactly once.
pub fn check_parse(data: &[u8]) {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let limits = if mode & 1 == 1 {
        Limits::default().max_line_len(16).max_event_size(40)
    } else {
        Limits::default()
    };
    let whole = run(limits, [input]);
    let chunked = run(limits, chunk_by_seed(input, mode >> 1));
    assert_eq!(chunked, whole, "chunking changed the items");
    if input.len() <= 4096 {
        assert_eq!(
            run(limits, input.chunks(1)),
            whole,
            "1-byte chunks changed the items"
        );
    }
}

/// Arbitrary bytes as an event: split at 0xFF bytes into event type, id and
/// data (lossily decoded). Checks that encoding either refuses a type or id
/// with CR, LF or NUL, or produces bytes that parse back to the event.
pub fn check_encode(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0xFF).map(String::from_utf8_lossy);
    let event_type = parts.next().unwrap_or_default().into_owned();
    let id = parts.next().unwrap_or_default().into_owned();
    let text = parts.next().unwrap_or_default().into_owned();
    let event = Event::new(text.as_str())
        .with_type(event_type.as_str())
        .with_id(id.as_str());
    let forbidden = |s: &str| s.contains(['\r', '\n', '\0']);
    match encode_event(&event) {
        Err(_) => assert!(
            forbidden(&event_type) || forbidden(&id),
            "refused a valid event"
        ),
        Ok(wire) => {
            assert!(
                !forbidden(&event_type) && !forbidden(&id),
                "encoded an injectable event"
            );
            let mut parser = Parser::new();
            parser.feed(Bytes::clone(&wire));
            let item = parser
                .next_item()
                .expect("within limits")
                .expect("one event");
            let expected_type = if event_type.is_empty() {
                "message"
            } else {
                &event_type
            };
            let data = text.replace("\r\n", "\n").replace('\r', "\n");
            assert_eq!(
                item,
                Item::Event(
                    Event::new(data)
                        .with_type(expected_type)
                        .with_id(id.as_str())
                )
            );
            assert_eq!(parser.next_item(), Ok(None), "one event, nothing more");
        }
    }
}

/// Arbitrary bytes as a life of one upstream stream: each pair of bytes is an
/// action (advance time, a response, data, an event, an end, a failure, a
/// rotation, a reconnect, a stop) on a recent connection. Checks that the
/// machine never panics, never schedules a deadline in the past, delivers
/// only from its delivering connection, closes every connection at most
/// once (and all of them after a stop), and is silent after the stop.
pub fn check_state_machine(data: &[u8]) {
    let Some((&seed, actions)) = data.split_first() else {
        return;
    };
    let mut config = Config::default();
    if seed & 1 == 1 {
        config.attempt_budget = Some(2);
        config.max_age = Some(Duration::from_secs(300));
        config.handover_window = 3;
    }
    let Ok(mut machine) = Machine::new(config, u64::from(seed)) else {
        return;
    };
    let mut now = Instant::now();
    let mut conns: Vec<ConnId> = Vec::new();
    let mut closed: HashSet<ConnId> = HashSet::new();
    let mut stopped = false;
    let mut drain = |machine: &mut Machine, conns: &mut Vec<ConnId>, now: Instant| {
        while let Some(output) = machine.poll_output() {
            assert!(!stopped, "output after the stop");
            match output {
                Output::Connect { conn, .. } => conns.push(conn),
                Output::Close { conn, .. } => assert!(closed.insert(conn), "{conn} closed twice"),
                Output::Retrying { at, .. } => assert!(at >= now),
                Output::StateChanged { to, .. } => stopped |= to == Phase::Stopped,
            }
        }
        if let Some(at) = machine.poll_timeout() {
            assert!(at >= now, "a deadline in the past");
        }
    };
    let _ = machine.handle_input(now, Input::Start);
    drain(&mut machine, &mut conns, now);
    for pair in actions.chunks(2) {
        let (op, arg) = (pair[0], pair.get(1).copied().unwrap_or(0));
        let conn = match conns.len() {
            0 => None,
            n => Some(conns[n - 1 - usize::from(arg >> 6).min(n - 1)]),
        };
        let input = match (op % 11, conn) {
            (0, _) => {
                now += Duration::from_millis(u64::from(arg) * 997);
                machine.handle_timeout(now);
                None
            }
            (1, Some(conn)) => Some(Input::Connected {
                conn,
                status: [200, 200, 204, 503, 429, 404, 301, 401][usize::from(arg & 7)],
                event_stream: arg & 8 == 0,
                retry_after: (arg & 16 != 0).then(|| Duration::from_secs(u64::from(arg))),
            }),
            (2, Some(conn)) => Some(Input::Data {
                conn,
                mid_event: arg & 1 == 1,
            }),
            (3, Some(conn)) => {
                let id = (arg & 15).to_string().into();
                let delivery = machine.on_event(now, conn, &id);
                if delivery == Delivery::Deliver {
                    assert_eq!(machine.delivering(), Some(conn));
                }
                None
            }
            (4, Some(conn)) => Some(Input::EndOfBody { conn }),
            (5, Some(conn)) => Some(Input::Failed {
                conn,
                kind: FailureKind::Io,
            }),
            (6, Some(conn)) => Some(Input::Retry {
                conn,
                delay: Duration::from_millis(u64::from(arg) * 100),
            }),
            (7, Some(conn)) => Some(Input::LastEventId {
                conn,
                id: "x".into(),
            }),
            (8, _) => Some(Input::Rotate(RotateReason::Manual)),
            (9, _) => Some(Input::Reconnect),
            (10, _) if arg < 8 => Some(Input::Stop),
            _ => None,
        };
        if let Some(input) = input {
            let _ = machine.handle_input(now, input);
        }
        drain(&mut machine, &mut conns, now);
    }
    let _ = machine.handle_input(now, Input::Stop);
    drain(&mut machine, &mut conns, now);
    for conn in &conns {
        assert!(closed.contains(conn), "{conn} open after the stop");
    }
}
