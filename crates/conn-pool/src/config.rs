//! A pool's configuration, checking it, and (with the `serde` feature) reading
//! it from a table of keys.
//!
//! Each configuration owns its keys, its defaults and its validation:
//! [`PoolConfig`] (`url_template`, `named`, `headers`, `max_streams`, ...),
//! [`StreamConfig`] (`max_line_bytes`, `max_event_bytes`,
//! `max_sockets_per_host`, `channel_capacity`, `health_rotation`,
//! `redirect_hosts`, and the `health` table), the machine's `Config` (its own flat keys,
//! `connect_timeout`, `backoff_initial`, ...), [`TlsConfig`] and
//! [`AttemptLimits`]. An application that writes them all in one table (as
//! ssegate's `[upstream]` does) gives each its own keys and composes the
//! results: `pool.stream = stream; pool.stream.machine = machine`.
//!
//! [`TlsConfig`]: crate::TlsConfig
//! [`AttemptLimits`]: crate::AttemptLimits

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use http::HeaderMap;

use crate::request::UpstreamRequest;
use crate::stream::StreamConfig;
use crate::throttle::AttemptLimits;

/// How the pool maps topics to upstream streams, and its limits.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The upstream URL with `{topic}` where the topic goes, as one
    /// percent-encoded path segment or query value. The host never comes from
    /// input.
    pub url_template: String,
    /// Named static streams: these keys map to these URLs (any host)
    /// instead of the template. With an empty template, only these keys
    /// exist.
    pub named: BTreeMap<String, String>,
    /// The most streams to one host (host and port) at once. Default 50.
    pub max_streams_per_host: usize,
    /// Headers sent on every upstream request.
    pub headers: HeaderMap,
    /// The most upstream streams at once. Default 50 (the old plan's cap).
    pub max_streams: usize,
    /// How long a stream stays open after its last subscriber left, so that a
    /// quick return does not reconnect. Default 5 min.
    pub idle_linger: Duration,
    /// The longest topic accepted. Default 64.
    pub max_topic_len: usize,
    /// How long [`Pool::subscribe_or_wait`](crate::Pool::subscribe_or_wait) waits for a free stream slot when
    /// the pool is at its cap. Default zero: refuse at once.
    pub pending_wait: Duration,
    /// How many subscriptions may wait at once; more are refused at once
    /// ([`PoolError::QueueFull`](crate::PoolError::QueueFull)). Default 128.
    pub max_pending: usize,
    /// What each stream does. Its `connections` (the per-host socket cap and
    /// HTTP/2 sharing) are shared by all of the pool's streams. Its `seed` is
    /// replaced per stream (see `seed`).
    pub stream: StreamConfig,
    /// How long an upstream's stop answer for a topic (404, 410, 204, another
    /// 4xx, a refused redirect) is remembered: meanwhile the topic is
    /// refused at once with that answer, and its slot is free from the
    /// moment it came. Default 60 s.
    pub negative_ttl: Duration,
    /// Seeds every stream's jitter (mixed with its topic). `None` (default):
    /// drawn from the operating system's randomness when the pool starts,
    /// so two gateways retrying the same topic never do it in lockstep;
    /// give one for reproducible tests.
    pub seed: Option<u64>,
}

impl PoolConfig {
    /// A pool of streams from `url_template`, with the defaults.
    pub fn new(url_template: impl Into<String>) -> Self {
        Self {
            url_template: url_template.into(),
            named: BTreeMap::new(),
            max_streams_per_host: 50,
            headers: HeaderMap::new(),
            max_streams: 50,
            idle_linger: Duration::from_secs(300),
            max_topic_len: 64,
            pending_wait: Duration::ZERO,
            max_pending: 128,
            stream: StreamConfig::default(),
            negative_ttl: Duration::from_secs(60),
            seed: None,
        }
    }
}

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
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
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

impl Default for PoolConfig {
    /// No URL template and no named stream (so not valid as it is), every
    /// other setting at its default.
    fn default() -> Self {
        Self::new("")
    }
}

impl PoolConfig {
    /// Checks everything: the URL template (absolute http(s), `{topic}` in
    /// the path or query, never in the host) or the named streams, the
    /// caps, and the stream's settings.
    ///
    /// # Errors
    ///
    /// The first key that makes no sense, and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.url_template.is_empty() && self.named.is_empty() {
            return Err(ConfigError::new(
                "url_template",
                "required (or give named streams)",
            ));
        }
        if !self.url_template.is_empty() {
            let err = |reason: String| Err(ConfigError::new("url_template", reason));
            if !self.url_template.contains("{topic}") {
                return err("the URL template has no {topic}".into());
            }
            let template = self.url_template.replace("{topic}", "topic-placeholder");
            let parsed = match UpstreamRequest::get(&template) {
                Ok(parsed) => parsed,
                Err(e) => return err(e.to_string()),
            };
            if parsed
                .url()
                .host_str()
                .is_some_and(|h| h.contains("topic-placeholder"))
            {
                return err(
                    "{topic} must not be part of the host: the host never comes from input".into(),
                );
            }
            if let Some(own) = self.stream.redirects.own_listener(parsed.url()) {
                return err(format!("points at the gateway's own listener {own}"));
            }
        }
        for (key, url) in &self.named {
            if !valid_topic(key, self.max_topic_len) {
                return Err(ConfigError::new(
                    format!("named.{key}"),
                    "not a valid stream name (1-64 of A-Z a-z 0-9 . _ -)",
                ));
            }
            let parsed = UpstreamRequest::get(url)
                .map_err(|e| ConfigError::new(format!("named.{key}"), e.to_string()))?;
            if let Some(own) = self.stream.redirects.own_listener(parsed.url()) {
                return Err(ConfigError::new(
                    format!("named.{key}"),
                    format!("points at the gateway's own listener {own}"),
                ));
            }
        }
        for (key, value) in [
            ("max_streams", self.max_streams),
            ("max_streams_per_host", self.max_streams_per_host),
            ("max_topic_len", self.max_topic_len),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        self.stream.validate()
    }
}

impl StreamConfig {
    /// Checks the stream's settings, the machine's and health's included.
    ///
    /// # Errors
    ///
    /// The first key that makes no sense, and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("max_line_bytes", self.limits.line_len()),
            ("max_event_bytes", self.limits.event_size()),
            ("channel_capacity", self.channel_capacity),
            ("max_sockets_per_host", self.connections.max_per_host()),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        self.machine
            .validate()
            .map_err(|e| ConfigError::new(e.key(), e.reason))?;
        self.health
            .validate()
            .map_err(|e| ConfigError::new(format!("health.{}", e.key), e.reason))
    }
}

impl AttemptLimits {
    /// Checks the limits.
    ///
    /// # Errors
    ///
    /// A zero count or a rate that is not a positive number.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent == 0 {
            return Err(ConfigError::new("max_concurrent", "must be at least 1"));
        }
        if self.burst == 0 {
            return Err(ConfigError::new("burst", "must be at least 1"));
        }
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(ConfigError::new("per_second", "must be a positive number"));
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
mod keys {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use http::{HeaderMap, HeaderName, HeaderValue};
    use serde::{Deserialize, Deserializer};
    use sse_health::HealthConfig;

    use crate::config::PoolConfig;
    use crate::redirect::RedirectPolicy;
    use crate::stream::StreamConfig;
    use crate::transport::Connections;

    /// `PoolConfig`'s own keys (its `stream` is composed by the caller).
    #[derive(Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct PoolKeys {
        url_template: String,
        named: BTreeMap<String, String>,
        #[serde(deserialize_with = "headers")]
        headers: HeaderMap,
        max_streams: usize,
        max_streams_per_host: usize,
        #[serde(with = "humantime_serde")]
        idle_linger: Duration,
        max_topic_len: usize,
        #[serde(with = "humantime_serde")]
        pending_wait: Duration,
        max_pending: usize,
        #[serde(with = "humantime_serde")]
        negative_ttl: Duration,
        seed: Option<u64>,
    }

    impl Default for PoolKeys {
        fn default() -> Self {
            let c = PoolConfig::default();
            Self {
                url_template: c.url_template,
                named: c.named,
                headers: c.headers,
                max_streams: c.max_streams,
                max_streams_per_host: c.max_streams_per_host,
                idle_linger: c.idle_linger,
                max_topic_len: c.max_topic_len,
                pending_wait: c.pending_wait,
                max_pending: c.max_pending,
                negative_ttl: c.negative_ttl,
                seed: c.seed,
            }
        }
    }

    /// Header names and values as strings; a bad one is an error naming it.
    fn headers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HeaderMap, D::Error> {
        use serde::de::Error as _;
        let map = BTreeMap::<String, String>::deserialize(deserializer)?;
        let mut headers = HeaderMap::new();
        for (name, value) in map {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| D::Error::custom(format!("header {name:?}: {e}")))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|e| D::Error::custom(format!("header {name:?}: {e}")))?;
            headers.insert(header, value);
        }
        Ok(headers)
    }

    /// Reads the pool's own keys (`url_template`, `named`, `headers`,
    /// `max_streams`, `max_streams_per_host`, `idle_linger`, `max_topic_len`,
    /// `pending_wait`, `max_pending`, `negative_ttl`, `seed`); its `stream` is the default, for the
    /// caller to replace. Not validated: call [`PoolConfig::validate`].
    impl<'de> Deserialize<'de> for PoolConfig {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let k = PoolKeys::deserialize(deserializer)?;
            Ok(Self {
                url_template: k.url_template,
                named: k.named,
                headers: k.headers,
                max_streams: k.max_streams,
                max_streams_per_host: k.max_streams_per_host,
                idle_linger: k.idle_linger,
                max_topic_len: k.max_topic_len,
                pending_wait: k.pending_wait,
                max_pending: k.max_pending,
                stream: StreamConfig::default(),
                negative_ttl: k.negative_ttl,
                seed: k.seed,
            })
        }
    }

    /// `StreamConfig`'s own keys (its `machine` is composed by the caller).
    #[derive(Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct StreamKeys {
        max_line_bytes: usize,
        max_event_bytes: usize,
        max_sockets_per_host: usize,
        channel_capacity: usize,
        health_rotation: bool,
        redirect_hosts: Vec<String>,
        health: HealthConfig,
    }

    impl Default for StreamKeys {
        fn default() -> Self {
            let c = StreamConfig::default();
            Self {
                max_line_bytes: c.limits.line_len(),
                max_event_bytes: c.limits.event_size(),
                max_sockets_per_host: c.connections.max_per_host(),
                channel_capacity: c.channel_capacity,
                health_rotation: c.health_rotation,
                redirect_hosts: c.redirects.hosts.to_vec(),
                health: c.health,
            }
        }
    }

    /// Reads the stream's own keys (`max_line_bytes`, `max_event_bytes`,
    /// `max_sockets_per_host`, `channel_capacity`, `health_rotation`,
    /// `redirect_hosts`, and the `health` table); its `machine` is the default, for the caller to
    /// replace. Not validated: call [`StreamConfig::validate`].
    impl<'de> Deserialize<'de> for StreamConfig {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            let k = StreamKeys::deserialize(deserializer)?;
            let defaults = StreamConfig::default();
            Ok(Self {
                limits: defaults
                    .limits
                    .max_line_len(k.max_line_bytes)
                    .max_event_size(k.max_event_bytes),
                connections: Connections::new(k.max_sockets_per_host),
                channel_capacity: k.channel_capacity,
                health_rotation: k.health_rotation,
                redirects: RedirectPolicy {
                    hosts: k.redirect_hosts.into(),
                    ..defaults.redirects.clone()
                },
                health: k.health,
                ..defaults
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_with_a_template_are_valid() {
        assert_eq!(
            PoolConfig::new("https://feed.example/v1/{topic}/stream").validate(),
            Ok(())
        );
        assert_eq!(AttemptLimits::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_key() {
        let key = |config: PoolConfig| config.validate().map_err(|e| e.key);
        assert_eq!(key(PoolConfig::default()), Err("url_template".into()));
        assert_eq!(
            key(PoolConfig::new("https://{topic}.example/stream")),
            Err("url_template".into())
        );
        let mut config = PoolConfig::new("https://x.example/{topic}");
        config.max_streams = 0;
        assert_eq!(key(config), Err("max_streams".into()));
        let mut config = PoolConfig::new("https://x.example/{topic}");
        config.stream.machine.backoff.initial = Duration::from_secs(3600);
        assert_eq!(key(config), Err("backoff_initial".into()));
        let mut config = PoolConfig::new("https://x.example/{topic}");
        config.stream.health.window = Duration::ZERO;
        assert_eq!(key(config), Err("health.window".into()));
        let mut config = PoolConfig::new("");
        config
            .named
            .insert("bad name".into(), "https://x.example/s".into());
        assert_eq!(key(config), Err("named.bad name".into()));
        let mut config = PoolConfig::new("http://localhost:8080/v1/stream/{topic}");
        config.stream.redirects.own = ["0.0.0.0:8080".parse().unwrap()].into();
        assert_eq!(
            key(config),
            Err("url_template".into()),
            "the gateway itself"
        );
        let limits = AttemptLimits {
            per_second: f64::NAN,
            ..AttemptLimits::default()
        };
        assert_eq!(
            limits.validate().map_err(|e| e.key),
            Err("per_second".into())
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn each_configuration_reads_its_own_keys() {
        let pool: PoolConfig = toml::from_str(
            "url_template = \"https://x.example/{topic}\"\nmax_streams = 7\n\
             idle_linger = \"1m\"\n[headers]\nx-api-key = \"k\"\n",
        )
        .expect("valid");
        assert_eq!(pool.max_streams, 7);
        assert_eq!(pool.idle_linger, Duration::from_secs(60));
        assert_eq!(pool.headers["x-api-key"], "k");
        let e = toml::from_str::<PoolConfig>("[headers]\n\"bad name\" = \"v\"\n")
            .expect_err("a header name with a space");
        assert!(e.to_string().contains("bad name"), "{e}");
        let stream: StreamConfig = toml::from_str(
            "max_line_bytes = 1024\nmax_sockets_per_host = 3\n[health]\nmin_events_per_min = 0\n",
        )
        .expect("valid");
        assert_eq!(stream.limits.line_len(), 1024);
        assert_eq!(stream.connections.max_per_host(), 3);
        assert_eq!(stream.health.min_events_per_min, Some(0));
        assert!(
            toml::from_str::<StreamConfig>("connect_timeout = \"1s\"").is_err(),
            "the machine's key is not the stream's"
        );
        let tls: crate::TlsConfig = toml::from_str("http2 = false\n").expect("valid");
        assert!(!tls.http2 && tls.webpki_roots);
        let limits: AttemptLimits = toml::from_str("per_second = 2\n").expect("an integer rate");
        assert_eq!(limits.per_second, 2.0);
    }
}
