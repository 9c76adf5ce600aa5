//! What a verified token may read, and why a request is refused.

use std::sync::Arc;
use std::time::SystemTime;

/// Which topics a token may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topics {
    All,
    Patterns(Vec<String>),
}

impl Topics {
    pub(super) fn allows(&self, topic: &str) -> bool {
        match self {
            Self::All => true,
            Self::Patterns(patterns) => patterns.iter().any(|p| glob(p, topic)),
        }
    }
}

/// A verified token.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// Who holds it: `token:<name>` or `jwt:<sub>`.
    pub(crate) principal: Arc<str>,
    pub(crate) topics: Topics,
    /// When streams opened with it must end (`exp` plus the leeway).
    pub(crate) expires: Option<SystemTime>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denied {
    /// 401: no token, or one that is not valid (the reason is for the client).
    Unauthenticated(String),
    /// 403: the token may not read this topic.
    Forbidden(String),
}

/// `*` matches any run of characters (none included); everything else
/// matches itself.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in the text it started matching.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_shell_globs_with_star_only() {
        assert!(glob("*", ""));
        assert!(glob("*", "AAPL"));
        assert!(glob("BTC-*", "BTC-USD"));
        assert!(!glob("BTC-*", "ETH-USD"));
        assert!(glob("*-USD", "ETH-USD"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("AAPL", "AAPL"));
        assert!(!glob("AAPL", "AAPLX"));
        assert!(!glob("AAPLX", "AAPL"));
        assert!(glob("a**", "a"));
    }
}
