//! Topics as NATS subject tokens and key-value keys.
//!
//! A topic passed the pool's allow-list, but that list is the operator's:
//! a topic may hold `.` (NATS's token separator), `*` or `>` (wildcards),
//! spaces or any other byte NATS gives a meaning to or refuses. So a topic
//! becomes one token by a reversible escape: ASCII letters, digits, `-` and
//! `_` stay, every other byte becomes `=` and two upper-case hex digits.
//! Distinct topics give distinct tokens, and a token is a valid key and a
//! valid subject token.

/// The token of `topic`: non-empty, of `[A-Za-z0-9_=-]` only.
pub fn topic_token(topic: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut token = String::with_capacity(topic.len());
    for &b in topic.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            token.push(char::from(b));
        } else {
            token.push('=');
            token.push(char::from(HEX[usize::from(b >> 4)]));
            token.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    if token.is_empty() {
        // The empty topic (never admitted by the pool, but keys must not
        // be empty) gets a token no other topic can have.
        token.push('=');
    }
    token
}

/// The topic of `token`, or `None` when `token` is not one
/// [`topic_token`] makes.
pub fn topic_of(token: &str) -> Option<String> {
    if token == "=" {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'=' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digit = |h: u8| {
                char::from(h)
                    .to_digit(16)
                    .filter(|_| !h.is_ascii_lowercase())
            };
            let (hi, lo) = (digit(hex[0])?, digit(hex[1])?);
            let byte = u8::try_from(hi * 16 + lo).ok()?;
            if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
                return None; // not how `topic_token` writes it
            }
            out.push(byte);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_topics_are_their_own_token() {
        assert_eq!(topic_token("AAPL"), "AAPL");
        assert_eq!(topic_token("btc-usd_1"), "btc-usd_1");
    }

    #[test]
    fn separators_and_wildcards_are_escaped() {
        assert_eq!(topic_token("a.b"), "a=2Eb");
        assert_eq!(topic_token("*>"), "=2A=3E");
        assert_eq!(topic_token("a b"), "a=20b");
        assert_eq!(topic_token("="), "=3D");
        assert_eq!(topic_token(""), "=");
    }

    #[test]
    fn every_token_reads_back_and_is_a_valid_key() {
        for topic in [
            "", "AAPL", "a.b.c", "=", "==", "é/ü", "x y*z>", "-_-", "=3D",
        ] {
            let token = topic_token(topic);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{token}"
            );
            assert_eq!(topic_of(&token).as_deref(), Some(topic), "{token}");
        }
    }

    #[test]
    fn foreign_tokens_are_refused() {
        for token in ["a.b", "=2", "=2e", "=41", "=ZZ", "a b"] {
            assert_eq!(topic_of(token), None, "{token}");
        }
    }
}
