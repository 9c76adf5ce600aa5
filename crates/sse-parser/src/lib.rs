//! An incremental, WHATWG-exact Server-Sent Events parser and an
//! injection-safe encoder. Sans-IO: no sockets, no runtime, no clock.
//!
//! # Parsing
//!
//! [`Parser`] implements the HTML standard's "interpreting an event stream"
//! for the body of one `text/event-stream` response. Bytes go in with
//! [`Parser::feed`] (a [`Bytes`](bytes::Bytes), without copying) or
//! [`Parser::feed_slice`]; items come out of [`Parser::next_item`]:
//!
//! ```
//! use sse_parser::{Item, Parser};
//!
//! let mut parser = Parser::new();
//! let mut items = Vec::new();
//! for chunk in [&b"id: 1\nevent: quo"[..], b"te\ndata: {\"b\":189.12}\n", b"\n: ping\n"] {
//!     parser.feed_slice(chunk);
//!     // The rule: after every feed, drain until `Ok(None)`.
//!     while let Some(item) = parser.next_item()? {
//!         items.push(item);
//!     }
//! }
//! let Item::Event(event) = &items[0] else { panic!() };
//! assert_eq!((&*event.event_type, &*event.data, &*event.id), ("quote", "{\"b\":189.12}", "1"));
//! assert_eq!(items[1], Item::Comment(" ping".into()));
//! # Ok::<(), sse_parser::ParseError>(())
//! ```
//!
//! ## The contract
//!
//! - **Total and chunking-independent.** Any split of the same bytes into
//!   chunks yields the same items, and the same error if a limit is broken.
//!   Malformed input is never an error: it is handled as the specification
//!   says (unknown fields ignored, invalid UTF-8 replaced by U+FFFD, ...).
//! - **Exact.** One leading U+FEFF is stripped, also when split across chunks;
//!   LF, CRLF and CR end lines (a CRLF split across chunks is one line end, and
//!   a CR at the end of a chunk ends its line at once); a line splits at its
//!   first colon and loses one leading space; field names are case-sensitive;
//!   `data` lines join with LF; an event with no `data` is not dispatched; the
//!   type defaults to `message`; an `id` with NUL is ignored; an empty `id`
//!   resets the last event ID; `retry` takes ASCII digits only.
//! - **Last event ID.** [`Event::id`] is the effective last event ID. An `id`
//!   is committed only by the blank line that ends its block, so a block cut
//!   off by the end of a connection never leaks its id into
//!   [`Parser::last_event_id`]. [`Parser::reset`] starts the next connection
//!   and keeps the committed id.
//! - **Bounded.** [`Limits`] caps the line length and the event size (16 MiB
//!   each by default). Crossing one is a [`ParseError`], detected before the
//!   bytes are buffered, so the partial line and the event being assembled
//!   never hold more than `max_line_len + max_event_size` bytes (the id and
//!   event type are single lines, each within `max_line_len`). After an error
//!   the parser refuses input until it is reset.
//! - **Linear.** Each input byte is scanned exactly once, however the stream
//!   is chunked, and copied at most twice: into the line buffer when its line
//!   spans chunks, and into the event buffer when its event has several `data`
//!   lines ([`Stats`] counts both). A single-line event that arrives in one
//!   chunk is not copied at all.
//!
//! ## Memory
//!
//! Short strings (up to 30 bytes) are stored inline in [`Utf8Bytes`]. A longer
//! one in an item may be a view into the chunk it came from (an event whose
//! only `data` line arrived in one chunk, a comment). Holding the item keeps
//! that chunk alive; copy the string if you keep it for long. Event types are
//! interned and ids are copied, so the parser itself never pins a chunk once
//! it is parsed.
//!
//! # Encoding
//!
//! [`encode_event`], [`encode_comment`] and [`encode_retry`] produce wire bytes
//! that parse back to what was encoded. Line breaks in data become several
//! `data:` lines; CR, LF or NUL in an id or event type is an [`EncodeError`].
//!
//! ```
//! use sse_parser::{Event, Item, Parser, encode_event};
//!
//! let event = Event::new("line 1\nline 2").with_type("quote").with_id("42");
//! let wire = encode_event(&event)?;
//! assert_eq!(&wire[..], b"event: quote\nid: 42\ndata: line 1\ndata: line 2\n\n");
//!
//! let mut parser = Parser::new();
//! parser.feed(wire);
//! assert_eq!(parser.next_item().unwrap(), Some(Item::Event(event)));
//! # Ok::<(), sse_parser::EncodeError>(())
//! ```

mod encode;
mod parser;
mod utf8;

pub use encode::{EncodeError, encode_comment, encode_event, encode_event_into, encode_retry};
pub use parser::{
    DEFAULT_MAX_EVENT_SIZE, DEFAULT_MAX_LINE_LEN, Event, Item, Limits, ParseError, Parser, Stats,
};
pub use utf8::Utf8Bytes;

// The README's examples are compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
