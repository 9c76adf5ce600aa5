//! Upstream routes: which upstream serves a topic, with which headers, cap
//! and health rules.
//!
//! A pool resolves a topic in this order, and the first that matches wins:
//! a `named` stream (an exact key), then each [`Route`] in the order
//! configured, then the pool's own `url_template` (the shorthand for one
//! route that takes every valid topic). A topic nothing matches is refused
//! as an unknown stream (a 404 at the gateway) before anything is opened
//! upstream.
//!
//! Each route carries its own headers: the pool's `headers` belong to the
//! shorthand and the named streams only, so two providers' credentials
//! never mix.

use std::collections::BTreeSet;
use std::fmt;

use http::HeaderMap;
use sse_health::HealthConfig;

use crate::pack::config::Pack;

/// Which topics a route serves.
#[derive(Clone)]
pub enum TopicMatch {
    /// Glob patterns, any of which matches: `*` stands for any run of
    /// characters (`BTC-*`, `*-USD`, `*`); every other character is itself.
    Patterns(Vec<String>),
    /// Exactly these topics (an allow-list).
    Allow(BTreeSet<String>),
    /// A regular expression the whole topic must match (it is anchored at
    /// both ends whether or not it says so).
    Regex(regex::Regex),
}

impl TopicMatch {
    /// Whether `topic` is one of the route's.
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Patterns(patterns) => patterns.iter().any(|p| glob(p, topic)),
            Self::Allow(topics) => topics.contains(topic),
            Self::Regex(regex) => regex
                .find(topic)
                .is_some_and(|m| m.start() == 0 && m.end() == topic.len()),
        }
    }

    /// A regular expression matched against the whole topic.
    ///
    /// # Errors
    ///
    /// The expression does not compile (or compiles larger than 64 KiB:
    /// a configuration is not allowed to make matching slow).
    pub fn regex(expression: &str) -> Result<Self, regex::Error> {
        regex::RegexBuilder::new(&format!("^(?:{expression})$"))
            .size_limit(64 * 1024)
            .build()
            .map(Self::Regex)
    }
}

/// Equal when written alike (a regex by its source).
impl PartialEq for TopicMatch {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Patterns(a), Self::Patterns(b)) => a == b,
            (Self::Allow(a), Self::Allow(b)) => a == b,
            (Self::Regex(a), Self::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl fmt::Debug for TopicMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Patterns(p) => f.debug_tuple("Patterns").field(p).finish(),
            Self::Allow(a) => f.debug_tuple("Allow").field(a).finish(),
            Self::Regex(r) => f.debug_tuple("Regex").field(&r.as_str()).finish(),
        }
    }
}

/// Whether `topic` matches the glob `pattern`: `*` stands for any run of
/// characters (none included), everything else for itself, and the whole
/// topic must match. Linear in practice: the classic two-pointer walk that
/// backtracks only to the last `*`. Routes and the bridge's token grants
/// share it, so a pattern means the same in both.
pub fn glob(pattern: &str, topic: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), topic.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and where in the text it started matching.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// One upstream route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name, in metrics, logs and the admin view: 1-32 of
    /// `a-z 0-9 _ -`, unique among the pool's routes.
    pub name: String,
    /// The topics it serves.
    pub topics: TopicMatch,
    /// The upstream URL with `{topic}` where the topic goes (as for the
    /// pool's own template: never in the host). Empty for a packed route.
    pub url_template: String,
    /// Packs the route's topics into shared connections (see
    /// [`Pack`]); `None`: one connection per topic, from `url_template`.
    pub pack: Option<Pack>,
    /// Headers sent on this route's requests, and only on them.
    pub headers: HeaderMap,
    /// The most streams this route holds at once, within the pool's
    /// `max_streams`. `None`: only the pool's cap.
    pub max_streams: Option<usize>,
    /// The health rules of this route's streams. `None`: the pool's.
    pub health: Option<HealthConfig>,
}

impl Route {
    /// A route of `topics` to `url_template`, no header, no cap of its own,
    /// the pool's health rules.
    pub fn new(
        name: impl Into<String>,
        topics: TopicMatch,
        url_template: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            topics,
            url_template: url_template.into(),
            pack: None,
            headers: HeaderMap::new(),
            max_streams: None,
            health: None,
        }
    }
}

impl Route {
    /// A packed route of `topics`: they share connections as `pack` says.
    pub fn packed(name: impl Into<String>, topics: TopicMatch, pack: Pack) -> Self {
        let mut route = Self::new(name, topics, "");
        route.pack = Some(pack);
        route
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_topics() {
        let m = glob;
        assert!(m("*", "BTC-USD"));
        assert!(m("BTC-*", "BTC-USD"));
        assert!(m("BTC-*", "BTC-"));
        assert!(!m("BTC-*", "ETH-USD"));
        assert!(!m("BTC-*", "xBTC-USD"), "anchored at the start");
        assert!(m("*-USD", "ETH-USD"));
        assert!(!m("*-USD", "ETH-USDT"), "anchored at the end");
        assert!(m("A*B*C", "AxxBxxC"));
        assert!(m("A*B*C", "ABC"));
        assert!(!m("A*B*C", "AxxCxxB"));
        assert!(m("AAPL", "AAPL"));
        assert!(!m("AAPL", "AAP"));
        assert!(m("**", ""));
        assert!(m("a**", "a"));
        assert!(!m("AAPLX", "AAPL"));
        assert!(!m("a*a*a*a*b", &"a".repeat(60)), "backtracking ends");
    }

    #[test]
    fn a_regex_matches_the_whole_topic_only() {
        let r = TopicMatch::regex("[A-Z]{3}-USD").expect("compiles");
        assert!(r.matches("BTC-USD"));
        assert!(!r.matches("BTC-USDT"));
        assert!(!r.matches("xBTC-USD"));
        let alt = TopicMatch::regex("AAPL|MSFT").expect("compiles");
        assert!(
            alt.matches("MSFT") && !alt.matches("AAPLx"),
            "the anchors group the alternation"
        );
        assert!(TopicMatch::regex("(").is_err());
    }

    #[test]
    fn an_allow_list_is_exact() {
        let a = TopicMatch::Allow(["AAPL".to_string(), "MSFT".to_string()].into());
        assert!(a.matches("AAPL") && !a.matches("AAPL2") && !a.matches("aapl"));
    }
}
