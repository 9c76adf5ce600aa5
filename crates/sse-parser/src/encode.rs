//! The encoder: events, comments and `retry` to wire bytes, safe against
//! injection (no value can start a field or an event of its own).

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::parser::Event;

/// An event could not be encoded without changing its meaning on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The event type contains CR, LF or NUL.
    InvalidEventType,
    /// The id contains CR, LF or NUL (a NUL id would be ignored by clients).
    InvalidId,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEventType => f.write_str("SSE event type contains CR, LF or NUL"),
            Self::InvalidId => f.write_str("SSE event id contains CR, LF or NUL"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Encodes `event` as one event block.
///
/// Writes `event:` unless the type is `message` or empty, `id:` unless the id is
/// empty (so an empty id leaves the receiver's last event ID as it was), one
/// `data:` line per line of `data` (CR, LF and CRLF all split lines), and the
/// blank line. Parsing the result yields `event`, with the line breaks in its
/// data turned into LF.
///
/// # Errors
///
/// The type or id contains CR, LF or NUL.
pub fn encode_event(event: &Event) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    encode_event_into(event, &mut out)?;
    Ok(out.freeze())
}

/// Like [`encode_event`], appending to `out` (reserving exactly once).
///
/// # Errors
///
/// The type or id contains CR, LF or NUL; `out` is unchanged then.
pub fn encode_event_into(event: &Event, out: &mut BytesMut) -> Result<(), EncodeError> {
    let event_type = event.event_type.as_bytes();
    let id = event.id.as_bytes();
    if has_forbidden(event_type) {
        return Err(EncodeError::InvalidEventType);
    }
    if has_forbidden(id) {
        return Err(EncodeError::InvalidId);
    }
    let write_type = !event_type.is_empty() && event_type != &b"message"[..];
    let data = event.data.as_bytes();
    let data_lines = memchr::memchr2_iter(b'\r', b'\n', data).count() + 1;

    let mut len = data.len() + data_lines * "data: \n".len() + 1;
    if write_type {
        len += "event: \n".len() + event_type.len();
    }
    if !id.is_empty() {
        len += "id: \n".len() + id.len();
    }
    out.reserve(len);

    if write_type {
        put_field(out, b"event: ", event_type);
    }
    if !id.is_empty() {
        put_field(out, b"id: ", id);
    }
    for line in split_lines(data) {
        put_field(out, b"data: ", line);
    }
    out.put_u8(b'\n');
    Ok(())
}

/// Encodes a comment. Each line of `text` becomes one comment line `:<line>`,
/// so a comment can never end the block or start a field. Parsing yields each
/// line as it was.
pub fn encode_comment(text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 2);
    for line in split_lines(text.as_bytes()) {
        put_field(&mut out, b":", line);
    }
    out.freeze()
}

/// Encodes a `retry:` field asking the client to wait `delay` (whole
/// milliseconds) before reconnecting.
pub fn encode_retry(delay: Duration) -> Bytes {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    Bytes::from(format!("retry: {ms}\n"))
}

fn put_field(out: &mut BytesMut, prefix: &[u8], value: &[u8]) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(value);
    out.put_u8(b'\n');
}

fn has_forbidden(value: &[u8]) -> bool {
    memchr::memchr3(b'\r', b'\n', 0, value).is_some()
}

/// Splits at CRLF, CR and LF, like the parser does. Always yields at least one
/// (possibly empty) line.
fn split_lines(mut text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match memchr::memchr2(b'\r', b'\n', text) {
            None => {
                done = true;
                Some(text)
            }
            Some(i) => {
                let line = &text[..i];
                let skip = if text[i] == b'\r' && text.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                text = &text[i + skip..];
                Some(line)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(event: &Event) -> String {
        String::from_utf8(encode_event(event).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn message_with_id() {
        let e = Event::new("hello").with_id("7");
        assert_eq!(enc(&e), "id: 7\ndata: hello\n\n");
    }

    #[test]
    fn typed_event_and_multiline_data() {
        let e = Event::new("a\nb\r\nc\rd").with_type("quote");
        assert_eq!(
            enc(&e),
            "event: quote\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }

    #[test]
    fn empty_data_still_dispatches() {
        assert_eq!(enc(&Event::new("")), "data: \n\n");
    }

    #[test]
    fn trailing_newline_in_data_is_an_empty_line() {
        assert_eq!(enc(&Event::new("x\n")), "data: x\ndata: \n\n");
    }

    #[test]
    fn injection_in_id_or_type_is_refused() {
        for bad in ["a\nb", "a\rb", "a\0b", "\n"] {
            assert_eq!(
                encode_event(&Event::new("x").with_id(bad)),
                Err(EncodeError::InvalidId)
            );
            assert_eq!(
                encode_event(&Event::new("x").with_type(bad)),
                Err(EncodeError::InvalidEventType)
            );
        }
    }

    #[test]
    fn injection_in_data_cannot_start_an_event() {
        let e = Event::new("x\n\nevent: evil\ndata: y");
        assert_eq!(
            enc(&e),
            "data: x\ndata: \ndata: event: evil\ndata: data: y\n\n"
        );
    }

    #[test]
    fn comment_lines_are_split() {
        assert_eq!(&encode_comment(" hi")[..], b": hi\n");
        assert_eq!(&encode_comment("a\n\nb")[..], b":a\n:\n:b\n");
    }

    #[test]
    fn retry_in_millis() {
        assert_eq!(
            &encode_retry(Duration::from_millis(1500))[..],
            b"retry: 1500\n"
        );
    }

    #[test]
    fn into_appends_and_leaves_out_untouched_on_error() {
        let mut out = BytesMut::from(&b"x"[..]);
        assert!(encode_event_into(&Event::new("d").with_id("a\nb"), &mut out).is_err());
        assert_eq!(&out[..], b"x");
        encode_event_into(&Event::new("d"), &mut out).unwrap();
        assert_eq!(&out[..], b"xdata: d\n\n");
    }
}
