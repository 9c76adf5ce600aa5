//! `Utf8Bytes`: a cheaply cloneable, reference-counted string that may share its
//! allocation with the input chunk it was parsed from.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// An immutable UTF-8 string backed by [`Bytes`].
///
/// Cloning is a reference-count increment, never a copy. A value the parser
/// produced may be a view into the chunk it was fed (see the crate docs on
/// memory), so holding it keeps that chunk alive.
///
/// Invariant: the bytes are always valid UTF-8. Every constructor either
/// validates, or starts from a `str`/`String`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// The empty string; does not allocate.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// A string that points at static memory; does not allocate.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Bytes::from_static(s.as_bytes()))
    }

    /// Validates `bytes` as UTF-8 without copying.
    ///
    /// # Errors
    ///
    /// Returns the input back, unchanged, when it is not valid UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, Bytes> {
        if std::str::from_utf8(&bytes).is_ok() {
            Ok(Self(bytes))
        } else {
            Err(bytes)
        }
    }

    /// Decodes `bytes` as UTF-8, replacing every invalid sequence with U+FFFD
    /// exactly as the WHATWG "UTF-8 decode" algorithm does.
    ///
    /// Valid input is kept without copying; invalid input is copied once.
    pub fn from_bytes_lossy(bytes: Bytes) -> Self {
        if std::str::from_utf8(&bytes).is_ok() {
            Self(bytes)
        } else {
            Self::from(String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    /// Wraps bytes the caller built only from valid UTF-8 pieces. Checked in
    /// debug builds; a violation would be a bug in this crate, not bad input.
    pub(crate) fn from_valid(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        #[allow(unsafe_code)]
        // SAFETY: every constructor guarantees the bytes are valid UTF-8 and the
        // bytes are never mutated afterwards (`Bytes` is immutable).
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }

    /// The underlying bytes (cheap to clone).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives up the UTF-8 guarantee and returns the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
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
        &self.0
    }
}

impl Borrow<str> for Utf8Bytes {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// `Hash` must agree with `Borrow<str>`, so hash as a `str` does.
impl Hash for Utf8Bytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Self(Bytes::from(s.into_bytes()))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Self(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
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
    fn valid_input_is_not_copied() {
        let input = Bytes::from_static(b"hello");
        let s = Utf8Bytes::from_bytes_lossy(input.clone());
        assert_eq!(s.as_bytes().as_ptr(), input.as_ptr());
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
