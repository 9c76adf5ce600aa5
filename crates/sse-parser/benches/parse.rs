//! Throughput of `sse-parser` against the fastest SSE parsers on crates.io, in
//! one run, on the same `Bytes` chunks. `cargo xtask bench` runs this and
//! prints the ratios; the crate README holds the last table.
//!
//! Every parser is driven the cheapest way its API allows: ours and
//! `sse-core` through their sans-IO decoders, `sse-stream` and
//! `eventsource-stream` (which only offer a `Stream`) polled with a no-op
//! waker over an always-ready stream of the chunks. Each parser's event count
//! is checked before timing, so a parser that stops early cannot look fast.
//!
//! Set `SSE_BENCH_QUICK=1` for a smoke run on small inputs.

use std::convert::Infallible;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures_util::stream::{self, Stream};

const KIB: usize = 1024;

/// The market-data event of input (a): about 95 bytes.
fn market(events: usize, line_end: &str) -> Bytes {
    let mut out = String::with_capacity(events * 100);
    for i in 0..events {
        let t = 1_700_000_000_123u64 + i as u64;
        let (b, a) = (18_912 + i % 97, 18_914 + i % 97);
        out.push_str(&format!(
            "id: {}{n}event: quote{n}data: {{\"s\":\"AAPL\",\"b\":{}.{:02},\"a\":{}.{:02},\"t\":{t}}}{n}{n}",
            100_000 + i,
            b / 100,
            b % 100,
            a / 100,
            a % 100,
            n = line_end
        ));
    }
    Bytes::from(out)
}

/// Input (b): events of one 64 KiB data line.
fn big_lines(events: usize) -> Bytes {
    let mut out = Vec::with_capacity(events * (64 * KIB + 16));
    for i in 0..events {
        out.extend_from_slice(b"data: ");
        let start = out.len();
        out.extend((0..64 * KIB).map(|j| b"abcdefghijklmnopqrstuvwxyz"[(i + j) % 26]));
        debug_assert_eq!(out.len() - start, 64 * KIB);
        out.extend_from_slice(b"\n\n");
    }
    Bytes::from(out)
}

/// Input (c): events of 20 `data:` lines.
fn multi_line(events: usize) -> Bytes {
    let mut out = String::new();
    for i in 0..events {
        for j in 0..20 {
            out.push_str(&format!(
                "data: {{\"s\":\"MSFT\",\"level\":{j},\"px\":{}.{:02},\"qty\":{}}}\n",
                400 + j,
                i % 100,
                100 * (j + 1)
            ));
        }
        out.push('\n');
    }
    Bytes::from(out)
}

/// Chunks cut from one shared buffer, as an HTTP client hands them over.
fn chunks(input: &Bytes, size: usize) -> Vec<Bytes> {
    (0..input.len())
        .step_by(size)
        .map(|at| input.slice(at..input.len().min(at + size)))
        .collect()
}

fn ours(chunks: &[Bytes]) -> usize {
    let mut parser = sse_parser::Parser::new();
    let mut events = 0;
    for chunk in chunks {
        parser.feed(chunk.clone());
        while let Some(item) = parser.next_item().expect("within limits") {
            if let sse_parser::Item::Event(event) = item {
                std::hint::black_box(&event);
                events += 1;
            }
        }
    }
    events
}

fn sse_core(chunks: &[Bytes]) -> usize {
    // The same 16 MiB limit as ours (its default is 512 KiB).
    let mut decoder =
        sse_core::SseDecoder::with_limit(NonZeroUsize::new(16 * KIB * KIB).expect("non-zero"));
    let mut events = 0;
    for chunk in chunks {
        let mut buf = chunk.clone();
        while let Some(item) = decoder.next(&mut buf) {
            if let sse_core::SseEvent::Message(event) = item.expect("within limits") {
                std::hint::black_box(&event);
                events += 1;
            }
        }
    }
    events
}

/// Polls an always-ready stream to its end without a runtime.
fn drain<S: Stream>(stream: S, mut each: impl FnMut(S::Item)) {
    let mut stream = std::pin::pin!(stream);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match Pin::as_mut(&mut stream).poll_next(&mut cx) {
            Poll::Ready(Some(item)) => each(item),
            Poll::Ready(None) => return,
            Poll::Pending => unreachable!("the input stream is always ready"),
        }
    }
}

fn byte_stream(chunks: &[Bytes]) -> impl Stream<Item = Result<Bytes, Infallible>> + '_ {
    stream::iter(chunks.iter().cloned().map(Ok))
}

fn sse_stream(chunks: &[Bytes]) -> usize {
    let mut events = 0;
    drain(
        sse_stream::SseByteStream::new(byte_stream(chunks)),
        |item| {
            let sse = item.expect("valid input");
            // It also yields blocks without data; count the events a browser would.
            if sse.data.is_some() {
                std::hint::black_box(&sse);
                events += 1;
            }
        },
    );
    events
}

fn eventsource_stream(chunks: &[Bytes]) -> usize {
    use eventsource_stream::Eventsource;
    let mut events = 0;
    drain(byte_stream(chunks).eventsource(), |item| {
        std::hint::black_box(&item.expect("valid input"));
        events += 1;
    });
    events
}

type Peer = (&'static str, fn(&[Bytes]) -> usize);

const PEERS: [Peer; 4] = [
    ("sse-parser", ours),
    ("sse-stream", sse_stream),
    ("sse-core", sse_core),
    ("eventsource-stream", eventsource_stream),
];

fn compare(c: &mut Criterion, name: &str, input: &Bytes, chunk_size: usize, events: usize) {
    let chunks = chunks(input, chunk_size);
    let label = match chunk_size {
        1 => "1B".to_string(),
        n => format!("{}KiB", n / KIB),
    };
    let mut group = c.benchmark_group(format!("{name}/{label}"));
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sampling_mode(SamplingMode::Flat);
    for (peer, parse) in PEERS {
        assert_eq!(parse(&chunks), events, "{peer} on {name}/{label}");
        group.bench_function(peer, |b| b.iter(|| parse(std::hint::black_box(&chunks))));
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let quick = std::env::var_os("SSE_BENCH_QUICK").is_some();
    let scale = |full: usize, small: usize| if quick { small } else { full };

    let n = scale(1_000_000, 10_000);
    let a = market(n, "\n");
    compare(c, "a_market", &a, KIB, n);
    compare(c, "a_market", &a, 16 * KIB, n);
    let n1 = scale(20_000, 1_000);
    compare(c, "a_market", &market(n1, "\n"), 1, n1);

    let nb = scale(256, 8);
    let b = big_lines(nb);
    compare(c, "b_64KiB_lines", &b, KIB, nb);
    compare(c, "b_64KiB_lines", &b, 16 * KIB, nb);
    // One event only: eventsource-stream re-parses its unfinished line on
    // every chunk, so 1-byte chunks of a 64 KiB line cost it ~2^31 steps.
    compare(c, "b_64KiB_lines", &big_lines(1), 1, 1);

    let nc = scale(50_000, 1_000);
    let cc = multi_line(nc);
    compare(c, "c_20_data_lines", &cc, KIB, nc);
    compare(c, "c_20_data_lines", &cc, 16 * KIB, nc);

    let d = market(n, "\r\n");
    compare(c, "d_market_crlf", &d, KIB, n);
    compare(c, "d_market_crlf", &d, 16 * KIB, n);
}

criterion_group! {
    name = parse;
    config = Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(parse);
