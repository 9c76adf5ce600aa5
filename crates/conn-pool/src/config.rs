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
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use sse_health::HealthConfig;
use sse_parser::Limits;
use sse_state_machine::Config;

pub(crate) use crate::checks::{ConfigError, check_template, encode_segment, valid_topic};
use crate::redirect::RedirectPolicy;
use crate::request::UpstreamRequest;
use crate::route::{Route, TopicMatch};
use crate::throttle::AttemptLimits;
use crate::transport::Connections;

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
    /// Headers sent on the requests of `url_template` and `named` (a
    /// route has its own).
    pub headers: HeaderMap,
    /// Routes, tried in order after `named` and before `url_template`
    /// (see [`Route`]); the first that matches a topic serves it.
    pub routes: Vec<Route>,
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
            routes: Vec::new(),
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

/// How a stream runs.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The lifecycle decisions.
    pub machine: Config,
    /// The parser's limits (the gateway's defaults are lower than the
    /// parser's 16 MiB).
    pub limits: Limits,
    /// Seeds the machine's jitter; give every stream its own.
    pub seed: u64,
    /// Items a subscriber may fall behind before it is told it missed some.
    pub channel_capacity: usize,
    /// A last event ID to resume from on the first connection.
    pub last_event_id: Option<String>,
    /// Health thresholds; the stream evaluates them when health asks
    /// (`StreamHealth::poll_timeout`).
    pub health: HealthConfig,
    /// The sockets this stream uses: the per-host cap and HTTP/2 sharing.
    /// Clones of a config share them (a pool's streams all do).
    pub connections: Connections,
    /// Rotate the connection (make-before-break) when health advises it.
    /// Default true; a plain client that must make exactly the requests the
    /// server expects (the conformance service) turns it off.
    pub health_rotation: bool,
    /// Where redirects may lead: by default, the same origin only.
    pub redirects: RedirectPolicy,
    /// The route this stream belongs to, naming it in metrics (`None`:
    /// `default`).
    pub route: Option<Arc<str>>,
    /// Send the last event ID (`Last-Event-ID`) when reconnecting. Default
    /// true; a packed route with `resume = "none"` turns it off for an
    /// upstream that cannot resume.
    pub resume: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            machine: Config::default(),
            limits: Limits::default()
                .max_line_len(1 << 20)
                .max_event_size(4 << 20),
            seed: 0,
            channel_capacity: 1024,
            last_event_id: None,
            health: HealthConfig::default(),
            connections: Connections::default(),
            health_rotation: true,
            redirects: RedirectPolicy::default(),
            route: None,
            resume: true,
        }
    }
}

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
        if self.url_template.is_empty() && self.named.is_empty() && self.routes.is_empty() {
            return Err(ConfigError::new(
                "url_template",
                "required (or give routes or named streams)",
            ));
        }
        if !self.url_template.is_empty() {
            check_template("url_template", &self.url_template, &self.stream.redirects)?;
        }
        for (index, route) in self.routes.iter().enumerate() {
            route.validate(index, self.max_topic_len, &self.stream.redirects)?;
            if self.routes[..index].iter().any(|r| r.name == route.name) {
                return Err(ConfigError::new(
                    format!("routes.{index}.name"),
                    format!("{:?} names an earlier route too", route.name),
                ));
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

impl Route {
    /// Checks the route; `index` names it in the error (`routes.N.key`).
    pub(crate) fn validate(
        &self,
        index: usize,
        max_topic_len: usize,
        redirects: &RedirectPolicy,
    ) -> Result<(), ConfigError> {
        let key = |k: &str| format!("routes.{index}.{k}");
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if !name_ok {
            return Err(ConfigError::new(
                key("name"),
                "1-32 of a-z 0-9 _ - (it names the route in metrics)",
            ));
        }
        match &self.topics {
            TopicMatch::Patterns(patterns) => {
                if patterns.is_empty() {
                    return Err(ConfigError::new(key("topics"), "no pattern"));
                }
                for p in patterns {
                    let literal = p.replace('*', "a");
                    if !valid_topic(&literal, usize::MAX) {
                        return Err(ConfigError::new(
                            key("topics"),
                            format!(
                                "{p:?}: a pattern is `*` and the topic characters A-Z a-z 0-9 . _ -"
                            ),
                        ));
                    }
                }
            }
            TopicMatch::Allow(topics) => {
                if topics.is_empty() {
                    return Err(ConfigError::new(key("allow"), "no topic"));
                }
                if let Some(bad) = topics.iter().find(|t| !valid_topic(t, max_topic_len)) {
                    return Err(ConfigError::new(
                        key("allow"),
                        format!(
                            "{bad:?} is not a valid topic (1-{max_topic_len} of A-Z a-z 0-9 . _ -)"
                        ),
                    ));
                }
            }
            TopicMatch::Regex(_) => {}
        }
        match &self.pack {
            Some(pack) => {
                if !self.url_template.is_empty() {
                    return Err(ConfigError::new(
                        key("url_template"),
                        "a packed route has its URL in pack.url_template: give one of them",
                    ));
                }
                pack.validate(&key("pack"), redirects)?;
            }
            None => check_template(&key("url_template"), &self.url_template, redirects)?,
        }
        if self.max_streams == Some(0) {
            return Err(ConfigError::new(key("max_streams"), "must be at least 1"));
        }
        if let Some(health) = &self.health {
            health
                .validate()
                .map_err(|e| ConfigError::new(key(&format!("health.{}", e.key)), e.reason))?;
        }
        Ok(())
    }
}

/// Where a topic's stream goes: its URL, the headers to send, and the
/// route that took it (`None`: a named stream or the pool's template).
pub(crate) struct Resolved<'a> {
    pub(crate) url: String,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) route: Option<usize>,
}

impl PoolConfig {
    /// The route of `topic` (assumed valid): `named`, then `routes` in
    /// order, then `url_template`. `None`: no upstream serves it.
    pub(crate) fn resolve(&self, topic: &str) -> Option<Resolved<'_>> {
        if let Some(url) = self.named.get(topic) {
            return Some(Resolved {
                url: url.clone(),
                headers: &self.headers,
                route: None,
            });
        }
        if let Some((index, route)) = self
            .routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.topics.matches(topic))
        {
            return Some(Resolved {
                url: route
                    .url_template
                    .replace("{topic}", &encode_segment(topic)),
                headers: &route.headers,
                route: Some(index),
            });
        }
        (!self.url_template.is_empty()).then(|| Resolved {
            url: self.url_template.replace("{topic}", &encode_segment(topic)),
            headers: &self.headers,
            route: None,
        })
    }

    /// The route that serves `topic`, if one of `routes` does (a named
    /// stream or the pool's template is no route).
    pub fn route_of(&self, topic: &str) -> Option<&Route> {
        self.resolve(topic)
            .and_then(|r| r.route)
            .and_then(|i| self.routes.get(i))
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
    use crate::config::StreamConfig;
    use crate::redirect::RedirectPolicy;
    use crate::route::{Route, TopicMatch};
    use crate::transport::Connections;

    /// `PoolConfig`'s own keys (its `stream` is composed by the caller).
    #[derive(Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct PoolKeys {
        url_template: String,
        named: BTreeMap<String, String>,
        #[serde(deserialize_with = "headers")]
        headers: HeaderMap,
        routes: Vec<Route>,
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
                routes: c.routes,
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

    /// One `[[routes]]` table as written.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RouteKeys {
        name: String,
        #[serde(default)]
        topics: Option<Patterns>,
        #[serde(default)]
        allow: Option<Vec<String>>,
        #[serde(default)]
        regex: Option<String>,
        #[serde(default)]
        url_template: String,
        #[serde(default)]
        pack: Option<crate::pack::config::Pack>,
        #[serde(default, deserialize_with = "headers")]
        headers: HeaderMap,
        #[serde(default)]
        max_streams: Option<usize>,
        #[serde(default)]
        health: Option<HealthConfig>,
    }

    /// `topics = "BTC-*"` or `topics = ["BTC-*", "ETH-*"]`.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Patterns {
        One(String),
        Many(Vec<String>),
    }

    /// Reads a route: `name`, one of `topics` (a pattern or a list of
    /// them), `allow` (a list of topics) or `regex`, `url_template`, and
    /// optionally `headers`, `max_streams` and a `health` table. Not
    /// validated: [`PoolConfig::validate`] checks the routes.
    impl<'de> Deserialize<'de> for Route {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            use serde::de::Error as _;
            let k = RouteKeys::deserialize(deserializer)?;
            let topics = match (k.topics, k.allow, k.regex) {
                (Some(Patterns::One(p)), None, None) => TopicMatch::Patterns(vec![p]),
                (Some(Patterns::Many(p)), None, None) => TopicMatch::Patterns(p),
                (None, Some(allow), None) => TopicMatch::Allow(allow.into_iter().collect()),
                (None, None, Some(regex)) => TopicMatch::regex(&regex)
                    .map_err(|e| D::Error::custom(format!("route {:?}: regex: {e}", k.name)))?,
                _ => {
                    return Err(D::Error::custom(format!(
                        "route {:?}: give exactly one of `topics` (patterns), `allow` (a list) \
                         or `regex`",
                        k.name
                    )));
                }
            };
            Ok(Route {
                name: k.name,
                topics,
                url_template: k.url_template,
                pack: k.pack,
                headers: k.headers,
                max_streams: k.max_streams,
                health: k.health,
            })
        }
    }

    /// Reads the pool's own keys (`url_template`, `named`, `headers`, `routes`,
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
                routes: k.routes,
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

    #[test]
    fn a_route_names_its_bad_key() {
        let redirects = RedirectPolicy::default();
        let ok = Route::new(
            "crypto",
            TopicMatch::Patterns(vec!["BTC-*".into()]),
            "https://c.example/{topic}",
        );
        assert_eq!(ok.validate(0, 64, &redirects), Ok(()));
        let key = |r: Route| r.validate(2, 64, &redirects).map_err(|e| e.key);
        let mut r = ok.clone();
        r.name = "Crypto Feed".into();
        assert_eq!(key(r), Err("routes.2.name".into()));
        let mut r = ok.clone();
        r.topics = TopicMatch::Patterns(vec!["BTC/*".into()]);
        assert_eq!(key(r), Err("routes.2.topics".into()));
        let mut r = ok.clone();
        r.topics = TopicMatch::Allow(["bad topic".to_string()].into());
        assert_eq!(key(r), Err("routes.2.allow".into()));
        let mut r = ok.clone();
        r.url_template = "https://{topic}.example/".into();
        assert_eq!(key(r), Err("routes.2.url_template".into()));
        let mut r = ok.clone();
        r.max_streams = Some(0);
        assert_eq!(key(r), Err("routes.2.max_streams".into()));
        let mut r = ok;
        r.health = Some(HealthConfig {
            window: Duration::ZERO,
            ..HealthConfig::default()
        });
        assert_eq!(key(r), Err("routes.2.health.window".into()));
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
