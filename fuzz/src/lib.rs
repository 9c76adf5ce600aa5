//! The checks behind the fuzz targets, shared with the corpus replay test so
//! that `cargo xtask ci` runs every corpus input on stable Rust.
//!
//! A check panics when the parser breaks its contract; the fuzzer reports the
//! panic with the input.

use bytes::Bytes;
use sse_parser::{Event, Item, Limits, ParseError, Parser, encode_event};

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
