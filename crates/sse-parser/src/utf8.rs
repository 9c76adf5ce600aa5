//! `Utf8Bytes`: a cheaply cloneable UTF-8 string that keeps short values inline
//! and longer ones in (possibly shared) [`Bytes`].

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// Strings up to this many bytes are stored inline.
const INLINE_CAP: usize = 31;

/// An immutable UTF-8 string.
///
/// Strings of up to 31 bytes (typical ids, event types, comments) are stored
/// inline: creating, cloning and dropping them never allocates or touches a
/// reference count. Longer strings are [`Bytes`]: cloning is a reference-count
/// increment, and a value the parser produced may be a view into the chunk it
/// was fed (see the crate docs on memory).
///
/// Invariant: the content is always valid UTF-8. Every constructor either
/// validates, or starts from a `str`.
#[derive(Clone)]
pub struct Utf8Bytes(Repr);

#[derive(Clone)]
enum Repr {
    Inline(Inline),
    Shared(Bytes),
}

/// Word-aligned, so that moving a `Utf8Bytes` is a few aligned word copies
/// (byte-granular layouts made the parser's hot path stall on store
/// forwarding).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Inline {
    len: u8,
    buf: [u8; INLINE_CAP],
}

impl Utf8Bytes {
    /// The empty string; does not allocate.
    pub const fn new() -> Self {
        Self(Repr::Inline(Inline {
            len: 0,
            buf: [0; INLINE_CAP],
        }))
    }

    /// A string that points at static memory; does not allocate.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Repr::Shared(Bytes::from_static(s.as_bytes())))
    }

    /// Validates `bytes` as UTF-8 (short values are copied inline).
    ///
    /// # Errors
    ///
    /// Returns the input back, unchanged, when it is not valid UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, Bytes> {
        if std::str::from_utf8(&bytes).is_ok() {
            Ok(Self::from_valid(bytes))
        } else {
            Err(bytes)
        }
    }

    /// Decodes `bytes` as UTF-8, replacing every invalid sequence with U+FFFD
    /// exactly as the WHATWG "UTF-8 decode" algorithm does.
    ///
    /// Valid input longer than the inline capacity is kept without copying.
    #[inline]
    pub fn from_bytes_lossy(bytes: Bytes) -> Self {
        if std::str::from_utf8(&bytes).is_ok() {
            Self::from_valid(bytes)
        } else {
            Self::from(String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    /// Wraps bytes the caller built only from valid UTF-8 pieces. Checked in
    /// debug builds; a violation would be a bug in this crate, not bad input.
    #[inline]
    pub(crate) fn from_valid(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        if bytes.len() <= INLINE_CAP {
            #[allow(unsafe_code)]
            // SAFETY: the caller guarantees `bytes` is valid UTF-8.
            let s = unsafe { std::str::from_utf8_unchecked(&bytes) };
            Self::inline(s)
        } else {
            Self(Repr::Shared(bytes))
        }
    }

    /// Copies a short string inline; `s.len() <= INLINE_CAP`.
    #[inline]
    fn inline(s: &str) -> Self {
        debug_assert!(s.len() <= INLINE_CAP);
        let mut buf = [0; INLINE_CAP];
        buf[..s.len()].copy_from_slice(s.as_bytes());
        // Cannot truncate: `s.len() <= INLINE_CAP`, which fits in a u8.
        #[allow(clippy::cast_possible_truncation)]
        let len = s.len() as u8;
        Self(Repr::Inline(Inline { len, buf }))
    }

    /// Replaces the content with `s`, which the caller has checked is valid
    /// UTF-8, in place when both are short, so that a value rewritten on every
    /// event (the last event ID buffer) is not rebuilt and moved each time.
    #[inline]
    pub(crate) fn set_valid(&mut self, s: &[u8]) {
        debug_assert!(std::str::from_utf8(s).is_ok());
        match &mut self.0 {
            Repr::Inline(inline) if s.len() <= INLINE_CAP => {
                inline.buf[..s.len()].copy_from_slice(s);
                // Cannot truncate: `s.len() <= INLINE_CAP`, which fits in a u8.
                #[allow(clippy::cast_possible_truncation)]
                let len = s.len() as u8;
                inline.len = len;
            }
            _ => *self = Self::from_valid(Bytes::copy_from_slice(s)),
        }
    }

    /// Whether a string of `len` bytes is stored inline.
    pub(crate) const fn fits_inline(len: usize) -> bool {
        len <= INLINE_CAP
    }

    /// The string.
    #[inline]
    pub fn as_str(&self) -> &str {
        #[allow(unsafe_code)]
        // SAFETY: every constructor guarantees the content is valid UTF-8, and
        // it is never mutated afterwards.
        unsafe {
            std::str::from_utf8_unchecked(self.as_bytes())
        }
    }

    /// The string's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline(Inline { len, buf }) => &buf[..usize::from(*len)],
            Repr::Shared(bytes) => bytes,
        }
    }

    /// The string as `Bytes`: free for a long string, a copy for a short one.
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline(_) => Bytes::copy_from_slice(self.as_bytes()),
            Repr::Shared(bytes) => bytes.clone(),
        }
    }
}

impl Default for Utf8Bytes {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for Utf8Bytes {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<str> for Utf8Bytes {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Equality, order and hash are those of the string, whatever the storage, so
// that they agree with `Borrow<str>`.
impl PartialEq for Utf8Bytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Utf8Bytes {}

impl PartialOrd for Utf8Bytes {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Utf8Bytes {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Utf8Bytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        if Self::fits_inline(s.len()) {
            Self::inline(&s)
        } else {
            Self(Repr::Shared(Bytes::from(s.into_bytes())))
        }
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        if Self::fits_inline(s.len()) {
            Self::inline(s)
        } else {
            Self(Repr::Shared(Bytes::copy_from_slice(s.as_bytes())))
        }
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        match s.0 {
            Repr::Inline(_) => Bytes::copy_from_slice(s.as_bytes()),
            Repr::Shared(bytes) => bytes,
        }
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<Utf8Bytes> for str {
    fn eq(&self, other: &Utf8Bytes) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Utf8Bytes> for &str {
    fn eq(&self, other: &Utf8Bytes) -> bool {
        *self == other.as_str()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_replaces_like_whatwg_decode() {
        // A truncated 3-byte sequence is one U+FFFD; a lone continuation byte is another.
        let s = Utf8Bytes::from_bytes_lossy(Bytes::from_static(b"a\xE2\x82b\x80c"));
        assert_eq!(s, "a\u{FFFD}b\u{FFFD}c");
    }

    #[test]
    fn long_valid_input_is_not_copied() {
        let input = Bytes::from(vec![b'x'; 100]);
        let s = Utf8Bytes::from_bytes_lossy(input.clone());
        assert_eq!(s.as_bytes().as_ptr(), input.as_ptr());
    }

    #[test]
    fn storage_does_not_change_equality_or_hash() {
        use std::collections::hash_map::DefaultHasher;
        let long = "y".repeat(40);
        let pairs = [
            (Utf8Bytes::from("short"), Utf8Bytes::from_static("short")),
            (
                Utf8Bytes::from(long.as_str()),
                Utf8Bytes::from(long.clone()),
            ),
        ];
        for (a, b) in pairs {
            assert_eq!(a, b);
            let hash = |s: &Utf8Bytes| {
                let mut h = DefaultHasher::new();
                s.hash(&mut h);
                h.finish()
            };
            assert_eq!(hash(&a), hash(&b));
        }
        let (a, b) = (Utf8Bytes::from("a"), Utf8Bytes::from_static("b"));
        assert!(a < b);
    }

    #[test]
    fn inline_boundary() {
        for len in [0, 1, INLINE_CAP - 1, INLINE_CAP, INLINE_CAP + 1, 100] {
            let s = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let u = Utf8Bytes::from(s.as_str());
            assert_eq!(u.as_str(), s);
            assert_eq!(u.to_bytes(), s.as_bytes());
            assert_eq!(Bytes::from(u.clone()), s.as_bytes());
        }
    }

    #[test]
    fn try_from_bytes_rejects_invalid_utf8() {
        assert!(Utf8Bytes::try_from_bytes(Bytes::from_static(b"\xFF")).is_err());
        assert_eq!(
            Utf8Bytes::try_from_bytes(Bytes::from_static(b"ok")).unwrap(),
            "ok"
        );
    }
}
