//! Static tokens: one per line, `<name> <token> [<topic pattern>...]`,
//! compared in constant time.

use std::sync::Arc;

use super::config::AuthConfigError;
use super::grant::{Grant, Topics};

/// One holder's token and what it may read.
pub(super) struct StaticToken {
    name: Arc<str>,
    token: Vec<u8>,
    topics: Topics,
}

/// Parses the lines of `text` (the value of `key`; `#` starts a comment)
/// into `out`. `source` names where they came from, for errors (a file).
pub(super) fn parse_tokens(
    text: &str,
    key: &str,
    source: &str,
    out: &mut Vec<StaticToken>,
) -> Result<(), AuthConfigError> {
    let err = |n: usize, why: String| {
        Err(AuthConfigError::new(
            key,
            format!("{source}line {}: {why}", n + 1),
        ))
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(token)) = (words.next(), words.next()) else {
            return err(n, "expected `<name> <token> [<topic pattern>...]`".into());
        };
        if token.len() < 16 {
            return err(
                n,
                format!("the token of `{name}` is shorter than 16 characters"),
            );
        }
        if out.iter().any(|t| t.name.as_ref() == name) {
            return err(n, format!("`{name}` is named twice"));
        }
        let patterns: Vec<String> = words.map(str::to_string).collect();
        out.push(StaticToken {
            name: Arc::from(name),
            token: token.as_bytes().to_vec(),
            topics: if patterns.is_empty() {
                Topics::All
            } else {
                Topics::Patterns(patterns)
            },
        });
    }
    Ok(())
}

/// The grant of the static token `presented` is, if any. Every token is
/// compared, so the time does not tell which (or whether one) came close.
pub(super) fn find(tokens: &[StaticToken], presented: &str) -> Option<Grant> {
    use subtle::ConstantTimeEq as _;
    let mut found = None;
    for t in tokens {
        if bool::from(t.token.ct_eq(presented.as_bytes())) {
            found = Some(t);
        }
    }
    found.map(|t| Grant {
        principal: Arc::from(format!("token:{}", t.name)),
        topics: t.topics.clone(),
        expires: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lines_name_their_holder_and_topics() {
        let mut out = Vec::new();
        parse_tokens(
            "# holders\nalice 0123456789abcdef0123 BTC-* ETH-USD\nbob fedcba98765432100000\n\n",
            "tokens",
            "",
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(&*out[0].name, "alice");
        assert!(out[0].topics.allows("BTC-EUR") && !out[0].topics.allows("AAPL"));
        assert_eq!(out[1].topics, Topics::All);
        let short = parse_tokens("carol short", "tokens", "", &mut Vec::new()).unwrap_err();
        assert!(short.reason.contains("shorter than 16"), "{short}");
        let lone = parse_tokens("carol", "tokens_file", "/x: ", &mut Vec::new()).unwrap_err();
        assert_eq!(lone.key, "tokens_file");
        assert!(lone.reason.starts_with("/x: line 1"), "{lone}");
        let grant = find(&out, "fedcba98765432100000").expect("bob's token");
        assert_eq!(&*grant.principal, "token:bob");
        assert!(
            find(&out, "fedcba9876543210000").is_none(),
            "a prefix is not a token"
        );
    }
}
