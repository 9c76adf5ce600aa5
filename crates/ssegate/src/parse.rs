//! `ssegate parse`: prints what an SSE stream contains, one JSON object per
//! line.
//!
//! ```text
//! curl -N https://example.com/stream | ssegate parse
//! ssegate parse --chunk-size 1 crates/sse-parser/testdata/market.sse
//! ```
//!
//! Each item is printed (and flushed) as soon as the bytes that complete it
//! have been read, so a live stream shows events as they arrive:
//!
//! - `{"kind":"event","type":"...","data":"...","id":"..."}` (`id` is the
//!   effective last event ID),
//! - `{"kind":"comment","text":"..."}`,
//! - `{"kind":"retry","ms":N}`,
//! - `{"kind":"error","message":"..."}` when a limit is exceeded; the exit
//!   status is then 1.
//!
//! A stream that ends in the middle of an event is reported on stderr (the
//! specification discards that event).

use std::fs::File;
use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use sse_parser::{Item, Limits, Parser};

/// Prints the items of an SSE stream as JSON lines.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The stream to read; standard input when absent or `-`.
    file: Option<PathBuf>,

    /// Feed the parser at most this many bytes at a time (default: whatever
    /// each read returns, up to 64 KiB).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16 * 1024 * 1024))]
    chunk_size: Option<u32>,

    /// The longest line accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = sse_parser::DEFAULT_MAX_LINE_LEN)]
    max_line_len: usize,

    /// The largest event data accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = sse_parser::DEFAULT_MAX_EVENT_SIZE)]
    max_event_size: usize,
}

/// One output line.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Out<'a> {
    Event {
        #[serde(rename = "type")]
        event_type: &'a str,
        data: &'a str,
        id: &'a str,
    },
    Comment {
        text: &'a str,
    },
    Retry {
        ms: u128,
    },
    Error {
        message: String,
    },
}

pub(crate) fn main(args: Args) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        // A closed pipe (`ssegate parse | head`) is the reader's choice, not a failure.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ssegate parse: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    let mut input: Box<dyn Read> = match &args.file {
        Some(path) if path.as_os_str() != "-" => {
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        _ => Box::new(io::stdin().lock()),
    };
    let limits = Limits::default()
        .max_line_len(args.max_line_len)
        .max_event_size(args.max_event_size);
    let mut parser = Parser::with_limits(limits);
    let mut out = BufWriter::new(io::stdout().lock());
    let read_size = args.chunk_size.map_or(64 * 1024, |n| n as usize);
    let mut buf = vec![0; read_size];

    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(err).context("cannot read the stream"),
        };
        parser.feed_slice(&buf[..n]);
        loop {
            match parser.next_item() {
                Ok(Some(item)) => print(&mut out, &item)?,
                Ok(None) => break,
                Err(err) => {
                    write_json(
                        &mut out,
                        &Out::Error {
                            message: err.to_string(),
                        },
                    )?;
                    out.flush()?;
                    return Ok(ExitCode::from(1));
                }
            }
        }
        // Show what this read completed now: the stream may be live.
        out.flush()?;
    }
    if parser.has_partial() {
        eprintln!("ssegate parse: the stream ended in the middle of an event; it was discarded");
    }
    Ok(ExitCode::SUCCESS)
}

fn print(out: &mut impl Write, item: &Item) -> Result<()> {
    let line = match item {
        Item::Event(event) => Out::Event {
            event_type: &event.event_type,
            data: &event.data,
            id: &event.id,
        },
        Item::Comment(text) => Out::Comment { text },
        Item::Retry(delay) => Out::Retry {
            ms: delay.as_millis(),
        },
    };
    write_json(out, &line)
}

fn write_json(out: &mut impl Write, line: &Out<'_>) -> Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
    Ok(())
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(ErrorKind::BrokenPipe)
    })
}
