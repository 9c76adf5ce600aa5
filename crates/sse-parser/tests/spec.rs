//! Data-driven tests of the WHATWG "interpreting an event stream" rules. Every
//! case is also fed split at every byte position and in 1-, 2- and 3-byte
//! chunks (see `common::check`), and must give the same items each time.

mod common;

use bytes::Bytes;
use common::{check, check_with, render};
use sse_parser::{Item, Limits, ParseError, Parser};

// ---------------------------------------------------------------- the BOM

#[test]
fn bom_one_leading_is_stripped() {
    check(
        "\u{FEFF}data: a\n\n",
        r#"event type="message" data="a" id="""#,
    );
}

#[test]
fn bom_second_is_kept_as_part_of_the_field_name() {
    // The second U+FEFF makes the field name "\u{FEFF}data": unknown, ignored.
    check(
        "\u{FEFF}\u{FEFF}data: a\n\ndata: b\n\n",
        r#"event type="message" data="b" id="""#,
    );
}

#[test]
fn bom_not_at_start_is_data() {
    check(
        "data: \u{FEFF}x\n\n",
        r#"event type="message" data="\u{feff}x" id="""#,
    );
}

#[test]
fn bom_partial_prefix_is_not_stripped() {
    // EF BB followed by 'd' is no BOM: the bytes decode to U+FFFD and stay in
    // the first line, whose field name is then unknown.
    check(
        b"\xEF\xBBdata: a\n\ndata: b\n\n",
        r#"event type="message" data="b" id="""#,
    );
    check(
        b"\xEF\ndata: b\n\n",
        r#"event type="message" data="b" id="""#,
    );
}

#[test]
fn bom_alone_yields_nothing() {
    check(b"\xEF\xBB\xBF", "");
}

// ---------------------------------------------------------- line endings

#[test]
fn line_endings_lf_crlf_cr() {
    let one = r#"event type="message" data="a" id="""#;
    check("data: a\n\n", one);
    check("data: a\r\n\r\n", one);
    check("data: a\r\r", one);
    check("data: a\r\n\n", one);
    check("data: a\n\r", one);
}

#[test]
fn line_endings_mixed_in_one_event() {
    check(
        "data: a\rdata: b\r\ndata: c\ndata: d\r\n\r\n",
        r#"event type="message" data="a\nb\nc\nd" id="""#,
    );
}

#[test]
fn crlf_is_one_line_end_not_two() {
    // Were CRLF two line ends, the CR-LF after "a" would dispatch "a" alone.
    check(
        "data: a\r\ndata: b\r\n\r\n",
        r#"event type="message" data="a\nb" id="""#,
    );
}

#[test]
fn lf_cr_is_two_line_ends() {
    check(
        "data: a\n\rdata: b\n\n",
        r#"
        event type="message" data="a" id=""
        event type="message" data="b" id=""
    "#,
    );
}

// ----------------------------------------------------------- field parsing

#[test]
fn one_leading_space_is_stripped() {
    check("data:a\n\n", r#"event type="message" data="a" id="""#);
    check("data: a\n\n", r#"event type="message" data="a" id="""#);
    check("data:  a\n\n", r#"event type="message" data=" a" id="""#);
    check("data:\ta\n\n", r#"event type="message" data="\ta" id="""#);
}

#[test]
fn split_at_first_colon() {
    check(
        "data: a:b: c\n\n",
        r#"event type="message" data="a:b: c" id="""#,
    );
}

#[test]
fn field_without_colon_has_empty_value() {
    check("data\n\n", r#"event type="message" data="" id="""#);
    check("data\ndata\n\n", r#"event type="message" data="\n" id="""#);
}

#[test]
fn field_names_are_exact_and_case_sensitive() {
    for line in [
        "Data: x", "DATA: x", "data : x", "datax: x", " data: x", "dat: x", "datadata",
    ] {
        check(format!("{line}\n\n"), "");
    }
}

#[test]
fn unknown_fields_are_ignored() {
    check(
        "foo: bar\nbaz\ndata: a\nx-custom:1\n\n",
        r#"event type="message" data="a" id="""#,
    );
}

#[test]
fn comments_are_yielded_when_their_line_ends() {
    check(": hello\n", r#"comment " hello""#);
    check(":\n", r#"comment """#);
    check("::x\n", r#"comment ":x""#);
    check(
        "data: a\n: in the middle\ndata: b\n\n",
        r#"
        comment " in the middle"
        event type="message" data="a\nb" id=""
        "#,
    );
}

// ------------------------------------------------------------------ data

#[test]
fn data_lines_join_with_lf_without_trailing_lf() {
    check(
        "data: a\ndata: b\ndata: c\n\n",
        r#"event type="message" data="a\nb\nc" id="""#,
    );
    check(
        "data: a\ndata:\n\n",
        r#"event type="message" data="a\n" id="""#,
    );
    check(
        "data:\ndata: a\n\n",
        r#"event type="message" data="\na" id="""#,
    );
}

#[test]
fn empty_data_field_dispatches_an_empty_event() {
    check("data:\n\n", r#"event type="message" data="" id="""#);
}

#[test]
fn no_data_dispatches_nothing() {
    check("\n\n\n", "");
    check("event: foo\n\n", "");
    check("id: 1\n\n", "");
    check(": c\n\n", r#"comment " c""#);
}

#[test]
fn several_events_in_one_chunk() {
    check(
        "data: a\n\ndata: b\n\n",
        r#"
        event type="message" data="a" id=""
        event type="message" data="b" id=""
    "#,
    );
}

#[test]
fn hundred_events_in_one_chunk() {
    let input: String = (0..100)
        .map(|i| format!("id: {i}\ndata: {i}\n\n"))
        .collect();
    let expect: String = (0..100)
        .map(|i| format!("event type=\"message\" data=\"{i}\" id=\"{i}\"\n"))
        .collect();
    // Only whole and a few chunkings here: 2 x 1,300 split points x 100 events
    // is slow for no extra coverage.
    let got = common::run(Limits::default(), [input.as_bytes()], false);
    assert_eq!(got.join("\n") + "\n", expect);
    for size in [1, 7, 64] {
        let got = common::run(Limits::default(), input.as_bytes().chunks(size), true);
        assert_eq!(got.join("\n") + "\n", expect);
    }
}

// ------------------------------------------------------------ event type

#[test]
fn event_type_defaults_to_message_and_resets_after_blank_line() {
    check(
        "event: quote\ndata: a\n\ndata: b\n\n",
        r#"
        event type="quote" data="a" id=""
        event type="message" data="b" id=""
    "#,
    );
    // Reset even when the block dispatched nothing.
    check(
        "event: quote\n\ndata: b\n\n",
        r#"event type="message" data="b" id="""#,
    );
}

#[test]
fn event_type_last_one_wins_and_empty_means_message() {
    check(
        "event: a\nevent: b\ndata: x\n\n",
        r#"event type="b" data="x" id="""#,
    );
    check(
        "event: a\nevent:\ndata: x\n\n",
        r#"event type="message" data="x" id="""#,
    );
    check(
        "event: a b:c\ndata: x\n\n",
        r#"event type="a b:c" data="x" id="""#,
    );
}

#[test]
fn many_event_types_alternate() {
    // More distinct types than the intern cache holds.
    let input: String = (0..20)
        .map(|i| format!("event: t{}\ndata: x\n\n", i % 10))
        .collect();
    let expect: String = (0..20)
        .map(|i| format!("event type=\"t{}\" data=\"x\" id=\"\"\n", i % 10))
        .collect();
    check(input, &expect);
}

// -------------------------------------------------------------------- id

#[test]
fn id_persists_across_events() {
    check(
        "id: 1\ndata: a\n\ndata: b\n\n",
        r#"
        event type="message" data="a" id="1"
        event type="message" data="b" id="1"
    "#,
    );
}

#[test]
fn empty_id_resets_the_last_event_id() {
    for reset in ["id", "id:", "id: "] {
        check(
            format!("id: 1\ndata: a\n\n{reset}\ndata: b\n\n"),
            r#"
            event type="message" data="a" id="1"
            event type="message" data="b" id=""
        "#,
        );
    }
}

#[test]
fn id_with_nul_is_ignored() {
    check(
        "id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n",
        r#"
        event type="message" data="a" id="1"
        event type="message" data="b" id="1"
    "#,
    );
}

#[test]
fn id_without_data_is_committed_by_the_blank_line() {
    check(
        "id: 5\n\ndata: a\n\n",
        r#"event type="message" data="a" id="5""#,
    );
}

#[test]
fn id_anywhere_in_the_block_last_wins() {
    check(
        "data: a\nid: 3\n\n",
        r#"event type="message" data="a" id="3""#,
    );
    check(
        "id: 1\nid: 2\ndata: a\n\n",
        r#"event type="message" data="a" id="2""#,
    );
    check(
        "id:  x\ndata: a\n\n",
        r#"event type="message" data="a" id=" x""#,
    );
}

// ----------------------------------------------------------------- retry

#[test]
fn retry_with_ascii_digits_is_applied_at_once() {
    check("retry: 1000\n", "retry 1000");
    check("retry:5\n", "retry 5");
    check("retry: 0\n", "retry 0");
    check(
        "data: a\nretry: 7\n\n",
        r#"
        retry 7
        event type="message" data="a" id=""
    "#,
    );
}

#[test]
fn retry_other_values_are_ignored() {
    for value in ["-1", "10a", "1.5", "", " 5", "+5", "1e3", "５"] {
        check(format!("retry: {value}\n"), "");
    }
}

#[test]
fn retry_huge_saturates() {
    check(
        "retry: 99999999999999999999999999\n",
        &format!("retry {}", u64::MAX),
    );
}

// ------------------------------------------------------------------ UTF-8

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    check(
        b"data: \xFF\n\n",
        r#"event type="message" data="\u{fffd}" id="""#,
    );
    check(
        b"data: a\xE2\x82b\n\n",
        r#"event type="message" data="a\u{fffd}b" id="""#,
    );
    check(b":\xC3\n", r#"comment "\u{fffd}""#);
    check(
        b"event: \xFF\ndata: a\n\n",
        r#"event type="\u{fffd}" data="a" id="""#,
    );
    check(
        b"id: \xFF\ndata: a\n\n",
        r#"event type="message" data="a" id="\u{fffd}""#,
    );
    check(b"d\xFFata: x\n\n", "");
}

#[test]
fn multibyte_utf8_split_across_chunks_is_kept() {
    check(
        "data: caf\u{e9} \u{1F600} \u{20AC}\n\n",
        "event type=\"message\" data=\"caf\u{e9} \u{1F600} \u{20AC}\" id=\"\"",
    );
}

#[test]
fn invalid_utf8_never_ends_the_stream() {
    check(
        b"data: \xFF\xFE\n\ndata: ok\n\n",
        r#"
        event type="message" data="\u{fffd}\u{fffd}" id=""
        event type="message" data="ok" id=""
    "#,
    );
}

// ---------------------------------------------------------- end of input

#[test]
fn incomplete_event_is_not_dispatched() {
    check("data: a", "");
    check("data: a\n", "");
    check("data: a\r", "");
}

// ----------------------------------------------------------------- limits

#[test]
fn line_limit_is_exact_and_chunking_independent() {
    let limits = Limits::default().max_line_len(8);
    check_with(
        limits,
        "data: 12\n\n",
        r#"event type="message" data="12" id="""#,
    );
    check_with(
        limits,
        "data: 123\n\n",
        "error SSE line longer than the limit of 8 bytes",
    );
    // The items before the long line are yielded; the endless line is refused
    // before its end arrives.
    check_with(
        limits,
        "data: 1\n\n:23456789",
        r#"
        event type="message" data="1" id=""
        error SSE line longer than the limit of 8 bytes
    "#,
    );
    // A BOM does not count; a partial BOM does.
    check_with(
        limits,
        "\u{FEFF}data: 12\n\n",
        r#"event type="message" data="12" id="""#,
    );
    check_with(
        limits,
        b"\xEF\xBBdata: 1\n\n",
        "error SSE line longer than the limit of 8 bytes",
    );
}

#[test]
fn event_limit_counts_joined_data() {
    let limits = Limits::default().max_event_size(5);
    check_with(
        limits,
        "data: abc\ndata: d\n\n",
        r#"event type="message" data="abc\nd" id="""#,
    );
    check_with(
        limits,
        "data: abc\ndata: de\n\n",
        "error SSE event data larger than the limit of 5 bytes",
    );
    // Replacement characters count at their UTF-8 size (3 bytes each).
    check_with(
        limits,
        b"data: \xFF\xFF\n\n",
        "error SSE event data larger than the limit of 5 bytes",
    );
}

#[test]
fn error_is_sticky_until_reset_then_parsing_works_again() {
    let mut parser = Parser::with_limits(Limits::default().max_line_len(4));
    parser.feed_slice(b"data: too long\n\n");
    let err = ParseError::LineTooLong { limit: 4 };
    assert_eq!(parser.next_item(), Err(err));
    parser.feed_slice(b"id\n\n");
    assert_eq!(parser.next_item(), Err(err));
    assert_eq!(parser.error(), Some(err));
    assert_eq!(
        parser.queued_bytes(),
        0,
        "input fed after a failure is dropped"
    );

    parser.reset();
    parser.feed_slice(b"data\n\n");
    let item = parser.next_item().unwrap().unwrap();
    assert_eq!(render(&item), r#"event type="message" data="" id="""#);
}

#[test]
fn buffered_memory_is_bounded_by_the_limit_for_an_endless_line() {
    let limit = 64 * 1024;
    let mut parser =
        Parser::with_limits(Limits::default().max_line_len(limit).max_event_size(limit));
    let chunk = Bytes::from(vec![b'x'; 4096]);
    let mut fed = 0;
    let err = loop {
        parser.feed(chunk.clone());
        fed += chunk.len();
        match parser.next_item() {
            Ok(None) => assert!(parser.buffered_bytes() <= limit),
            Ok(Some(item)) => panic!("unexpected {item:?}"),
            Err(err) => break err,
        }
        assert!(fed <= limit + chunk.len(), "the limit was never enforced");
    };
    assert_eq!(err, ParseError::LineTooLong { limit });
    assert_eq!(parser.buffered_bytes(), 0);
}

// ------------------------------------------------ connections and the id

#[test]
fn partial_block_never_commits_its_id() {
    let mut parser = Parser::new();
    parser.feed_slice(b"id: 1\ndata: a\n\nid: 2\ndata: half");
    assert!(matches!(parser.next_item(), Ok(Some(Item::Event(_)))));
    assert_eq!(parser.next_item(), Ok(None));
    assert_eq!(parser.last_event_id(), "1");
    assert!(parser.has_partial());

    // The connection broke; the next one starts with a reset.
    parser.reset();
    assert!(!parser.has_partial());
    assert_eq!(parser.last_event_id(), "1");
    parser.feed_slice(b"data: b\n\n");
    let Some(Item::Event(event)) = parser.next_item().unwrap() else {
        panic!()
    };
    assert_eq!(
        (&*event.data, &*event.id),
        ("b", "1"),
        "the half block's data and id are gone"
    );
}

#[test]
fn reset_expects_a_bom_again_and_forgets_a_pending_crlf() {
    let mut parser = Parser::new();
    parser.feed_slice(b"\xEF\xBB\xBFdata: a\n\ndata: b\r");
    assert!(matches!(parser.next_item(), Ok(Some(Item::Event(_)))));
    assert_eq!(parser.next_item(), Ok(None));
    parser.reset();
    parser.feed_slice(b"\xEF\xBB\xBF\ndata: c\n\n");
    let Some(Item::Event(event)) = parser.next_item().unwrap() else {
        panic!()
    };
    assert_eq!(&*event.data, "c");
}

#[test]
fn last_event_id_carried_in_from_outside() {
    let mut parser = Parser::new();
    parser.set_last_event_id("41".into());
    parser.feed_slice(b"data: a\n\n");
    let Some(Item::Event(event)) = parser.next_item().unwrap() else {
        panic!()
    };
    assert_eq!(&*event.id, "41");
}

#[test]
fn cr_at_the_end_of_a_chunk_dispatches_at_once() {
    let mut parser = Parser::new();
    parser.feed_slice(b"data: a\r\r");
    assert!(
        matches!(parser.next_item(), Ok(Some(Item::Event(_)))),
        "the event must not wait for the next byte"
    );
    // The LF completing the CRLF is not a blank line of its own.
    parser.feed_slice(b"\ndata: b\n\n");
    let Some(Item::Event(event)) = parser.next_item().unwrap() else {
        panic!()
    };
    assert_eq!(&*event.data, "b");
    assert_eq!(parser.next_item(), Ok(None));
}

#[test]
fn items_from_one_chunk_come_in_order_across_feeds() {
    // Feeding twice before draining queues the second chunk behind the first.
    let mut parser = Parser::new();
    parser.feed_slice(b"data: a\n\n: c\n");
    parser.feed(Bytes::from_static(b"retry: 3\n"));
    let got: Vec<String> = std::iter::from_fn(|| parser.next_item().unwrap())
        .map(|i| render(&i))
        .collect();
    assert_eq!(
        got,
        [
            r#"event type="message" data="a" id="""#,
            r#"comment " c""#,
            "retry 3"
        ]
    );
}

#[test]
fn single_line_event_in_one_chunk_is_not_copied() {
    // Longer than the 30 bytes `Utf8Bytes` stores inline.
    let chunk = Bytes::from_static(b"data: zero-copy, a view of the input chunk\n\n");
    let mut parser = Parser::new();
    parser.feed(chunk.clone());
    let Some(Item::Event(event)) = parser.next_item().unwrap() else {
        panic!()
    };
    assert_eq!(event.data.as_bytes().as_ptr(), chunk[6..].as_ptr());
    assert_eq!(parser.stats().bytes_copied, 0);
}
