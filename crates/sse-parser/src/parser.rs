//! The incremental parser: the WHATWG algorithm "interpreting an event stream",
//! push-based (feed chunks) and pull-based (take items), scanning each byte once.
//!
//! This file is long because the parser's state, its hot loop
//! (`State::parse_chunk`) and the per-line rules (`process_line`) are read
//! together: the fast path and the line-at-a-time path must agree byte for
//! byte, and the proof that each byte is scanned once spans both.

use std::collections::VecDeque;
use std::fmt;
use std::mem;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::utf8::Utf8Bytes;

/// The default for [`Limits::max_line_len`]: 16 MiB.
///
/// High enough for the conformance suite's 5-14 MB messages; the gateway sets
/// its own, lower limits.
pub const DEFAULT_MAX_LINE_LEN: usize = 16 * 1024 * 1024;

/// The default for [`Limits::max_event_size`]: 16 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// The event type of an event that did not name one.
const MESSAGE: Utf8Bytes = Utf8Bytes::from_static("message");

/// The UTF-8 byte order mark, stripped once at the start of a stream.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// Scratch buffers that grew past this after a huge line or event are released
/// rather than kept for the next one, so one burst does not pin memory forever.
const RETAIN_CAPACITY: usize = 64 * 1024;

/// Ids and event types are copied into slabs of this size, so that a stream of
/// short ids costs no allocation per event (see `State::copy_small`).
const SLAB_CAPACITY: usize = 4096;

/// Chunks up to this size that hold no line end are appended to the partial
/// line as they are fed (see `Parser::feed`).
const EAGER_MAX: usize = 64;

/// How many distinct event types are interned (reused without allocating).
const TYPE_CACHE_LEN: usize = 8;

/// Event types longer than this are never interned.
const TYPE_CACHE_MAX_LEN: usize = 64;

/// Size limits that bound the parser's memory.
///
/// Both limits are checked while input arrives, before anything is buffered, so
/// an endless line or event is rejected once it crosses the limit, not when it
/// ends. Whether a stream breaks a limit never depends on how it was chunked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_line_len: usize,
    max_event_size: usize,
}

impl Limits {
    /// Limits the length of one line, in bytes, without its line ending.
    ///
    /// This bounds every field: `event`, `id`, `retry`, comments and each
    /// `data` line.
    #[must_use]
    pub const fn max_line_len(mut self, bytes: usize) -> Self {
        self.max_line_len = bytes;
        self
    }

    /// Limits the data of one event, in bytes, after its `data` lines are joined
    /// with LF (and after invalid UTF-8 became U+FFFD).
    #[must_use]
    pub const fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// The line length limit.
    pub const fn line_len(&self) -> usize {
        self.max_line_len
    }

    /// The event size limit.
    pub const fn event_size(&self) -> usize {
        self.max_event_size
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line_len: DEFAULT_MAX_LINE_LEN,
            max_event_size: DEFAULT_MAX_EVENT_SIZE,
        }
    }
}

/// A configured limit was exceeded.
///
/// The SSE specification ignores malformed input, so limits are the parser's
/// only errors. After one, the parser refuses input and returns the same error
/// until [`Parser::reset`]; callers drop the connection and start a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// A line grew longer than [`Limits::max_line_len`] before its end arrived.
    LineTooLong {
        /// The limit in force, in bytes.
        limit: usize,
    },
    /// The data of one event grew larger than [`Limits::max_event_size`].
    EventTooLarge {
        /// The limit in force, in bytes.
        limit: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { limit } => {
                write!(f, "SSE line longer than the limit of {limit} bytes")
            }
            Self::EventTooLarge { limit } => {
                write!(f, "SSE event data larger than the limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Event {
    /// The event type: the last `event` field of the block, or `message`.
    pub event_type: Utf8Bytes,
    /// The `data` lines of the block joined with LF, without a trailing LF.
    pub data: Utf8Bytes,
    /// The effective last event ID when the event was dispatched: the last `id`
    /// seen on this stream (also on earlier connections), empty if none or
    /// after an empty `id`.
    pub id: Utf8Bytes,
}

impl Event {
    /// A `message` event with `data` and no id, for encoding.
    pub fn new(data: impl Into<Utf8Bytes>) -> Self {
        Self {
            event_type: MESSAGE,
            data: data.into(),
            id: Utf8Bytes::new(),
        }
    }

    /// Sets the event type.
    #[must_use]
    pub fn with_type(mut self, event_type: impl Into<Utf8Bytes>) -> Self {
        self.event_type = event_type.into();
        self
    }

    /// Sets the id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<Utf8Bytes>) -> Self {
        self.id = id.into();
        self
    }
}

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    /// A complete event, yielded at the blank line that ends its block.
    Event(Event),
    /// A comment line: the text after the colon, verbatim. Yielded as soon as
    /// its line ends, even in the middle of an event block.
    Comment(Utf8Bytes),
    /// A valid `retry` field: the server asks for this reconnection time.
    /// Yielded as soon as its line ends, like the specification applies it.
    Retry(Duration),
}

/// Counters over everything the parser has been fed since it was created.
///
/// `bytes_scanned` counts each byte the line scanner looked at and
/// `bytes_copied` each byte copied into the parser's own buffers (lines split
/// across chunks, events with several `data` lines; values of up to 30 bytes,
/// stored inline in their [`Utf8Bytes`], are not counted). `bytes_scanned` equals
/// `bytes_fed` once all input is parsed, however it was chunked, and
/// `bytes_copied` is at most twice that (U+FFFD replacements aside).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes passed to `feed` or `feed_slice`.
    pub bytes_fed: u64,
    /// Bytes examined by the line scanner.
    pub bytes_scanned: u64,
    /// Bytes copied into internal buffers.
    pub bytes_copied: u64,
}

/// An incremental, WHATWG-exact SSE parser.
///
/// Feed it the bytes of one response body with [`feed`](Self::feed) or
/// [`feed_slice`](Self::feed_slice), then call [`next_item`](Self::next_item)
/// until it returns `Ok(None)`; repeat. See the crate docs for the full
/// contract.
pub struct Parser {
    /// Input not yet consumed is `cur[pos..]`, then `queue` in order.
    cur: Bytes,
    pos: usize,
    /// What is known of `cur` being ASCII, so that values cut from it need no
    /// UTF-8 validation (see `AsciiWindow`).
    cur_ascii: AsciiWindow,
    queue: VecDeque<Bytes>,
    /// Backing store for `feed_slice`, recycled once its chunks are dropped.
    slice_buf: BytesMut,
    state: State,
}

/// Everything but the input, so a line can be processed while the input chunk
/// it lives in is borrowed.
struct State {
    limits: Limits,
    /// The start of a line whose end has not arrived yet.
    line: BytesMut,
    /// Whether `line` is all ASCII (so its values need no UTF-8 validation).
    line_ascii: bool,
    /// The previous chunk ended with CR: a leading LF in the next one belongs
    /// to that line ending.
    skip_lf: bool,
    /// Whether the start of the stream was checked for a BOM.
    bom_done: bool,
    /// How many BOM bytes were matched so far (a BOM may be split too).
    bom_seen: u8,
    /// The data buffer.
    data: Data,
    /// The data buffer while it holds one line: valid UTF-8.
    data_one: Bytes,
    /// Where an event with several `data` lines is assembled.
    data_buf: BytesMut,
    /// The event type buffer; `None` stands for the empty string.
    event_type: Option<Utf8Bytes>,
    /// The last event ID buffer, and whether an `id` field set it in the
    /// current block (otherwise it equals `last_id`).
    id_buffer: Utf8Bytes,
    id_set: bool,
    /// The last event ID string: committed at a blank line.
    last_id: Utf8Bytes,
    /// Recently seen event types, reused instead of copied.
    types: Vec<Utf8Bytes>,
    /// Where ids and event types are copied to (see `copy_small`).
    slab: BytesMut,
    failed: Option<ParseError>,
    stats: Stats,
}

/// Where the data buffer is. A single `data` line is kept in
/// `State::data_one`, as a view of its input; more lines are joined in
/// `State::data_buf`.
#[derive(Clone, Copy)]
enum Data {
    Empty,
    One,
    Many,
}

impl Parser {
    /// A parser with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A parser with the given limits.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            cur: Bytes::new(),
            pos: 0,
            cur_ascii: AsciiWindow::default(),
            queue: VecDeque::new(),
            slice_buf: BytesMut::new(),
            state: State {
                limits,
                line: BytesMut::new(),
                line_ascii: true,
                skip_lf: false,
                bom_done: false,
                bom_seen: 0,
                data: Data::Empty,
                data_one: Bytes::new(),
                data_buf: BytesMut::new(),
                event_type: None,
                id_buffer: Utf8Bytes::new(),
                id_set: false,
                last_id: Utf8Bytes::new(),
                types: Vec::new(),
                slab: BytesMut::new(),
                failed: None,
                stats: Stats::default(),
            },
        }
    }

    /// Queues a chunk of the response body, without copying it.
    ///
    /// Items that come out of it may share its allocation. Ignored while the
    /// parser is failed.
    #[inline]
    pub fn feed(&mut self, chunk: Bytes) {
        if self.state.failed.is_some() || chunk.is_empty() {
            return;
        }
        self.state.stats.bytes_fed += chunk.len() as u64;
        if self.pos >= self.cur.len() && self.queue.is_empty() {
            // A small chunk with no line end cannot complete an item: append it
            // to the partial line now instead of queueing it. Parsing it later
            // would scan the same bytes; holding it would cost a reference
            // count and a move per chunk, which dominate when a slow stream
            // arrives a few bytes at a time.
            if chunk.len() <= EAGER_MAX
                && self.state.mid_stream()
                && find_line_end(&chunk).is_none()
            {
                self.state.stats.bytes_scanned += chunk.len() as u64;
                if let Err(err) = self.state.push_partial(&chunk, chunk.is_ascii()) {
                    self.fail(err);
                }
                return;
            }
            self.cur_ascii = AsciiWindow::default();
            self.cur = chunk;
            self.pos = 0;
        } else {
            self.queue.push_back(chunk);
        }
    }

    /// Queues a borrowed chunk by copying it into a buffer the parser recycles.
    pub fn feed_slice(&mut self, chunk: &[u8]) {
        if self.state.failed.is_some() || chunk.is_empty() {
            return;
        }
        // `reserve` reclaims the buffer's memory once every earlier chunk cut
        // from it has been dropped, so steady feeding does not allocate.
        self.slice_buf.reserve(chunk.len());
        self.slice_buf.extend_from_slice(chunk);
        let chunk = self.slice_buf.split().freeze();
        self.feed(chunk);
    }

    /// Parses queued input until one item is complete.
    ///
    /// Returns `Ok(None)` when the queued input is used up (the rest of a
    /// partial line or event is kept for the next chunk).
    ///
    /// # Errors
    ///
    /// A limit was exceeded. Queued input and partial state are dropped and
    /// the same error is returned until [`reset`](Self::reset).
    pub fn next_item(&mut self) -> Result<Option<Item>, ParseError> {
        if let Some(err) = self.state.failed {
            return Err(err);
        }
        loop {
            if self.pos >= self.cur.len() {
                match self.queue.pop_front() {
                    Some(chunk) => {
                        self.cur_ascii = AsciiWindow::default();
                        self.cur = chunk;
                        self.pos = 0;
                    }
                    None => {
                        // Release the used-up chunk instead of pinning it.
                        if !self.cur.is_empty() {
                            self.cur = Bytes::new();
                            self.pos = 0;
                        }
                        return Ok(None);
                    }
                }
            }
            match self
                .state
                .parse_chunk(&self.cur, &mut self.cur_ascii, &mut self.pos)
            {
                Ok(Some(item)) => return Ok(Some(item)),
                Ok(None) => {}
                Err(err) => {
                    self.fail(err);
                    return Err(err);
                }
            }
        }
    }

    /// Starts a new connection's stream: drops queued input and every partial
    /// line and event (a block that never completed never commits its `id`),
    /// clears a failure, and expects a BOM again. Keeps the committed last
    /// event ID, the limits and the statistics.
    pub fn reset(&mut self) {
        self.cur = Bytes::new();
        self.pos = 0;
        self.queue.clear();
        let st = &mut self.state;
        st.failed = None;
        st.skip_lf = false;
        st.bom_done = false;
        st.bom_seen = 0;
        st.clear_partial();
    }

    /// The last event ID string: what a reconnecting client sends as
    /// `Last-Event-ID` (when it is not empty).
    pub fn last_event_id(&self) -> &Utf8Bytes {
        &self.state.last_id
    }

    /// Sets the last event ID, for example one carried in from configuration or
    /// from an earlier parser.
    pub fn set_last_event_id(&mut self, id: Utf8Bytes) {
        self.state.id_buffer = id.clone();
        self.state.id_set = false;
        self.state.last_id = id;
    }

    /// Whether a line or an event block has started and not completed: what
    /// the end of the stream now would discard.
    pub fn has_partial(&self) -> bool {
        let st = &self.state;
        !st.line.is_empty()
            || !matches!(st.data, Data::Empty)
            || st.event_type.is_some()
            || st.id_set
    }

    /// Bytes held for the current partial line and event. Never more than
    /// `max_line_len + max_event_size` (queued input is counted by the caller).
    pub fn buffered_bytes(&self) -> usize {
        self.state.line.len() + self.state.data_len()
    }

    /// Bytes fed but not parsed yet.
    pub fn queued_bytes(&self) -> usize {
        self.cur.len().saturating_sub(self.pos) + self.queue.iter().map(Bytes::len).sum::<usize>()
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.state.limits
    }

    /// The failure in force, if any.
    pub fn error(&self) -> Option<ParseError> {
        self.state.failed
    }

    /// Counters since creation.
    pub fn stats(&self) -> Stats {
        self.state.stats
    }

    fn fail(&mut self, err: ParseError) {
        self.cur = Bytes::new();
        self.pos = 0;
        self.queue.clear();
        self.state.failed = Some(err);
        self.state.clear_partial();
    }
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Parser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parser")
            .field("limits", &self.state.limits)
            .field("last_event_id", &self.state.last_id)
            .field("queued_bytes", &self.queued_bytes())
            .field("buffered_bytes", &self.buffered_bytes())
            .field("failed", &self.state.failed)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Parses `chunk[*pos..]` until an item completes or the chunk is used up.
    /// `ascii` tracks which part of `chunk` is known to be ASCII.
    fn parse_chunk(
        &mut self,
        chunk: &Bytes,
        ascii: &mut AsciiWindow,
        pos: &mut usize,
    ) -> Result<Option<Item>, ParseError> {
        let buf = &chunk[..];
        let mut at = *pos;
        if self.skip_lf {
            self.skip_lf = false;
            if buf[at] == b'\n' {
                self.stats.bytes_scanned += 1;
                at += 1;
            }
        }
        if !self.bom_done {
            at = self.strip_bom(buf, at);
        }
        while at < buf.len() {
            let rest = &buf[at..];
            // A line continued from an earlier chunk is likely a long one: skip
            // the short-line fast path.
            let found = if self.line.is_empty() {
                find_line_end(rest)
            } else {
                memchr::memchr2(b'\n', b'\r', rest)
            };
            let Some(i) = found else {
                self.stats.bytes_scanned += rest.len() as u64;
                *pos = buf.len();
                let ascii = ascii.check(buf, at, buf.len());
                self.push_partial(rest, ascii)?;
                return Ok(None);
            };
            let end = at + i;
            let ascii = ascii.check(buf, at, end);
            let mut next = end + 1;
            self.stats.bytes_scanned += next as u64 - at as u64;
            if buf[end] == b'\r' {
                match buf.get(next) {
                    Some(b'\n') => {
                        self.stats.bytes_scanned += 1;
                        next += 1;
                    }
                    Some(_) => {}
                    // A CR ends its line at once; the LF of a CRLF split across
                    // chunks is skipped when the next chunk arrives.
                    None => self.skip_lf = true,
                }
            }
            let item = if self.line.is_empty() {
                if i > self.limits.max_line_len {
                    *pos = next;
                    return Err(self.line_too_long());
                }
                self.process_line(&mut &*chunk, at, end, ascii)
            } else {
                self.finish_partial(&buf[at..end], ascii)
            };
            at = next;
            match item {
                Ok(None) => {}
                other => {
                    *pos = at;
                    return other;
                }
            }
        }
        *pos = at;
        Ok(None)
    }

    /// Strips one leading BOM, which may arrive a byte at a time. Returns the
    /// position after what it consumed.
    fn strip_bom(&mut self, buf: &[u8], mut at: usize) -> usize {
        while at < buf.len() {
            if buf[at] == BOM[usize::from(self.bom_seen)] {
                self.stats.bytes_scanned += 1;
                at += 1;
                self.bom_seen += 1;
                if usize::from(self.bom_seen) == BOM.len() {
                    self.bom_done = true;
                    self.bom_seen = 0;
                    return at;
                }
            } else {
                // Not a BOM after all: the bytes matched so far start the first
                // line. The line limit is checked when the line grows or ends.
                self.bom_done = true;
                let seen = usize::from(mem::take(&mut self.bom_seen));
                self.line.extend_from_slice(&BOM[..seen]);
                self.line_ascii &= seen == 0;
                self.stats.bytes_copied += seen as u64;
                return at;
            }
        }
        at
    }

    /// Past the BOM and any pending CRLF: the next byte is plain line content
    /// or a line end.
    #[inline]
    fn mid_stream(&self) -> bool {
        self.bom_done && !self.skip_lf
    }

    fn line_too_long(&self) -> ParseError {
        ParseError::LineTooLong {
            limit: self.limits.max_line_len,
        }
    }

    /// Keeps the start of a line whose end is in a later chunk. `ascii`: the
    /// bytes are known to be ASCII.
    fn push_partial(&mut self, bytes: &[u8], ascii: bool) -> Result<(), ParseError> {
        if self.line.len() + bytes.len() > self.limits.max_line_len {
            return Err(self.line_too_long());
        }
        self.line_ascii &= ascii;
        if bytes.len() <= 8 {
            // A few bytes of a slowly arriving line: cheaper than a call to
            // `memcpy` for an unknown length.
            for &b in bytes {
                self.line.put_u8(b);
            }
        } else {
            self.line.extend_from_slice(bytes);
        }
        self.stats.bytes_copied += bytes.len() as u64;
        Ok(())
    }

    /// Completes a line that started in an earlier chunk with its last bytes.
    fn finish_partial(&mut self, tail: &[u8], ascii: bool) -> Result<Option<Item>, ParseError> {
        self.push_partial(tail, ascii)?;
        let line_ascii = mem::replace(&mut self.line_ascii, true);
        let mut src = Buffered {
            line: mem::take(&mut self.line),
            frozen: None,
        };
        let len = src.line.len();
        let result = self.process_line(&mut src, 0, len, line_ascii);
        // Keep the buffer for the next partial line (what is left of it when
        // the line was frozen into an item), unless one huge line grew it.
        let mut line = src.line;
        line.clear();
        if line.capacity() <= RETAIN_CAPACITY {
            self.line = line;
        }
        result
    }

    /// Processes the line `src[start..end]` (without its line ending). `ascii`:
    /// `src` is known to be ASCII, so its values need no UTF-8 validation.
    #[inline]
    fn process_line<S: LineSource>(
        &mut self,
        src: &mut S,
        start: usize,
        end: usize,
        ascii: bool,
    ) -> Result<Option<Item>, ParseError> {
        let line = &src.bytes()[start..end];
        let Some(&first) = line.first() else {
            return Ok(self.dispatch());
        };
        match first {
            b':' => {
                let text = text_of(src, start + 1, end);
                return Ok(Some(Item::Comment(text)));
            }
            b'd' => {
                if let Some(v) = value_start(line, b"data") {
                    self.push_data(src, start + v, end, ascii)?;
                }
            }
            b'e' => {
                if let Some(v) = value_start(line, b"event") {
                    let value = &line[v..];
                    self.event_type = if value.is_empty() {
                        None
                    } else {
                        Some(self.intern_type(value))
                    };
                }
            }
            b'i' => {
                if let Some(v) = value_start(line, b"id") {
                    let value = &line[v..];
                    // An id containing NUL is ignored, so it can never reach a
                    // `Last-Event-ID` header.
                    if memchr::memchr(0, value).is_none() {
                        let short = Utf8Bytes::fits_inline(value.len());
                        if short && (ascii || std::str::from_utf8(value).is_ok()) {
                            self.id_buffer.set_valid(value);
                        } else {
                            self.id_buffer = self.copy_small(value);
                        }
                        self.id_set = true;
                    }
                }
            }
            b'r' => {
                if let Some(v) = value_start(line, b"retry") {
                    let value = &line[v..];
                    if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
                        let ms = value.iter().fold(0u64, |ms, digit| {
                            ms.saturating_mul(10)
                                .saturating_add(u64::from(digit - b'0'))
                        });
                        return Ok(Some(Item::Retry(Duration::from_millis(ms))));
                    }
                }
            }
            // Unknown fields are ignored.
            _ => {}
        }
        Ok(None)
    }

    /// Appends the value `src[start..end]` of a `data` line to the data buffer.
    #[inline]
    fn push_data<S: LineSource>(
        &mut self,
        src: &mut S,
        start: usize,
        end: usize,
        ascii: bool,
    ) -> Result<(), ParseError> {
        let raw = &src.bytes()[start..end];
        let lossy = if ascii || std::str::from_utf8(raw).is_ok() {
            None
        } else {
            Some(String::from_utf8_lossy(raw).into_owned())
        };
        let value = lossy.as_ref().map_or(raw, String::as_bytes);
        let new_len = match self.data {
            Data::Empty => value.len(),
            _ => self.data_len() + 1 + value.len(),
        };
        if new_len > self.limits.max_event_size {
            return Err(ParseError::EventTooLarge {
                limit: self.limits.max_event_size,
            });
        }
        match self.data {
            Data::Empty => {
                // Assigned straight into its field, not moved through an enum:
                // this is the hot path of every single-line event.
                self.data_one = match lossy {
                    None => src.slice(start, end),
                    Some(text) => Bytes::from(text),
                };
                self.data = Data::One;
            }
            Data::One => {
                self.data_buf.reserve(new_len);
                self.data_buf
                    .extend_from_slice(&mem::take(&mut self.data_one));
                self.data_buf.put_u8(b'\n');
                self.data_buf.extend_from_slice(value);
                self.stats.bytes_copied += new_len as u64;
                self.data = Data::Many;
            }
            Data::Many => {
                self.data_buf.put_u8(b'\n');
                self.data_buf.extend_from_slice(value);
                self.stats.bytes_copied += 1 + value.len() as u64;
            }
        }
        Ok(())
    }

    #[inline]
    fn data_len(&self) -> usize {
        match self.data {
            Data::Empty => 0,
            Data::One => self.data_one.len(),
            Data::Many => self.data_buf.len(),
        }
    }

    /// The blank line: commits the id, and dispatches the event if it has data.
    #[inline]
    fn dispatch(&mut self) -> Option<Item> {
        if mem::take(&mut self.id_set) {
            self.last_id = self.id_buffer.clone();
        }
        let event_type = self.event_type.take();
        let data = match mem::replace(&mut self.data, Data::Empty) {
            Data::Empty => return None,
            // `data_one` holds valid UTF-8 (see `push_data`).
            Data::One => Utf8Bytes::from_valid(mem::take(&mut self.data_one)),
            Data::Many => {
                let data = self.data_buf.split().freeze();
                if data.len() > RETAIN_CAPACITY {
                    self.data_buf = BytesMut::new();
                }
                // Every piece appended to `data_buf` was a `Utf8Bytes` or LF.
                Utf8Bytes::from_valid(data)
            }
        };
        Some(Item::Event(Event {
            event_type: event_type.unwrap_or(MESSAGE),
            data,
            id: self.last_id.clone(),
        }))
    }

    /// Returns the event type for `value`, reusing a recent one when it matches
    /// so that a stream of same-typed events does not allocate for the type.
    #[inline]
    fn intern_type(&mut self, value: &[u8]) -> Utf8Bytes {
        if let Some(known) = self.types.iter().find(|t| t.as_bytes() == value) {
            return known.clone();
        }
        let event_type = self.copy_small(value);
        if value.len() <= TYPE_CACHE_MAX_LEN {
            if self.types.len() == TYPE_CACHE_LEN {
                self.types.remove(0);
            }
            self.types.push(event_type.clone());
        }
        event_type
    }

    /// Copies a short value (an id, an event type) out of the input so that it
    /// never pins an input chunk, replacing invalid UTF-8 with U+FFFD.
    ///
    /// Short values are stored inline. Longer ones are carved out of a shared
    /// slab: a new `Bytes` costs an allocation for its reference count the
    /// first time it is cloned, a slice of a slab does not. A slab is freed
    /// when its last value is.
    #[inline]
    fn copy_small(&mut self, value: &[u8]) -> Utf8Bytes {
        let lossy;
        let value = match std::str::from_utf8(value) {
            Ok(valid) => valid,
            Err(_) => {
                lossy = String::from_utf8_lossy(value);
                &*lossy
            }
        };
        if Utf8Bytes::fits_inline(value.len()) {
            return Utf8Bytes::from(value);
        }
        if self.slab.capacity() - self.slab.len() < value.len() {
            self.slab = BytesMut::with_capacity(SLAB_CAPACITY.max(value.len()));
        }
        self.slab.extend_from_slice(value.as_bytes());
        Utf8Bytes::from_valid(self.slab.split().freeze())
    }

    /// Drops the partial line and block; the last event ID buffer falls back to
    /// the committed last event ID.
    fn clear_partial(&mut self) {
        self.line.clear();
        self.line_ascii = true;
        if self.line.capacity() > RETAIN_CAPACITY {
            self.line = BytesMut::new();
        }
        self.data = Data::Empty;
        self.data_one = Bytes::new();
        self.data_buf.clear();
        if self.data_buf.capacity() > RETAIN_CAPACITY {
            self.data_buf = BytesMut::new();
        }
        self.event_type = None;
        self.id_buffer = self.last_id.clone();
        self.id_set = false;
    }
}

/// Which part of the current chunk is known to be ASCII.
///
/// Values cut from ASCII input need no UTF-8 validation, and one `is_ascii`
/// pass over a window of the chunk costs far less than one `from_utf8` call per
/// short value. The window is 4 KiB ahead of the line being processed (not the
/// whole chunk), so the check reads bytes that the line scan is about to read
/// anyway, while they are in L1.
#[derive(Clone, Copy)]
struct AsciiWindow {
    /// `chunk[..known_to]` has been checked...
    known_to: usize,
    /// ...and, where lines end inside it, is ASCII if this is true. (False:
    /// the window holds a non-ASCII byte somewhere, so its lines are validated
    /// one value at a time.)
    ascii: bool,
}

impl Default for AsciiWindow {
    fn default() -> Self {
        Self {
            known_to: 0,
            ascii: true,
        }
    }
}

impl AsciiWindow {
    const WINDOW: usize = 4096;

    /// Whether `buf[at..end]` is known to be ASCII, checking ahead as needed.
    #[inline]
    fn check(&mut self, buf: &[u8], at: usize, end: usize) -> bool {
        if end <= self.known_to {
            return self.ascii;
        }
        // The part of the line inside the old window, if any, must be ASCII too.
        let head = self.ascii || at >= self.known_to;
        let from = self.known_to.max(at);
        let to = end.max(from + Self::WINDOW).min(buf.len());
        self.ascii = buf[from..to].is_ascii();
        self.known_to = to;
        head && self.ascii
    }
}

/// Where a line's bytes live: in an input chunk, or in the partial-line
/// buffer when the line spanned chunks.
trait LineSource {
    fn bytes(&self) -> &[u8];

    /// `self.bytes()[start..end]` as `Bytes`, without copying.
    fn slice(&mut self, start: usize, end: usize) -> Bytes;
}

impl LineSource for &Bytes {
    #[inline]
    fn bytes(&self) -> &[u8] {
        self
    }

    #[inline]
    fn slice(&mut self, start: usize, end: usize) -> Bytes {
        Bytes::slice(self, start..end)
    }
}

/// The partial-line buffer, taken out of the parser while its line is
/// processed. Most lines (ids, types, short data, the blank line) only read
/// it, and the buffer is reused as it is; a long value that must outlive the
/// line freezes it once, zero-copy.
struct Buffered {
    line: BytesMut,
    frozen: Option<Bytes>,
}

impl LineSource for Buffered {
    fn bytes(&self) -> &[u8] {
        self.frozen.as_deref().unwrap_or(&self.line)
    }

    fn slice(&mut self, start: usize, end: usize) -> Bytes {
        let line = &mut self.line;
        self.frozen
            .get_or_insert_with(|| line.split().freeze())
            .slice(start..end)
    }
}

/// A text value (a comment): inline when short, otherwise a view of `src`;
/// invalid UTF-8 becomes U+FFFD.
fn text_of<S: LineSource>(src: &mut S, start: usize, end: usize) -> Utf8Bytes {
    let raw = &src.bytes()[start..end];
    if Utf8Bytes::fits_inline(raw.len()) {
        match std::str::from_utf8(raw) {
            Ok(text) => Utf8Bytes::from(text),
            Err(_) => Utf8Bytes::from(String::from_utf8_lossy(raw).into_owned()),
        }
    } else {
        Utf8Bytes::from_bytes_lossy(src.slice(start, end))
    }
}

/// The position of the first CR or LF in `haystack`.
///
/// Most SSE lines are short (`id: 123`, `event: quote`, the blank line, a
/// small JSON payload), and for those the call into `memchr` costs more than
/// the search, so the first 64 bytes are checked here eight at a time (SWAR);
/// `memchr` takes over for longer lines. Measured with `cargo xtask bench`.
#[inline]
fn find_line_end(haystack: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    const CR: u64 = LO * b'\r' as u64;
    // A byte of `x` is zero where it has the high bit set in the result. Bits
    // above the first zero byte may be false positives (borrows); the lowest
    // one is always exact, and it is the only one used.
    let zero_bytes = |x: u64| x.wrapping_sub(LO) & !x & HI;
    let mut at = 0;
    while at < 64 {
        let Some(word) = haystack.get(at..at + 8) else {
            // Fewer than 8 bytes left.
            return haystack[at..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .map(|i| at + i);
        };
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes);
        let hits = zero_bytes(x ^ LF) | zero_bytes(x ^ CR);
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    memchr::memchr2(b'\n', b'\r', &haystack[at..]).map(|i| at + i)
}

/// If `line` is the field `name` (exact, case-sensitive), returns where its value
/// starts: after the colon and one optional space, or at the end for a line
/// with no colon. A line with another name, `name` included as a prefix, is
/// `None`.
#[inline]
fn value_start(line: &[u8], name: &[u8]) -> Option<usize> {
    let rest = line.strip_prefix(name)?;
    match rest.first() {
        None => Some(line.len()),
        Some(b':') => {
            let v = name.len() + 1;
            Some(if line.get(v) == Some(&b' ') { v + 1 } else { v })
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn naive(haystack: &[u8]) -> Option<usize> {
        haystack.iter().position(|&b| b == b'\n' || b == b'\r')
    }

    #[test]
    fn find_line_end_at_every_position_and_length() {
        // Neighbours of LF and CR, and bytes with the high bit set, are where
        // a SWAR trick would go wrong.
        for len in 0..140 {
            for at in 0..=len {
                for (fill, hit) in [
                    (b'\x0B', b'\n'),
                    (b'\x0C', b'\r'),
                    (b'\x8A', b'\n'),
                    (b'\x8D', b'\r'),
                    (b'\x00', b'\n'),
                ] {
                    let mut haystack = vec![fill; len];
                    if at < len {
                        haystack[at] = hit;
                    }
                    assert_eq!(
                        find_line_end(&haystack),
                        naive(&haystack),
                        "len {len} at {at} fill {fill:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn ascii_window_is_conservative_across_boundaries() {
        let mut buf = vec![b'a'; 9000];
        buf[4000] = 0xFF;
        let mut window = AsciiWindow::default();
        // The first window holds the non-ASCII byte: its lines are validated.
        assert!(!window.check(&buf, 0, 10));
        assert_eq!(window.known_to, AsciiWindow::WINDOW);
        // A line from inside that window into the next is validated too...
        assert!(!window.check(&buf, 3990, 4200));
        // ...and a line wholly inside the clean window is not.
        assert!(window.check(&buf, 4300, 4400));
        // A line starting after the old window needs only the new one.
        let mut window = AsciiWindow::default();
        assert!(!window.check(&buf, 0, 10));
        assert!(window.check(&buf, 5000, 5100));
        // The check never reads past the end of the chunk.
        assert!(window.check(&buf, 8990, 9000));
        assert_eq!(window.known_to, 9000);
    }

    #[test]
    fn invalid_utf8_in_a_line_across_an_ascii_window_is_replaced() {
        // The comment makes the first ASCII window end inside the data line.
        let mut input = b": c\ndata: ".to_vec();
        input.resize(4000, b'x');
        input.push(0xFF);
        input.resize(4500, b'y');
        input.extend_from_slice(b"\n\ndata: after\n\n");
        let mut parser = Parser::new();
        parser.feed(Bytes::from(input));
        assert_eq!(parser.next_item(), Ok(Some(Item::Comment(" c".into()))));
        let Ok(Some(Item::Event(event))) = parser.next_item() else {
            panic!("an event")
        };
        assert_eq!(event.data.chars().filter(|&c| c == '\u{FFFD}').count(), 1);
        assert_eq!(event.data.len(), 4000 - 10 + 3 + 499);
    }

    proptest! {
        #[test]
        fn find_line_end_matches_a_plain_search(
            haystack in proptest::collection::vec(prop_oneof![any::<u8>(), Just(b'\n'), Just(b'\r'), Just(0u8)], 0..200)
        ) {
            prop_assert_eq!(find_line_end(&haystack), naive(&haystack));
        }
    }
}
