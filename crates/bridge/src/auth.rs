//! Optional authentication and authorisation of subscribers.
//!
//! Off unless `[bridge.auth]` names static tokens or a JWT verifier. When on,
//! every stream request must present a token, taken from (in this order)
//! `Authorization: Bearer <token>`, the cookie named by `auth.cookie`, or the
//! query parameter named by `auth.query_param` (browsers' `EventSource`
//! cannot send headers; both are off unless configured).
//!
//! - **Static tokens** (a file, or `SSEGATE_SUBSCRIBER_TOKENS`): one per line,
//!   `<name> <token> [<topic pattern>...]`. The name identifies the holder in
//!   the registry and the logs (the token never appears); no patterns means
//!   every topic. Compared in constant time.
//! - **JWT**: HS256, RS256 and ES256, each only if listed in `algorithms` and
//!   given a key (`none` is never accepted: it is not an algorithm here).
//!   `exp` is required, `nbf` checked, `aud` and `iss` when configured, with
//!   `leeway` on each. The topics a token may read come from a claim
//!   (`topics` by default): an array of patterns, or one space-separated
//!   string. A token without it may read nothing. The holder is its `sub`.
//!
//! A pattern is a topic name where `*` stands for any run of characters
//! (`BTC-*`, `*`). A request is authorised only if every topic it names
//! matches one of its token's patterns, before anything is sent: replayed
//! events (a `Last-Event-ID` resume) pass the same check as live ones.
//!
//! Refusals: 401 with `WWW-Authenticate: Bearer` when the token is missing,
//! malformed, badly signed or expired; 403 when it is valid but a topic is
//! not allowed to it; 429 when its holder has `max_streams_per_token` streams
//! open. A stream ends when its token expires (after an
//! `event: ssegate-expired`), so the client comes back with a fresh token and
//! resumes where it was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
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
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Why the auth configuration cannot be used: the key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfigError(pub String);

impl std::fmt::Display for AuthConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bridge.auth.{}", self.0)
    }
}

impl std::error::Error for AuthConfigError {}

impl AuthConfig {
    /// Whether any verifier is configured (otherwise streams are open).
    pub fn enabled(&self) -> bool {
        self.tokens_file.is_some() || self.tokens.is_some() || self.jwt.is_some()
    }

    /// Reads the files and keys and checks everything.
    ///
    /// # Errors
    ///
    /// The first key that cannot be used, and why.
    pub(crate) fn load(&self) -> Result<Authenticator, AuthConfigError> {
        let err = |msg: String| Err(AuthConfigError(msg));
        if self.max_streams_per_token == 0 {
            return err("max_streams_per_token: must be at least 1".into());
        }
        for (key, name) in [("cookie", &self.cookie), ("query_param", &self.query_param)] {
            if let Some(name) = name
                && (name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
            {
                return err(format!(
                    "{key}: `{name}` is not a plain name (letters, digits, - _ .)"
                ));
            }
        }
        if self
            .query_param
            .as_deref()
            .is_some_and(|q| matches!(q, "topic" | "lastEventId"))
        {
            return err("query_param: `topic` and `lastEventId` are taken".into());
        }
        let mut statics = Vec::new();
        if let Some(path) = &self.tokens_file {
            let text = read(path, "tokens_file")?;
            parse_tokens(
                &text,
                &format!("tokens_file {}", path.display()),
                &mut statics,
            )?;
        }
        if let Some(tokens) = &self.tokens {
            parse_tokens(&tokens.0.replace(';', "\n"), "tokens", &mut statics)?;
        }
        if (self.tokens_file.is_some() || self.tokens.is_some()) && statics.is_empty() {
            return err("tokens: no token given (an empty list would refuse everyone)".into());
        }
        let jwt = self.jwt.as_ref().map(JwtConfig::load).transpose()?;
        Ok(Authenticator {
            enabled: self.enabled(),
            statics,
            jwt,
            cookie: self.cookie.clone(),
            query_param: self.query_param.clone(),
        })
    }
}

fn read(path: &Path, key: &str) -> Result<String, AuthConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| AuthConfigError(format!("{key}: cannot read {}: {e}", path.display())))
}

fn parse_tokens(
    text: &str,
    origin: &str,
    out: &mut Vec<StaticToken>,
) -> Result<(), AuthConfigError> {
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(token)) = (words.next(), words.next()) else {
            return Err(AuthConfigError(format!(
                "{origin}: line {}: expected `<name> <token> [<topic pattern>...]`",
                n + 1
            )));
        };
        if token.len() < 16 {
            return Err(AuthConfigError(format!(
                "{origin}: line {}: the token of `{name}` is shorter than 16 characters",
                n + 1
            )));
        }
        if out.iter().any(|t| t.name.as_ref() == name) {
            return Err(AuthConfigError(format!(
                "{origin}: line {}: `{name}` is named twice",
                n + 1
            )));
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

impl JwtConfig {
    fn load(&self) -> Result<Jwt, AuthConfigError> {
        let err = |msg: String| Err(AuthConfigError(format!("jwt.{msg}")));
        if self.algorithms.is_empty() {
            return err("algorithms: name at least one of HS256, RS256, ES256".into());
        }
        if self.topics_claim.is_empty() {
            return err("topics_claim: must not be empty".into());
        }
        let mut keys = HashMap::new();
        for name in &self.algorithms {
            let (alg, key) = match name.as_str() {
                "HS256" => {
                    let secret = match (&self.hs256_secret, &self.hs256_secret_file) {
                        (Some(s), None) => s.0.clone(),
                        (None, Some(path)) => read(path, "jwt.hs256_secret_file")?
                            .trim_end_matches(['\r', '\n'])
                            .to_string(),
                        (Some(_), Some(_)) => {
                            return err(
                                "hs256_secret_file: give the secret or a file, not both".into()
                            );
                        }
                        (None, None) => {
                            return err("algorithms: HS256 needs hs256_secret (SSEGATE_JWT_HS256_SECRET) or hs256_secret_file".into());
                        }
                    };
                    // RFC 7518 3.2: the key is at least the hash's size.
                    if secret.len() < 32 {
                        return err("hs256_secret: must be at least 32 bytes".into());
                    }
                    (
                        Algorithm::HS256,
                        DecodingKey::from_secret(secret.as_bytes()),
                    )
                }
                "RS256" => {
                    let Some(path) = &self.rs256_public_key_file else {
                        return err("algorithms: RS256 needs rs256_public_key_file".into());
                    };
                    let pem = read(path, "jwt.rs256_public_key_file")?;
                    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                        AuthConfigError(format!(
                            "jwt.rs256_public_key_file: {}: {e}",
                            path.display()
                        ))
                    })?;
                    (Algorithm::RS256, key)
                }
                "ES256" => {
                    let Some(path) = &self.es256_public_key_file else {
                        return err("algorithms: ES256 needs es256_public_key_file".into());
                    };
                    let pem = read(path, "jwt.es256_public_key_file")?;
                    let key = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| {
                        AuthConfigError(format!(
                            "jwt.es256_public_key_file: {}: {e}",
                            path.display()
                        ))
                    })?;
                    (Algorithm::ES256, key)
                }
                other => {
                    return err(format!(
                        "algorithms: `{other}` is not accepted (HS256, RS256 or ES256; never none)"
                    ));
                }
            };
            let mut validation = Validation::new(alg);
            validation.leeway = self.leeway.as_secs();
            validation.validate_nbf = true;
            let mut required = vec!["exp"];
            if self.audience.is_empty() {
                validation.validate_aud = false;
            } else {
                validation.set_audience(&self.audience);
                required.push("aud");
            }
            if let Some(issuer) = &self.issuer {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            validation.set_required_spec_claims(&required);
            keys.insert(alg, (key, validation));
        }
        Ok(Jwt {
            keys,
            topics_claim: self.topics_claim.clone(),
            leeway: self.leeway,
        })
    }
}

/// Which topics a token may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topics {
    All,
    Patterns(Vec<String>),
}

impl Topics {
    fn allows(&self, topic: &str) -> bool {
        match self {
            Self::All => true,
            Self::Patterns(patterns) => patterns.iter().any(|p| glob(p, topic)),
        }
    }
}

struct StaticToken {
    name: Arc<str>,
    token: Vec<u8>,
    topics: Topics,
}

struct Jwt {
    keys: HashMap<Algorithm, (DecodingKey, Validation)>,
    topics_claim: String,
    leeway: Duration,
}

/// The verifier built from [`AuthConfig`].
pub(crate) struct Authenticator {
    enabled: bool,
    statics: Vec<StaticToken>,
    jwt: Option<Jwt>,
    cookie: Option<String>,
    query_param: Option<String>,
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

impl Authenticator {
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Verifies the request's token and checks every topic against it.
    /// `Ok(None)` when auth is off.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        topics: &[String],
    ) -> Result<Option<Grant>, Denied> {
        if !self.enabled {
            return Ok(None);
        }
        let token = self
            .presented(headers, query)
            .ok_or_else(|| Denied::Unauthenticated("no token".into()))?;
        let grant = self.verify(&token)?;
        if let Some(topic) = topics.iter().find(|t| !grant.topics.allows(t)) {
            return Err(Denied::Forbidden(topic.clone()));
        }
        Ok(Some(grant))
    }

    /// The token, from the header, the cookie or the query parameter.
    fn presented(&self, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
        // Another scheme (`Basic` for a proxy, say) is not ours: look on.
        if let Some((scheme, token)) = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.trim().to_string());
        }
        if let Some(name) = &self.cookie {
            let found = headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim_matches('"').to_string());
            if found.is_some() {
                return found;
            }
        }
        let name = self.query_param.as_ref()?;
        url::form_urlencoded::parse(query?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn verify(&self, token: &str) -> Result<Grant, Denied> {
        use subtle::ConstantTimeEq as _;
        // Every static token is compared, so the time does not tell which
        // (or whether one) came close.
        let mut found = None;
        for t in &self.statics {
            if bool::from(t.token.ct_eq(token.as_bytes())) {
                found = Some(t);
            }
        }
        if let Some(t) = found {
            return Ok(Grant {
                principal: Arc::from(format!("token:{}", t.name)),
                topics: t.topics.clone(),
                expires: None,
            });
        }
        let Some(jwt) = &self.jwt else {
            return Err(Denied::Unauthenticated("unknown token".into()));
        };
        // Only something shaped like a JWT is worth the verifier's time.
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(Denied::Unauthenticated("unknown token".into()));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Denied::Unauthenticated(format!("malformed token: {e}")))?;
        let Some((key, validation)) = jwt.keys.get(&header.alg) else {
            return Err(Denied::Unauthenticated(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token, key, validation,
        )
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Denied::Unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "token expired".into(),
                ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
                ErrorKind::InvalidAudience => "wrong audience".into(),
                ErrorKind::InvalidIssuer => "wrong issuer".into(),
                ErrorKind::InvalidSignature => "bad signature".into(),
                ErrorKind::MissingRequiredClaim(c) => format!("missing claim `{c}`"),
                _ => format!("invalid token: {e}"),
            })
        })?;
        let claims = data.claims;
        let topics = match claims.get(&jwt.topics_claim) {
            Some(serde_json::Value::Array(items)) => Topics::Patterns(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            ),
            Some(serde_json::Value::String(s)) => {
                Topics::Patterns(s.split_whitespace().map(str::to_string).collect())
            }
            _ => Topics::Patterns(Vec::new()),
        };
        let sub = claims.get("sub").and_then(|v| v.as_str()).unwrap_or("-");
        let expires = claims
            .get("exp")
            .and_then(serde_json::Value::as_u64)
            .map(|exp| UNIX_EPOCH + Duration::from_secs(exp) + jwt.leeway);
        // RFC 7519 4.1.4: not accepted *on* or after `exp` (the verifier
        // compares whole seconds and would take it for one more second,
        // after its stream was already ended).
        if expires.is_some_and(|at| SystemTime::now() >= at) {
            return Err(Denied::Unauthenticated("token expired".into()));
        }
        Ok(Grant {
            principal: Arc::from(format!("jwt:{sub}")),
            topics,
            expires,
        })
    }
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

/// Streams per token holder: bounded by `max_streams_per_token` each, and
/// in number by the gateway's stream limit (an entry lives only while its
/// holder has a stream).
pub(crate) struct Principals {
    state: Mutex<PrincipalState>,
}

struct PrincipalState {
    max_per: usize,
    open: HashMap<Arc<str>, usize>,
    admitted: u64,
    released: u64,
}

/// A holder's place; dropping it frees it.
pub(crate) struct PrincipalGuard {
    registry: Arc<Principals>,
    principal: Arc<str>,
}

impl Principals {
    pub(crate) fn new(max_per: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(PrincipalState {
                max_per,
                open: HashMap::new(),
                admitted: 0,
                released: 0,
            }),
        })
    }

    pub(crate) fn set_max(&self, max_per: usize) {
        self.state.lock().max_per = max_per;
    }

    /// Takes a place for `principal`, or `None` at its limit.
    pub(crate) fn admit(self: &Arc<Self>, principal: Arc<str>) -> Option<PrincipalGuard> {
        let mut s = self.state.lock();
        let max = s.max_per;
        let count = s.open.entry(principal.clone()).or_insert(0);
        // `max` is at least 1, so a refused holder already has an entry.
        if *count >= max {
            return None;
        }
        *count += 1;
        s.admitted += 1;
        crate::metrics::record_principals(s.open.len());
        Some(PrincipalGuard {
            registry: self.clone(),
            principal,
        })
    }

    /// Holders with a stream, streams admitted and released (ever).
    pub(crate) fn counts(&self) -> (usize, usize, u64, u64) {
        let s = self.state.lock();
        (s.open.len(), s.open.values().sum(), s.admitted, s.released)
    }
}

impl Drop for PrincipalGuard {
    fn drop(&mut self) {
        let mut s = self.registry.state.lock();
        s.released += 1;
        if let Some(count) = s.open.get_mut(&self.principal) {
            *count -= 1;
            if *count == 0 {
                s.open.remove(&self.principal);
            }
        }
        crate::metrics::record_principals(s.open.len());
    }
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

    #[test]
    fn token_lines_name_their_holder_and_topics() {
        let mut out = Vec::new();
        parse_tokens(
            "# holders\nalice 0123456789abcdef0123 BTC-* ETH-USD\nbob fedcba98765432100000\n\n",
            "t",
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(&*out[0].name, "alice");
        assert!(out[0].topics.allows("BTC-EUR") && !out[0].topics.allows("AAPL"));
        assert_eq!(out[1].topics, Topics::All);
        let short = parse_tokens("carol short", "t", &mut Vec::new()).unwrap_err();
        assert!(short.0.contains("shorter than 16"), "{short}");
        let lone = parse_tokens("carol", "t", &mut Vec::new()).unwrap_err();
        assert!(lone.0.contains("line 1"), "{lone}");
    }

    #[test]
    fn a_config_without_keys_or_with_none_is_refused() {
        let mut config = AuthConfig {
            jwt: Some(JwtConfig {
                algorithms: vec!["none".into()],
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        };
        let e = config.load().err().unwrap();
        assert!(e.to_string().contains("never none"), "{e}");
        config.jwt.as_mut().unwrap().algorithms = vec!["RS256".into()];
        let e = config.load().err().unwrap();
        assert!(e.to_string().contains("rs256_public_key_file"), "{e}");
        config.jwt.as_mut().unwrap().algorithms = vec!["HS256".into()];
        config.jwt.as_mut().unwrap().hs256_secret = Some(Secret::new("short"));
        let e = config.load().err().unwrap();
        assert!(e.to_string().contains("32 bytes"), "{e}");
    }

    #[test]
    fn the_registry_counts_streams_per_holder_and_forgets_idle_ones() {
        let registry = Principals::new(2);
        let a: Arc<str> = Arc::from("token:a");
        let first = registry.admit(a.clone()).unwrap();
        let second = registry.admit(a.clone()).unwrap();
        assert!(
            registry.admit(a.clone()).is_none(),
            "a third is over the limit"
        );
        let b = registry.admit(Arc::from("token:b")).unwrap();
        assert_eq!(registry.counts(), (2, 3, 3, 0));
        drop((first, second, b));
        assert_eq!(registry.counts(), (0, 0, 3, 3));
    }
}
