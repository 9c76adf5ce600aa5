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
//! - **Key rotation**: `jwks_file`, a JSON Web Key Set (RFC 7517), holds
//!   several keys (at most 32). A token's `kid` picks its key; a token
//!   without one is tried against each key of its algorithm. Publish the
//!   next key in the set, reload, sign with it, and drop the old key at a
//!   later reload: no valid token is refused on the way.
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

/// Keys a JWK set may hold: bounds the signature checks a token without a
/// `kid` can cost.
const MAX_JWKS_KEYS: usize = 32;

impl JwtConfig {
    fn load(&self) -> Result<Jwt, AuthConfigError> {
        let err = |msg: String| Err(AuthConfigError(format!("jwt.{msg}")));
        if self.algorithms.is_empty() {
            return err("algorithms: name at least one of HS256, RS256, ES256".into());
        }
        if self.topics_claim.is_empty() {
            return err("topics_claim: must not be empty".into());
        }
        let mut allowed = Vec::new();
        for name in &self.algorithms {
            allowed.push(match name.as_str() {
                "HS256" => Algorithm::HS256,
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                other => {
                    return err(format!(
                        "algorithms: `{other}` is not accepted (HS256, RS256 or ES256; never none)"
                    ));
                }
            });
        }
        let mut keys = Vec::new();
        for &alg in &allowed {
            if let Some(key) = self.single_key(alg)? {
                keys.push(JwtKey {
                    kid: None,
                    alg,
                    key,
                });
            }
        }
        if let Some(path) = &self.jwks_file {
            keys.extend(load_jwks(path, &allowed)?);
        }
        for &alg in &allowed {
            if !keys.iter().any(|k| k.alg == alg) {
                return err(format!(
                    "algorithms: {alg:?} needs a key: {}, or a {alg:?} key in jwks_file",
                    match alg {
                        Algorithm::HS256 =>
                            "hs256_secret (SSEGATE_JWT_HS256_SECRET), hs256_secret_file",
                        Algorithm::RS256 => "rs256_public_key_file",
                        _ => "es256_public_key_file",
                    }
                ));
            }
        }
        let mut validations = HashMap::new();
        for &alg in &allowed {
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
            validations.insert(alg, validation);
        }
        Ok(Jwt {
            keys,
            validations,
            topics_claim: self.topics_claim.clone(),
            leeway: self.leeway,
        })
    }

    /// The key for `alg` given by its own setting, if any.
    fn single_key(&self, alg: Algorithm) -> Result<Option<DecodingKey>, AuthConfigError> {
        let err = |msg: String| Err(AuthConfigError(format!("jwt.{msg}")));
        let pem =
            |path: &PathBuf,
             key: &str,
             parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>| {
                let text = read(path, &format!("jwt.{key}"))?;
                parse(text.as_bytes())
                    .map(Some)
                    .map_err(|e| AuthConfigError(format!("jwt.{key}: {}: {e}", path.display())))
            };
        match alg {
            Algorithm::HS256 => {
                let secret = match (&self.hs256_secret, &self.hs256_secret_file) {
                    (Some(s), None) => s.0.clone(),
                    (None, Some(path)) => read(path, "jwt.hs256_secret_file")?
                        .trim_end_matches(['\r', '\n'])
                        .to_string(),
                    (Some(_), Some(_)) => {
                        return err("hs256_secret_file: give the secret or a file, not both".into());
                    }
                    (None, None) => return Ok(None),
                };
                // RFC 7518 3.2: the key is at least the hash's size.
                if secret.len() < 32 {
                    return err("hs256_secret: must be at least 32 bytes".into());
                }
                Ok(Some(DecodingKey::from_secret(secret.as_bytes())))
            }
            Algorithm::RS256 => match &self.rs256_public_key_file {
                Some(path) => pem(path, "rs256_public_key_file", DecodingKey::from_rsa_pem),
                None => Ok(None),
            },
            _ => match &self.es256_public_key_file {
                Some(path) => pem(path, "es256_public_key_file", DecodingKey::from_ec_pem),
                None => Ok(None),
            },
        }
    }
}

/// The keys of the JWK set at `path` usable for `allowed`. A key of another
/// type, curve or use, or one whose `alg` is not allowed, is skipped (with a
/// warning): a set published for several purposes is normal. A malformed
/// set, an unusable key of an allowed kind, a repeated `kid` or a set with
/// nothing usable is an error.
fn load_jwks(path: &Path, allowed: &[Algorithm]) -> Result<Vec<JwtKey>, AuthConfigError> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
    let at = |msg: String| AuthConfigError(format!("jwt.jwks_file: {}: {msg}", path.display()));
    let text = read(path, "jwt.jwks_file")?;
    let set: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| at(format!("not JSON: {e}")))?;
    let Some(entries) = set.get("keys").and_then(serde_json::Value::as_array) else {
        return Err(at("not a JWK set: expected {\"keys\": [...]}".into()));
    };
    if entries.len() > MAX_JWKS_KEYS {
        return Err(at(format!(
            "{} keys; at most {MAX_JWKS_KEYS} are accepted",
            entries.len()
        )));
    }
    let mut keys: Vec<JwtKey> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let label = entry
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .map_or_else(|| format!("key {i}"), |kid| format!("key `{kid}`"));
        let skip = |why: &str| {
            tracing::warn!(file = %path.display(), "jwks_file: {label} skipped: {why}");
        };
        let jwk: Jwk = match serde_json::from_value(entry.clone()) {
            Ok(jwk) => jwk,
            Err(e) => {
                skip(&format!("not a key this gateway can use ({e})"));
                continue;
            }
        };
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            skip("its `use` is not `sig`");
            continue;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
            _ => {
                skip("only RSA, EC P-256 and symmetric keys are used");
                continue;
            }
        };
        if let Some(declared) = &jwk.common.key_algorithm
            && !matches!(
                (declared, alg),
                (KeyAlgorithm::RS256, Algorithm::RS256)
                    | (KeyAlgorithm::ES256, Algorithm::ES256)
                    | (KeyAlgorithm::HS256, Algorithm::HS256)
            )
        {
            skip(&format!(
                "its `alg` is {declared:?}; only {alg:?} fits this key"
            ));
            continue;
        }
        if !allowed.contains(&alg) {
            skip(&format!("{alg:?} is not in jwt.algorithms"));
            continue;
        }
        if let AlgorithmParameters::OctetKey(p) = &jwk.algorithm
            && p.value.trim_end_matches('=').len() * 6 / 8 < 32
        {
            return Err(at(format!(
                "{label}: an HS256 key must be at least 32 bytes"
            )));
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| at(format!("{label}: {e}")))?;
        let kid = jwk.common.key_id.clone();
        if kid.is_some() && keys.iter().any(|k| k.kid == kid) {
            return Err(at(format!("{label} appears twice")));
        }
        keys.push(JwtKey { kid, alg, key });
    }
    if keys.is_empty() {
        return Err(at(format!(
            "no key in it is usable for {allowed:?} (see the warnings)"
        )));
    }
    Ok(keys)
}

/// Whether `e` is about the claims (so the signature held).
fn is_claim_error(e: &jsonwebtoken::errors::Error) -> bool {
    use jsonwebtoken::errors::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::ExpiredSignature
            | ErrorKind::ImmatureSignature
            | ErrorKind::InvalidAudience
            | ErrorKind::InvalidIssuer
            | ErrorKind::InvalidSubject
            | ErrorKind::MissingRequiredClaim(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_)
    )
}

/// Why a token whose signature held is refused, in a client's words.
fn claim_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim `{c}`"),
        _ => format!("invalid token: {e}"),
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

/// A verification key: from its own setting (`kid` none: any token of its
/// algorithm) or from the JWK set (then picked by the token's `kid`).
struct JwtKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

struct Jwt {
    keys: Vec<JwtKey>,
    validations: HashMap<Algorithm, Validation>,
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

    /// The JWT verification keys in use (for `/debug/vars`): an operator
    /// rotating a key sees which ids a reload took.
    pub(crate) fn jwt_keys(&self) -> serde_json::Value {
        let keys = self.jwt.iter().flat_map(|jwt| &jwt.keys);
        keys.map(|k| serde_json::json!({"alg": format!("{:?}", k.alg), "kid": k.kid}))
            .collect()
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
        let Some(validation) = jwt.validations.get(&header.alg) else {
            return Err(Denied::Unauthenticated(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        };
        // The keys that may have signed it: its algorithm's, and of those
        // the one its `kid` names (a key of its own setting has no id and
        // fits any). Without a `kid`, each is tried: at most the set's bound.
        let candidates = jwt.keys.iter().filter(|k| {
            k.alg == header.alg && (k.kid.is_none() || header.kid.is_none() || k.kid == header.kid)
        });
        let mut data = None;
        let mut tried = false;
        for candidate in candidates {
            tried = true;
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token,
                &candidate.key,
                validation,
            ) {
                Ok(verified) => {
                    data = Some(verified);
                    break;
                }
                // The signature held (it is checked first): the claims did
                // not, and no other key changes that.
                Err(e) if is_claim_error(&e) => {
                    return Err(Denied::Unauthenticated(claim_error(&e)));
                }
                // Not this key (a bad signature, or a key that cannot check
                // it): the next one may.
                Err(_) => {}
            }
        }
        let Some(data) = data else {
            return Err(Denied::Unauthenticated(match (&header.kid, tried) {
                (Some(kid), false) => format!("unknown key id `{kid}`"),
                _ => "bad signature".into(),
            }));
        };
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
