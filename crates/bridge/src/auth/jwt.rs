//! JWT verification: the keys (one per algorithm from its own setting, or
//! many from a JWK set, picked by `kid`), the validation rules, and the
//! claims turned into a [`Grant`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::config::{AuthConfigError, JwtConfig, read};
use super::grant::{Denied, Grant, Topics};

/// Keys tried for a token that names none (`kid`), at most: its
/// algorithm's own key first, then the set's in order. A rotation publishes
/// `kid`s; a token without one must be signed by one of these.
pub(super) const MAX_KIDLESS_KEYS: usize = 4;

/// A verification key: from its own setting (`kid` none: any token of its
/// algorithm) or from the JWK set (then picked by the token's `kid`).
pub(super) struct JwtKey {
    pub(super) kid: Option<String>,
    pub(super) alg: Algorithm,
    key: DecodingKey,
}

/// The JWT verifier of a [`JwtConfig`].
pub(super) struct Jwt {
    pub(super) keys: Vec<JwtKey>,
    validations: HashMap<Algorithm, Validation>,
    topics_claim: String,
    leeway: Duration,
}

/// Keys a JWK set may hold: bounds the signature checks a token without a
/// `kid` can cost.
const MAX_JWKS_KEYS: usize = 32;

impl Jwt {
    /// Reads the keys of `config` and builds its validation rules.
    pub(super) fn load(config: &JwtConfig) -> Result<Self, AuthConfigError> {
        let err = |key: &str, msg: String| Err(AuthConfigError::new(format!("jwt.{key}"), msg));
        if config.algorithms.is_empty() {
            return err(
                "algorithms",
                "name at least one of HS256, RS256, ES256".into(),
            );
        }
        if config.topics_claim.is_empty() {
            return err("topics_claim", "must not be empty".into());
        }
        let mut allowed = Vec::new();
        for name in &config.algorithms {
            allowed.push(match name.as_str() {
                "HS256" => Algorithm::HS256,
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                other => {
                    return err(
                        "algorithms",
                        format!("`{other}` is not accepted (HS256, RS256 or ES256; never none)"),
                    );
                }
            });
        }
        let mut keys = Vec::new();
        for &alg in &allowed {
            if let Some(key) = single_key(config, alg)? {
                keys.push(JwtKey {
                    kid: None,
                    alg,
                    key,
                });
            }
        }
        if let Some(path) = &config.jwks_file {
            keys.extend(load_jwks(path, &allowed)?);
        }
        for &alg in &allowed {
            if !keys.iter().any(|k| k.alg == alg) {
                return err(
                    "algorithms",
                    format!(
                        "{alg:?} needs a key: {}, or a {alg:?} key in jwks_file",
                        match alg {
                            Algorithm::HS256 =>
                                "hs256_secret (SSEGATE_JWT_HS256_SECRET), hs256_secret_file",
                            Algorithm::RS256 => "rs256_public_key_file",
                            _ => "es256_public_key_file",
                        }
                    ),
                );
            }
        }
        let mut validations = HashMap::new();
        for &alg in &allowed {
            let mut validation = Validation::new(alg);
            validation.leeway = config.leeway.as_secs();
            validation.validate_nbf = true;
            let mut required = vec!["exp"];
            if config.audience.is_empty() {
                validation.validate_aud = false;
            } else {
                validation.set_audience(&config.audience);
                required.push("aud");
            }
            if let Some(issuer) = &config.issuer {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            validation.set_required_spec_claims(&required);
            validations.insert(alg, validation);
        }
        Ok(Self {
            keys,
            validations,
            topics_claim: config.topics_claim.clone(),
            leeway: config.leeway,
        })
    }

    /// Verifies a token shaped like a JWT: its signature with the key its
    /// header picks, then its claims.
    pub(super) fn verify(&self, token: &str) -> Result<Grant, Denied> {
        // Only something shaped like a JWT is worth the verifier's time.
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(Denied::Unauthenticated("unknown token".into()));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Denied::Unauthenticated(format!("malformed token: {e}")))?;
        let Some(validation) = self.validations.get(&header.alg) else {
            return Err(Denied::Unauthenticated(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        };
        // The keys that may have signed it: its algorithm's, and of those
        // the one its `kid` names (a key of its own setting has no id and
        // fits any). Without a `kid`, at most `MAX_KIDLESS_KEYS` are tried
        // (each is a signature check: a client must not make the gateway
        // try a whole set per request).
        let limit = if header.kid.is_none() {
            MAX_KIDLESS_KEYS
        } else {
            usize::MAX
        };
        let candidates = self
            .keys
            .iter()
            .filter(|k| {
                k.alg == header.alg
                    && (k.kid.is_none() || header.kid.is_none() || k.kid == header.kid)
            })
            .take(limit);
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
        let topics = match claims.get(&self.topics_claim) {
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
            .and_then(serde_json::Value::as_f64)
            .map(|exp| expiry(exp, self.leeway));
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

/// When a token whose `exp` is `exp` (seconds since the epoch; RFC 7519's
/// numeric dates may be fractional) stops being valid, with `leeway`.
/// Saturating: an `exp` past what the clock can hold is the far future, a
/// negative or non-finite one the epoch (so the token is expired), never a
/// panic.
pub(super) fn expiry(exp: f64, leeway: Duration) -> SystemTime {
    // Year 9999: far enough, and representable on every platform.
    const LAST: f64 = 253_402_300_799.0;
    if !exp.is_finite() {
        return UNIX_EPOCH;
    }
    let secs = exp.clamp(0.0, LAST);
    UNIX_EPOCH
        .checked_add(Duration::from_secs_f64(secs))
        .and_then(|at| at.checked_add(leeway))
        .unwrap_or(UNIX_EPOCH)
}

/// The key for `alg` given by its own setting, if any.
fn single_key(config: &JwtConfig, alg: Algorithm) -> Result<Option<DecodingKey>, AuthConfigError> {
    let err = |key: &str, msg: String| Err(AuthConfigError::new(format!("jwt.{key}"), msg));
    let pem =
        |path: &Path, key: &str, parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>| {
            let text = read(path, &format!("jwt.{key}"))?;
            parse(text.as_bytes()).map(Some).map_err(|e| {
                AuthConfigError::new(format!("jwt.{key}"), format!("{}: {e}", path.display()))
            })
        };
    match alg {
        Algorithm::HS256 => {
            let secret = match (&config.hs256_secret, &config.hs256_secret_file) {
                (Some(s), None) => s.expose().to_string(),
                (None, Some(path)) => read(path, "jwt.hs256_secret_file")?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                (Some(_), Some(_)) => {
                    return err(
                        "hs256_secret_file",
                        "give the secret or a file, not both".into(),
                    );
                }
                (None, None) => return Ok(None),
            };
            // RFC 7518 3.2: the key is at least the hash's size.
            if secret.len() < 32 {
                return err("hs256_secret", "must be at least 32 bytes".into());
            }
            Ok(Some(DecodingKey::from_secret(secret.as_bytes())))
        }
        Algorithm::RS256 => match &config.rs256_public_key_file {
            Some(path) => pem(path, "rs256_public_key_file", DecodingKey::from_rsa_pem),
            None => Ok(None),
        },
        _ => match &config.es256_public_key_file {
            Some(path) => pem(path, "es256_public_key_file", DecodingKey::from_ec_pem),
            None => Ok(None),
        },
    }
}

/// The keys of the JWK set at `path` usable for `allowed`. A key of another
/// type, curve or use, or one whose `alg` is not allowed, is skipped (with a
/// warning): a set published for several purposes is normal. A malformed
/// set, an unusable key of an allowed kind, a repeated `kid` or a set with
/// nothing usable is an error.
fn load_jwks(path: &Path, allowed: &[Algorithm]) -> Result<Vec<JwtKey>, AuthConfigError> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
    let at =
        |msg: String| AuthConfigError::new("jwt.jwks_file", format!("{}: {msg}", path.display()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_dates_may_be_fractional_and_never_overflow() {
        let leeway = Duration::from_secs(30);
        assert_eq!(
            expiry(1_700_000_000.5, leeway),
            UNIX_EPOCH + Duration::from_millis(1_700_000_030_500)
        );
        let far = expiry(18_446_744_073_709_551_615.0, leeway);
        assert!(
            far > UNIX_EPOCH + Duration::from_secs(250_000_000_000),
            "{far:?}"
        );
        assert_eq!(expiry(f64::NAN, leeway), UNIX_EPOCH, "garbage is expired");
        assert_eq!(expiry(-5.0, Duration::ZERO), UNIX_EPOCH);
    }

    /// A verifier over eight HS256 keys with ids `k0`..`k7`.
    fn eight_keys() -> Jwt {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        Jwt {
            keys: (0..8)
                .map(|i| JwtKey {
                    kid: Some(format!("k{i}")),
                    alg: Algorithm::HS256,
                    key: DecodingKey::from_secret(format!("secret-{i}").as_bytes()),
                })
                .collect(),
            validations: HashMap::from([(Algorithm::HS256, validation)]),
            topics_claim: "topics".into(),
            leeway: Duration::ZERO,
        }
    }

    fn token(secret: usize, kid: Option<&str>) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_string);
        let claims = serde_json::json!({ "exp": 4_000_000_000u64, "topics": ["A"] });
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(format!("secret-{secret}").as_bytes()),
        )
        .expect("encodes")
    }

    #[test]
    fn a_token_without_a_kid_is_checked_against_a_few_keys_only() {
        let jwt = eight_keys();
        // Within the first MAX_KIDLESS_KEYS: found by trying.
        assert!(jwt.verify(&token(MAX_KIDLESS_KEYS - 1, None)).is_ok());
        // Past them: refused without trying the whole set.
        let refused = jwt.verify(&token(7, None)).map(|_| ()).unwrap_err();
        assert!(
            matches!(&refused, Denied::Unauthenticated(why) if why == "bad signature"),
            "{refused:?}"
        );
        // A kid picks its key wherever it is in the set.
        assert!(jwt.verify(&token(7, Some("k7"))).is_ok());
        assert!(jwt.verify(&token(7, Some("k9"))).is_err(), "unknown kid");
    }
}
