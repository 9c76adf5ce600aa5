//! Helpers shared by the parser's integration tests: run a parser over a
//! chunking of some input and render what it yields as text.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different subset.

use bytes::Bytes;
use sse_parser::{Item, Limits, Parser};

/// Renders one item on one line, for comparing against expectations.
pub fn render(item: &Item) -> String {
    match item {
        Item::Event(e) => format!(
            "event type={:?} data={:?} id={:?}",
            &*e.event_type, &*e.data, &*e.id
        ),
        Item::Comment(text) => format!("comment {:?}", &**text),
        Item::Retry(d) => format!("retry {}", d.as_millis()),
    }
}

/// Feeds `chunks` in order (as `Bytes`, or through `feed_slice`), draining
/// after every chunk, and renders every item and a final error, if any.
pub fn run<'a>(
    limits: Limits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
    slices: bool,
) -> Vec<String> {
    let mut parser = Parser::with_limits(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        if slices {
            parser.feed_slice(chunk);
        } else {
            parser.feed(Bytes::copy_from_slice(chunk));
        }
        loop {
            match parser.next_item() {
                Ok(Some(item)) => out.push(render(&item)),
                Ok(None) => break,
                Err(err) => {
                    out.push(format!("error {err}"));
                    return out;
                }
            }
            // Buffered memory never exceeds the configured caps.
            assert!(parser.buffered_bytes() <= limits.line_len() + limits.event_size());
        }
    }
    out
}

/// All the chunkings every case is fed in, with a name for failure messages:
/// whole, split at every byte position, and in 1-, 2- and 3-byte chunks.
pub fn chunkings(input: &[u8]) -> Vec<(String, Vec<&[u8]>)> {
    let mut all = vec![("whole".to_string(), vec![input])];
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        all.push((format!("split at {at}"), vec![a, b]));
    }
    for size in 1..=3 {
        all.push((format!("{size}-byte chunks"), input.chunks(size).collect()));
    }
    all
}

/// Runs `input` in every chunking and asserts the same rendering, equal to
/// `expect` (one item per line; surrounding whitespace ignored).
pub fn check_with(limits: Limits, input: impl AsRef<[u8]>, expect: &str) {
    let input = input.as_ref();
    let expect: Vec<String> = expect
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        // `Debug` prints U+FFFD as itself; expectations spell it `\u{fffd}`.
        .map(|l| l.replace("\\u{fffd}", "\u{FFFD}"))
        .collect();
    for (name, chunks) in chunkings(input) {
        for slices in [false, true] {
            let got = run(limits, chunks.iter().copied(), slices);
            assert_eq!(
                got,
                expect,
                "input {:?} fed {name} ({})",
                String::from_utf8_lossy(input),
                if slices { "feed_slice" } else { "feed" }
            );
        }
    }
}

/// [`check_with`] under the default limits.
pub fn check(input: impl AsRef<[u8]>, expect: &str) {
    check_with(Limits::default(), input, expect);
}
