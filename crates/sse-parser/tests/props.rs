//! Property tests: chunking never changes what the parser yields, and the
//! encoder's output parses back to what was encoded.

mod common;

use bytes::Bytes;
use proptest::prelude::*;
use sse_parser::{Event, Item, Limits, Parser, encode_comment, encode_event, encode_retry};

/// Input built from the pieces that matter to the grammar, so that random
/// streams hit real fields, line endings, BOMs and invalid UTF-8 often.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data".to_vec()),
        Just(b"data: ".to_vec()),
        Just(b"event:".to_vec()),
        Just(b"id: ".to_vec()),
        Just(b"retry: ".to_vec()),
        Just(b":".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\xEF\xBB".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"\xFF".to_vec()),
        Just("\u{e9}\u{1F600}".as_bytes().to_vec()),
        "[0-9]{1,3}".prop_map(String::into_bytes),
        "[a-z]{1,6}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 1..4),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn split(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut at = 0;
    for cut in cuts {
        chunks.push(input[at..cut].to_vec());
        at = cut;
    }
    chunks.push(input[at..].to_vec());
    chunks
}

fn parse_all(wire: &[u8]) -> Vec<Item> {
    let mut parser = Parser::new();
    parser.feed(Bytes::copy_from_slice(wire));
    std::iter::from_fn(|| parser.next_item().expect("within limits")).collect()
}

/// Any text, with line breaks of every kind likely.
fn text() -> impl Strategy<Value = String> {
    "(\\PC|\r|\n|\r\n){0,24}"
}

/// A value allowed in an id or event type: no CR, LF or NUL.
fn field_value() -> impl Strategy<Value = String> {
    "[^\r\n\0]{0,12}"
}

fn normalize_breaks(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

/// Long streams (beyond the parser's 4 KiB ASCII windows) of realistic lines,
/// some with non-ASCII or invalid UTF-8 in them.
fn long_stream() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        4 => "[a-z0-9 ]{0,80}".prop_map(|v| format!("data: {v}\n").into_bytes()),
        1 => "[a-z0-9]{0,40}".prop_map(|v| format!("id: {v}\n").into_bytes()),
        1 => Just(b"\n".to_vec()),
        1 => Just(b"data: caf\xC3\xA9 \xF0\x9F\x98\x80\n".to_vec()),
        1 => Just(b"data: bad \xFF\xC3 bytes\n".to_vec()),
        1 => Just(b"id: \xE2\x82\n".to_vec()),
        1 => Just(b": \xFE comment\n".to_vec()),
    ];
    proptest::collection::vec(line, 100..400).prop_map(|lines| lines.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn long_streams_across_ascii_windows(input in long_stream(), size in 1usize..20_000) {
        let whole = common::run(Limits::default(), [&input[..]], false);
        let chunked = common::run(Limits::default(), input.chunks(size), false);
        prop_assert_eq!(&chunked, &whole);
        let bytewise = common::run(Limits::default(), input.chunks(1), true);
        prop_assert_eq!(&bytewise, &whole);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_yields_the_same_items(
        input in stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        tight in any::<bool>(),
    ) {
        // Tight limits make the error paths part of the property too.
        let limits = if tight {
            Limits::default().max_line_len(12).max_event_size(16)
        } else {
            Limits::default()
        };
        let whole = common::run(limits, [&input[..]], false);
        let chunks = split(&input, &cuts);
        let chunked = common::run(limits, chunks.iter().map(Vec::as_slice), true);
        prop_assert_eq!(&chunked, &whole);
        let bytewise = common::run(limits, input.chunks(1), false);
        prop_assert_eq!(&bytewise, &whole);
    }

    #[test]
    fn stats_show_linear_work(input in stream(), cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let mut parser = Parser::new();
        for chunk in split(&input, &cuts) {
            parser.feed_slice(&chunk);
            while parser.next_item().unwrap().is_some() {}
        }
        let stats = parser.stats();
        prop_assert_eq!(stats.bytes_fed, input.len() as u64);
        prop_assert_eq!(stats.bytes_scanned, stats.bytes_fed);
        // At most twice (a partial line, then joined into a multi-line event),
        // and a replaced invalid byte becomes the three bytes of U+FFFD.
        prop_assert!(stats.bytes_copied <= 6 * stats.bytes_fed);
    }

    #[test]
    fn encoded_event_parses_back(
        data in text(),
        event_type in field_value(),
        id in field_value(),
    ) {
        let event = Event::new(data.as_str()).with_type(event_type.as_str()).with_id(id.as_str());
        let wire = encode_event(&event).unwrap();
        let expected_type = if event_type.is_empty() { "message" } else { event_type.as_str() };
        let expected = Event::new(normalize_breaks(&data)).with_type(expected_type).with_id(id.as_str());
        prop_assert_eq!(parse_all(&wire), vec![Item::Event(expected)]);
    }

    #[test]
    fn encoded_sequence_parses_back_with_ids_carried(
        events in proptest::collection::vec((text(), field_value()), 0..8),
        comment in text(),
        retry_ms in any::<u32>(),
    ) {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        let mut last_id = String::new();
        wire.extend_from_slice(&encode_comment(&comment));
        for line in normalize_breaks(&comment).split('\n') {
            expected.push(Item::Comment(line.into()));
        }
        wire.extend_from_slice(&encode_retry(std::time::Duration::from_millis(retry_ms.into())));
        expected.push(Item::Retry(std::time::Duration::from_millis(retry_ms.into())));
        for (data, id) in &events {
            wire.extend_from_slice(&encode_event(&Event::new(data.as_str()).with_id(id.as_str())).unwrap());
            // The encoder is stateless: an empty id writes no `id:` line, so the
            // receiver keeps the last one.
            if !id.is_empty() {
                last_id.clone_from(id);
            }
            expected.push(Item::Event(Event::new(normalize_breaks(data)).with_id(last_id.as_str())));
        }
        prop_assert_eq!(parse_all(&wire), expected);
    }
}
