//! The checks the configurations share: what a topic may be, what a URL
//! template may say, and the error that names the key it refuses. Below
//! `config` and `pack`, so both use them without an import circle.

use std::fmt;

use crate::redirect::RedirectPolicy;
use crate::request::UpstreamRequest;

/// A topic the pool accepts: 1 to `max_len` of `A-Z a-z 0-9 . _ -`, not
/// `.` or `..` (it becomes a path segment).
pub(crate) fn valid_topic(topic: &str, max_len: usize) -> bool {
    !topic.is_empty()
        && topic.len() <= max_len
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && topic != "."
        && topic != ".."
}

/// A setting that makes no sense: its key (as the `serde` representation
/// names it, `backoff_initial` or `health.window` say) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key.
    pub key: String,
    /// Why it was refused.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Valid topics need no escaping; encoding anyway keeps the rule in one place.
pub(crate) fn encode_segment(topic: &str) -> String {
    topic
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Checks an upstream URL template: absolute http(s), `{topic}` in the path
/// or query and never in the host, not the gateway's own listener.
pub(crate) fn check_template(
    key: &str,
    template: &str,
    redirects: &RedirectPolicy,
) -> Result<(), ConfigError> {
    let err = |reason: String| Err(ConfigError::new(key, reason));
    if !template.contains("{topic}") {
        return err("the URL template has no {topic}".into());
    }
    let placeholder = template.replace("{topic}", "topic-placeholder");
    let parsed = match UpstreamRequest::get(&placeholder) {
        Ok(parsed) => parsed,
        Err(e) => return err(e.to_string()),
    };
    if parsed
        .url()
        .host_str()
        .is_some_and(|h| h.contains("topic-placeholder"))
    {
        return err("{topic} must not be part of the host: the host never comes from input".into());
    }
    if let Some(own) = redirects.own_listener(parsed.url()) {
        return err(format!("points at the gateway's own listener {own}"));
    }
    Ok(())
}
