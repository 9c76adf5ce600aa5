//! Linear time: each byte is scanned once and copied a bounded number of times,
//! however small the chunks. A parser that re-scanned its unfinished line on
//! every chunk would scan about 32 TiB here instead of 8 MiB.

use bytes::Bytes;
use sse_parser::{Item, Parser};

const MIB: usize = 1024 * 1024;

/// Feeds `input` one byte per chunk and returns the parser and its items.
fn feed_bytewise(input: &Bytes) -> (Parser, Vec<Item>) {
    let mut parser = Parser::new();
    let mut items = Vec::new();
    for i in 0..input.len() {
        parser.feed(input.slice(i..=i));
        while let Some(item) = parser.next_item().expect("within limits") {
            items.push(item);
        }
    }
    (parser, items)
}

#[test]
fn eight_mib_line_in_one_byte_chunks_is_scanned_once() {
    let mut input = b"data: ".to_vec();
    input.resize(8 * MIB, b'x');
    input.extend_from_slice(b"\n\n");
    let input = Bytes::from(input);

    let (parser, items) = feed_bytewise(&input);

    let [Item::Event(event)] = &items[..] else {
        panic!("one event expected, got {}", items.len())
    };
    assert_eq!(event.data.len(), 8 * MIB - 6);
    let stats = parser.stats();
    assert_eq!(stats.bytes_fed, input.len() as u64);
    assert_eq!(
        stats.bytes_scanned, stats.bytes_fed,
        "every byte scanned exactly once"
    );
    assert!(
        stats.bytes_copied <= stats.bytes_fed,
        "copied at most once: {stats:?}"
    );
}

#[test]
fn eight_mib_event_of_many_lines_in_one_byte_chunks_is_linear() {
    let line = format!("data: {}\n", "y".repeat(64 * 1024 - 7));
    let input = Bytes::from(format!("{}\n", line.repeat(128)));

    let (parser, items) = feed_bytewise(&input);

    let [Item::Event(event)] = &items[..] else {
        panic!("one event expected")
    };
    assert_eq!(event.data.len(), 128 * (64 * 1024 - 7) + 127);
    let stats = parser.stats();
    assert_eq!(stats.bytes_scanned, stats.bytes_fed);
    assert!(
        stats.bytes_copied <= 2 * stats.bytes_fed,
        "copied at most twice: {stats:?}"
    );
}
