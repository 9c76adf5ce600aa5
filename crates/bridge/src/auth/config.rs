//! `[bridge.auth]`: who may subscribe. Plain data with serde; loading it
//! (reading files, parsing keys) is `verifier`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `[bridge.auth]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// A file of static tokens, one per line: `<name> <token> [<pattern>...]`
    /// (`#` starts a comment). Read at start and on reload.
    pub tokens_file: Option<PathBuf>,
    /// Static tokens in the same format, lines separated by newlines or `;`
    /// (set from `SSEGATE_SUBSCRIBER_TOKENS`, not in the file).
    pub tokens: Option<Secret>,
    /// The JWT verifier, if any.
    pub jwt: Option<JwtConfig>,
    /// A cookie that may carry the token (for browsers). Default none.
    pub cookie: Option<String>,
    /// A query parameter that may carry the token (for browsers that cannot
    /// send cookies to the gateway's origin). Default none: such URLs end up
    /// in proxy logs and browser history.
    pub query_param: Option<String>,
    /// Streams one token holder may have open at once. Default 100.
    pub max_streams_per_token: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            tokens_file: None,
            tokens: None,
            jwt: None,
            cookie: None,
            query_param: None,
            max_streams_per_token: 100,
        }
    }
}

/// `[bridge.auth.jwt]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted algorithms: any of `HS256`, `RS256`, `ES256`.
    pub algorithms: Vec<String>,
    /// The HS256 secret (set from `SSEGATE_JWT_HS256_SECRET`).
    pub hs256_secret: Option<Secret>,
    /// A file holding the HS256 secret (its bytes, trailing newline removed).
    pub hs256_secret_file: Option<PathBuf>,
    /// The RS256 public key (PEM).
    pub rs256_public_key_file: Option<PathBuf>,
    /// The ES256 (P-256) public key (PEM).
    pub es256_public_key_file: Option<PathBuf>,
    /// A JSON Web Key Set (RFC 7517) file: several keys, each picked by the
    /// token's `kid`, so that a signing key can be rotated without a moment
    /// when valid tokens are refused. Keys of other types or uses, and of
    /// algorithms not in `algorithms`, are skipped. Re-read on reload.
    pub jwks_file: Option<PathBuf>,
    /// Accepted audiences; when set, `aud` is required and must be one.
    pub audience: Vec<String>,
    /// The required issuer, if any.
    pub issuer: Option<String>,
    /// The claim listing the topic patterns a token may read.
    pub topics_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            algorithms: Vec::new(),
            hs256_secret: None,
            hs256_secret_file: None,
            rs256_public_key_file: None,
            es256_public_key_file: None,
            jwks_file: None,
            audience: Vec::new(),
            issuer: None,
            topics_claim: "topics".into(),
            leeway: Duration::from_secs(30),
        }
    }
}

/// A secret from the configuration: never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself (to verify with; never to print).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why the auth configuration cannot be used: the key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfigError {
    /// The key, as in the `[bridge.auth]` table (`jwt.algorithms`, say).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl AuthConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for AuthConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for AuthConfigError {}

impl AuthConfig {
    /// Whether any verifier is configured (otherwise streams are open).
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.tokens.is_some() || self.jwt.is_some()
    }
}

/// Reads the file `path` named by `key`.
pub(super) fn read(path: &Path, key: &str) -> Result<String, AuthConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| AuthConfigError::new(key, format!("cannot read {}: {e}", path.display())))
}
