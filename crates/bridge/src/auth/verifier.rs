//! The verifier: an [`AuthConfig`] loaded (files read, keys parsed) into
//! one [`Authenticator`] that finds a request's token and checks it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use parking_lot::Mutex;

use super::config::{AuthConfig, AuthConfigError, read};
use super::grant::{Denied, Grant};
use super::jwt::Jwt;
use super::tokens::{self, StaticToken, parse_tokens};

/// The verifier built from [`AuthConfig`].
pub(crate) struct Authenticator {
    enabled: bool,
    statics: Vec<StaticToken>,
    jwt: Option<Jwt>,
    cookie: Option<String>,
    query_param: Option<String>,
    /// JWTs verified, with their grants, until they expire: a client that
    /// reconnects with the same token costs a map lookup, not a signature
    /// check. Keyed by the whole token (the map's hasher is randomly
    /// keyed), at most [`CACHE_MAX`] entries; a reload builds a new
    /// verifier, and so an empty cache.
    cache: Mutex<HashMap<Arc<str>, Grant>>,
}

/// Verified tokens remembered at most.
const CACHE_MAX: usize = 4096;

impl AuthConfig {
    /// Reads the files and keys and checks everything.
    ///
    /// # Errors
    ///
    /// The first key that cannot be used, and why.
    pub(crate) fn load(&self) -> Result<Authenticator, AuthConfigError> {
        let err = |key: &str, msg: String| Err(AuthConfigError::new(key, msg));
        if self.max_streams_per_token == 0 {
            return err("max_streams_per_token", "must be at least 1".into());
        }
        for (key, name) in [("cookie", &self.cookie), ("query_param", &self.query_param)] {
            if let Some(name) = name
                && (name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
            {
                return err(
                    key,
                    format!("`{name}` is not a plain name (letters, digits, - _ .)"),
                );
            }
        }
        if self
            .query_param
            .as_deref()
            .is_some_and(|q| matches!(q, "topic" | "lastEventId"))
        {
            return err("query_param", "`topic` and `lastEventId` are taken".into());
        }
        let mut statics = Vec::new();
        if let Some(path) = &self.tokens_file {
            let text = read(path, "tokens_file")?;
            let source = format!("{}: ", path.display());
            parse_tokens(&text, "tokens_file", &source, &mut statics)?;
        }
        if let Some(tokens) = &self.tokens {
            parse_tokens(
                &tokens.expose().replace(';', "\n"),
                "tokens",
                "",
                &mut statics,
            )?;
        }
        if (self.tokens_file.is_some() || self.tokens.is_some()) && statics.is_empty() {
            return err(
                "tokens",
                "no token given (an empty list would refuse everyone)".into(),
            );
        }
        let jwt = self.jwt.as_ref().map(Jwt::load).transpose()?;
        Ok(Authenticator {
            enabled: self.enabled(),
            statics,
            jwt,
            cookie: self.cookie.clone(),
            query_param: self.query_param.clone(),
            cache: Mutex::default(),
        })
    }
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
        if let Some(grant) = tokens::find(&self.statics, token) {
            return Ok(grant);
        }
        let Some(jwt) = &self.jwt else {
            return Err(Denied::Unauthenticated("unknown token".into()));
        };
        // Only something shaped like a JWT is worth the verifier's time.
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(Denied::Unauthenticated("unknown token".into()));
        }
        let now = SystemTime::now();
        if let Some(grant) = self.cache.lock().get(token)
            && grant.expires.is_none_or(|at| now < at)
        {
            crate::metrics::record_jwt_verified(true);
            return Ok(grant.clone());
        }
        let grant = jwt.verify(token)?;
        crate::metrics::record_jwt_verified(false);
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, g| g.expires.is_none_or(|at| now < at));
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(Arc::from(token), grant.clone());
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::{JwtConfig, Secret};

    #[test]
    fn a_verified_token_costs_a_lookup_until_it_expires() {
        let secret = "s".repeat(40);
        let auth = AuthConfig {
            jwt: Some(JwtConfig {
                algorithms: vec!["HS256".into()],
                hs256_secret: Some(Secret::new(&secret)),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        }
        .load()
        .expect("an HS256 verifier");
        let claims = serde_json::json!({ "sub": "a", "exp": 4_000_000_000u64, "topics": ["A"] });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encodes");
        let grant = auth.verify(&token).expect("valid");
        assert_eq!(&*grant.principal, "jwt:a");
        assert_eq!(auth.cache.lock().len(), 1, "remembered");
        assert_eq!(
            auth.verify(&token).expect("again").principal,
            grant.principal
        );
        assert_eq!(auth.cache.lock().len(), 1);

        // What the cache holds is answered without a signature check (a
        // token shaped like a JWT whose signature would never verify) ...
        let now = SystemTime::now();
        let unsigned = "e30.e30.bm90LWEtc2lnbmF0dXJl";
        let cached = |expires| Grant {
            expires: Some(expires),
            ..grant.clone()
        };
        auth.cache
            .lock()
            .insert(Arc::from(unsigned), cached(now + Duration::from_secs(60)));
        assert!(auth.verify(unsigned).is_ok(), "served from the cache");
        // ... until the grant expires: then it is checked again, and refused.
        auth.cache
            .lock()
            .insert(Arc::from(unsigned), cached(now - Duration::from_secs(1)));
        assert!(auth.verify(unsigned).is_err(), "checked again once expired");
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
        assert_eq!(e.key, "jwt.algorithms");
        assert!(e.to_string().contains("never none"), "{e}");
        config.jwt.as_mut().unwrap().algorithms = vec!["RS256".into()];
        let e = config.load().err().unwrap();
        assert!(e.to_string().contains("rs256_public_key_file"), "{e}");
        config.jwt.as_mut().unwrap().algorithms = vec!["HS256".into()];
        config.jwt.as_mut().unwrap().hs256_secret = Some(Secret::new("short"));
        let e = config.load().err().unwrap();
        assert_eq!(e.key, "jwt.hs256_secret");
        assert!(e.to_string().contains("32 bytes"), "{e}");
    }
}
