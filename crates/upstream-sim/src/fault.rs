//! What one connection to a topic does: the faults the simulator plays.

use std::time::Duration;

/// How one connection to a topic behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The live feed, with replay from `Last-Event-ID`.
    Normal,
    /// Close the connection without any response.
    Refuse,
    /// Answer 200 with the headers, then stay silent (no byte, ever).
    Stall,
    /// Answer 200, then send the feed one byte per `interval`.
    Drip {
        /// The time between bytes.
        interval: Duration,
    },
    /// Send `after_events` events, then half of the next one, then close.
    CloseMidEvent {
        /// Complete events first.
        after_events: usize,
    },
    /// Send `after_events` events, then end the body cleanly.
    EndAfter {
        /// Events before the end.
        after_events: usize,
    },
    /// Send malformed input among valid events.
    Garbage(Garbage),
    /// A line that never ends (`data: xxx...`), up to `max_bytes`, then close.
    EndlessLine {
        /// Stop after this many bytes, so the server always stops by itself.
        max_bytes: usize,
    },
    /// Answer with this status, optional `Retry-After`, and a body that looks
    /// like SSE (it must not be parsed as such).
    Status {
        /// The status code.
        code: u16,
        /// The `Retry-After` header, verbatim (seconds, a date, or garbage).
        retry_after: Option<String>,
    },
    /// Answer 200 with `Content-Type: application/json`.
    WrongContentType,
    /// Answer with a redirect. `location: None` sends no `Location` header.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        code: u16,
        /// The `Location` header value (relative or absolute).
        location: Option<String>,
    },
    /// Wait this long before answering, then behave normally.
    SlowStart {
        /// The delay before the response headers.
        delay: Duration,
    },
}

impl Fault {
    /// A short name for logs: `normal`, `stall`, `status`, ...
    pub fn label(&self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Refuse => "refuse",
            Self::Stall => "stall",
            Self::Drip { .. } => "drip",
            Self::CloseMidEvent { .. } => "close-mid-event",
            Self::EndAfter { .. } => "end-after",
            Self::Garbage(_) => "garbage",
            Self::EndlessLine { .. } => "endless-line",
            Self::Status { .. } => "status",
            Self::WrongContentType => "wrong-content-type",
            Self::Redirect { .. } => "redirect",
            Self::SlowStart { .. } => "slow-start",
        }
    }

    /// A status response without `Retry-After`; add one with
    /// [`retry_after`](Self::retry_after).
    pub fn status(code: u16) -> Self {
        Self::Status {
            code,
            retry_after: None,
        }
    }

    /// Sets `Retry-After` on a [`Fault::Status`]; other faults are unchanged.
    #[must_use]
    pub fn retry_after(self, value: impl Into<String>) -> Self {
        match self {
            Self::Status { code, .. } => Self::Status {
                code,
                retry_after: Some(value.into()),
            },
            other => other,
        }
    }
}

/// Kinds of malformed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Garbage {
    /// Invalid UTF-8 in data.
    InvalidUtf8,
    /// An `id` containing NUL (clients must ignore it).
    NulInId,
    /// Events with CR-only line endings.
    CrOnly,
    /// A `retry: -1` field (clients must ignore it).
    NegativeRetry,
}

impl Garbage {
    /// The malformed bytes this kind sends.
    pub(crate) fn bytes(self) -> &'static [u8] {
        match self {
            Self::InvalidUtf8 => b"event: garbage\ndata: \xFF\xFE not UTF-8 \xC3\n\n",
            Self::NulInId => b"id: 12\x0034\nevent: garbage\ndata: the id has a NUL\n\n",
            Self::CrOnly => b"",
            Self::NegativeRetry => b"retry: -1\n\n",
        }
    }
}
