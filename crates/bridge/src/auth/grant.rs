//! What a verified token may read, and why a request is refused.

use std::sync::Arc;
use std::time::SystemTime;

use sse_conn_pool::glob;

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
