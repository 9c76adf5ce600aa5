//! ssegate's configuration: one TOML file (`ssegate.example.toml` documents
//! every key with its default), environment overrides for secrets, and
//! validation that names the key and the reason.
//!
//! Environment: `SSEGATE_UPSTREAM_HEADER_<NAME>=value` sets the upstream
//! request header `<NAME>` (underscores become dashes), so a bearer token
//! never has to be written into the file:
//! `SSEGATE_UPSTREAM_HEADER_AUTHORIZATION="Bearer ..."`.
//! `SSEGATE_ADMIN_TOKEN` sets `bridge.admin_token`; `SSEGATE_SUBSCRIBER_TOKENS`
//! sets `bridge.auth.tokens`; `SSEGATE_JWT_HS256_SECRET` sets
//! `bridge.auth.jwt.hs256_secret`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use sse_bridge::BridgeConfig;
use sse_conn_pool::{AttemptLimits, Connections, PoolConfig, TlsConfig};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) upstream: Upstream,
    pub(crate) bridge: BridgeConfig,
    pub(crate) log: Log,
}

/// `[upstream]`: where streams come from and how they are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Upstream {
    /// The stream URL with `{topic}` where the topic goes.
    pub(crate) url_template: String,
    /// Named static streams: key -> URL.
    pub(crate) named: BTreeMap<String, String>,
    /// Headers on every upstream request.
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) max_streams: usize,
    pub(crate) max_streams_per_host: usize,
    pub(crate) max_sockets_per_host: usize,
    #[serde(with = "humantime_serde")]
    pub(crate) idle_linger: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) pending_wait: Duration,
    pub(crate) max_pending: usize,
    pub(crate) max_topic_len: usize,
    #[serde(with = "humantime_serde")]
    pub(crate) connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) first_byte_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) event_assembly_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) backoff_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) backoff_max_rate_limited: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) backoff_max_auth: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) backoff_reset_after: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) reconnect_spread: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) retry_after_max: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub(crate) rotation_handover_timeout: Duration,
    pub(crate) max_line_bytes: usize,
    pub(crate) max_event_bytes: usize,
    pub(crate) tls: Tls,
    pub(crate) attempts: Attempts,
}

impl Default for Upstream {
    fn default() -> Self {
        let machine = sse_state_machine::Config::default();
        let pool = PoolConfig::new("");
        Self {
            url_template: String::new(),
            named: BTreeMap::new(),
            headers: BTreeMap::new(),
            max_streams: pool.max_streams,
            max_streams_per_host: pool.max_streams_per_host,
            max_sockets_per_host: Connections::DEFAULT_MAX_PER_HOST,
            idle_linger: pool.idle_linger,
            pending_wait: pool.pending_wait,
            max_pending: pool.max_pending,
            max_topic_len: pool.max_topic_len,
            connect_timeout: machine.connect_timeout,
            first_byte_timeout: machine.first_byte_timeout,
            idle_timeout: machine.idle_timeout,
            event_assembly_timeout: machine.event_assembly_timeout,
            backoff_initial: machine.backoff.initial,
            backoff_max: machine.backoff.max,
            backoff_max_rate_limited: machine.backoff.max_rate_limited,
            backoff_max_auth: machine.backoff.max_auth,
            backoff_reset_after: machine.backoff.reset_after,
            reconnect_spread: machine.backoff.reconnect_spread,
            retry_after_max: machine.retry_after_max,
            max_age: machine.max_age.unwrap_or(Duration::from_secs(12 * 3600)),
            rotation_handover_timeout: machine.handover_timeout,
            max_line_bytes: 1 << 20,
            max_event_bytes: 4 << 20,
            tls: Tls::default(),
            attempts: Attempts::default(),
        }
    }
}

/// `[upstream.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Tls {
    pub(crate) webpki_roots: bool,
    pub(crate) extra_ca_file: Option<PathBuf>,
    pub(crate) http2: bool,
}

impl Default for Tls {
    fn default() -> Self {
        let tls = TlsConfig::default();
        Self {
            webpki_roots: tls.webpki_roots,
            extra_ca_file: tls.extra_ca_file,
            http2: tls.http2,
        }
    }
}

/// `[upstream.attempts]`: the pool-wide connection attempt limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Attempts {
    pub(crate) max_concurrent: usize,
    pub(crate) per_second: f64,
    pub(crate) burst: u32,
}

impl Default for Attempts {
    fn default() -> Self {
        let limits = AttemptLimits::default();
        Self {
            max_concurrent: limits.max_concurrent,
            per_second: limits.per_second,
            burst: limits.burst,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Log {
    /// `text` (default) or `json`.
    pub(crate) format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `ssegate=debug,info`.
    pub(crate) level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// Reads, overrides from the environment, and validates `path`.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let mut config: Self =
            toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        config.apply_env(std::env::vars())?;
        config.validate()?;
        Ok(config)
    }

    /// Applies `SSEGATE_UPSTREAM_HEADER_<NAME>` and the secrets named in
    /// the module docs.
    pub(crate) fn apply_env(&mut self, vars: impl Iterator<Item = (String, String)>) -> Result<()> {
        for (key, value) in vars {
            if key == "SSEGATE_ADMIN_TOKEN" {
                self.bridge.admin_token = Some(sse_bridge::AdminToken::new(value));
                continue;
            }
            if key == "SSEGATE_SUBSCRIBER_TOKENS" {
                self.bridge.auth.tokens = Some(sse_bridge::Secret::new(value));
                continue;
            }
            if key == "SSEGATE_JWT_HS256_SECRET" {
                let Some(jwt) = self.bridge.auth.jwt.as_mut() else {
                    bail!(
                        "SSEGATE_JWT_HS256_SECRET: set, but there is no [bridge.auth.jwt] section"
                    );
                };
                jwt.hs256_secret = Some(sse_bridge::Secret::new(value));
                continue;
            }
            if let Some(name) = key.strip_prefix("SSEGATE_UPSTREAM_HEADER_") {
                let name = name.to_ascii_lowercase().replace('_', "-");
                if name.is_empty() {
                    bail!("{key}: no header name after the prefix");
                }
                self.upstream.headers.insert(name, value);
            }
        }
        Ok(())
    }

    /// Checks every section; the error names the key.
    pub(crate) fn validate(&self) -> Result<()> {
        self.bridge.validate()?;
        self.pool_config()?;
        self.connector()?;
        if self.upstream.max_sockets_per_host == 0 {
            bail!("upstream.max_sockets_per_host: must be at least 1");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| anyhow!("log.level: {e}"))?;
        Ok(())
    }

    /// The pool's configuration.
    pub(crate) fn pool_config(&self) -> Result<PoolConfig> {
        let u = &self.upstream;
        if u.url_template.is_empty() && u.named.is_empty() {
            bail!("upstream.url_template: required (or give upstream.named streams)");
        }
        let mut config = PoolConfig::new(u.url_template.clone());
        config.named = u.named.clone();
        for (name, value) in &u.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| anyhow!("upstream.headers.{name}: {e}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| anyhow!("upstream.headers.{name}: {e}"))?;
            config.headers.insert(header, value);
        }
        for (key, value) in [
            ("upstream.max_streams", u.max_streams),
            ("upstream.max_streams_per_host", u.max_streams_per_host),
            ("upstream.max_topic_len", u.max_topic_len),
            ("upstream.max_line_bytes", u.max_line_bytes),
            ("upstream.max_event_bytes", u.max_event_bytes),
        ] {
            if value == 0 {
                bail!("{key}: must be at least 1");
            }
        }
        config.max_streams = u.max_streams;
        config.max_streams_per_host = u.max_streams_per_host;
        config.idle_linger = u.idle_linger;
        config.pending_wait = u.pending_wait;
        config.max_pending = u.max_pending;
        config.max_topic_len = u.max_topic_len;
        let stream = &mut config.stream;
        stream.connections = Connections::new(u.max_sockets_per_host);
        stream.limits = sse_parser::Limits::default()
            .max_line_len(u.max_line_bytes)
            .max_event_size(u.max_event_bytes);
        let machine = &mut stream.machine;
        machine.connect_timeout = u.connect_timeout;
        machine.first_byte_timeout = u.first_byte_timeout;
        machine.idle_timeout = u.idle_timeout;
        machine.event_assembly_timeout = u.event_assembly_timeout;
        machine.backoff.initial = u.backoff_initial;
        machine.backoff.max = u.backoff_max;
        machine.backoff.max_rate_limited = u.backoff_max_rate_limited;
        machine.backoff.max_auth = u.backoff_max_auth;
        machine.backoff.reset_after = u.backoff_reset_after;
        machine.backoff.reconnect_spread = u.reconnect_spread;
        machine.retry_after_max = u.retry_after_max;
        machine.handover_timeout = u.rotation_handover_timeout;
        machine.max_age = (!u.max_age.is_zero()).then_some(u.max_age);
        machine
            .validate()
            .map_err(|e| anyhow!("upstream.{}: {}", config_key(e.field), e.reason))?;
        Ok(config)
    }

    /// The connector's TLS settings and attempt limits.
    pub(crate) fn connector(&self) -> Result<(TlsConfig, AttemptLimits)> {
        let t = &self.upstream.tls;
        let tls = TlsConfig {
            webpki_roots: t.webpki_roots,
            extra_ca_file: t.extra_ca_file.clone(),
            http2: t.http2,
        };
        let a = &self.upstream.attempts;
        if a.max_concurrent == 0
            || a.burst == 0
            || !(a.per_second.is_finite() && a.per_second > 0.0)
        {
            bail!("upstream.attempts: max_concurrent, per_second and burst must be positive");
        }
        Ok((
            tls,
            AttemptLimits {
                max_concurrent: a.max_concurrent,
                per_second: a.per_second,
                burst: a.burst,
            },
        ))
    }
}

/// The file's key for a state-machine field.
fn config_key(field: &str) -> String {
    match field {
        "backoff.initial" => "backoff_initial".into(),
        "backoff.max" => "backoff_max".into(),
        "backoff.max_rate_limited" => "backoff_max_rate_limited".into(),
        "backoff.max_auth" => "backoff_max_auth".into(),
        "backoff.reset_after" => "backoff_reset_after".into(),
        "backoff.reconnect_spread" => "reconnect_spread".into(),
        "handover_timeout" => "rotation_handover_timeout".into(),
        other => other.replace('.', "_"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn the_example_file_is_valid_and_matches_the_defaults() {
        let text = include_str!("../../../ssegate.example.toml");
        let config = parse(text).expect("the example is valid");
        let defaults = Config::default();
        assert_eq!(
            config.bridge, defaults.bridge,
            "the example shows the defaults"
        );
        assert_eq!(config.upstream.max_streams, 50);
        assert_eq!(config.upstream.idle_timeout, defaults.upstream.idle_timeout);
        let (u, d) = (&config.upstream, &defaults.upstream);
        assert_eq!(
            (
                u.backoff_max_rate_limited,
                u.backoff_max_auth,
                u.backoff_reset_after,
                u.reconnect_spread,
                u.retry_after_max,
                u.rotation_handover_timeout
            ),
            (
                d.backoff_max_rate_limited,
                d.backoff_max_auth,
                d.backoff_reset_after,
                d.reconnect_spread,
                d.retry_after_max,
                d.rotation_handover_timeout
            ),
            "the example shows the backoff and rotation defaults"
        );
        let pool = config.pool_config().expect("valid");
        assert_eq!(
            pool.stream.machine.backoff.reconnect_spread,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn backoff_and_rotation_durations_reach_the_state_machine_and_are_checked() {
        let config = parse(
            "[upstream]\nurl_template = \"http://x.test/{topic}\"\nreconnect_spread = \"250ms\"\n\
             backoff_reset_after = \"2s\"\nrotation_handover_timeout = \"5s\"\nretry_after_max = \"1m\"",
        )
        .expect("valid");
        let machine = config.pool_config().expect("valid").stream.machine;
        assert_eq!(machine.backoff.reconnect_spread, Duration::from_millis(250));
        assert_eq!(machine.backoff.reset_after, Duration::from_secs(2));
        assert_eq!(machine.handover_timeout, Duration::from_secs(5));
        assert_eq!(machine.retry_after_max, Duration::from_secs(60));
        let err = parse(
            "[upstream]\nurl_template = \"http://x.test/{topic}\"\nbackoff_max_rate_limited = \"1s\"",
        )
        .and_then(|c| c.pool_config().map(|_| ()))
        .expect_err("the 429 cap below backoff_max is refused")
        .to_string();
        assert!(err.contains("upstream.backoff_max_rate_limited"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let err = |text: &str| parse(text).expect_err("refused").to_string();
        assert!(
            err(
                "[upstream]\nurl_template = \"http://x.test/{topic}\"\n[bridge]\nheartbeat = \"0s\""
            )
            .contains("bridge.heartbeat")
        );
        assert!(
            err("[upstream]\nurl_template = \"http://x.test/{topic}\"\nmax_streams = 0")
                .contains("upstream.max_streams")
        );
        assert!(
            err("[upstream]\nurl_template = \"http://x.test/{topic}\"\nidle_timeout = \"soon\"")
                .contains("idle_timeout")
        );
        assert!(
            err("[upstream]\nurl_template = \"http://x.test/{topic}\"\nbogus = 1")
                .contains("bogus")
        );
        assert!(err("[bridge]\nheartbeat = \"15s\"").contains("upstream.url_template"));
        assert!(
            err("[upstream]\nurl_template = \"http://x.test/{topic}\"\nbackoff_initial = \"1h\"")
                .contains("upstream.backoff_initial")
        );
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let mut config = Config::default();
        config.upstream.url_template = "http://x.test/{topic}".into();
        config
            .apply_env(
                [(
                    "SSEGATE_UPSTREAM_HEADER_AUTHORIZATION".to_string(),
                    "Bearer t".to_string(),
                )]
                .into_iter(),
            )
            .unwrap();
        let pool = config.pool_config().unwrap();
        assert_eq!(pool.headers["authorization"], "Bearer t");
        config
            .apply_env([("SSEGATE_ADMIN_TOKEN".to_string(), "short".to_string())].into_iter())
            .unwrap();
        let err = config.validate().expect_err("a short token is refused");
        assert!(err.to_string().contains("bridge.admin_token"), "{err}");
        assert!(
            !format!("{:?}", config.bridge).contains("short"),
            "the token never reaches a debug print"
        );
    }

    #[test]
    fn subscriber_secrets_come_from_the_environment() {
        let mut config = Config::default();
        config.upstream.url_template = "http://x.test/{topic}".into();
        let tokens = "alice 0123456789abcdef0123 BTC-*;bob fedcba98765432100000";
        config
            .apply_env([("SSEGATE_SUBSCRIBER_TOKENS".to_string(), tokens.to_string())].into_iter())
            .unwrap();
        config.validate().expect("two valid tokens");
        assert!(!format!("{:?}", config.bridge).contains("0123456789abcdef"));
        let err = config
            .apply_env([("SSEGATE_JWT_HS256_SECRET".to_string(), "x".repeat(40))].into_iter())
            .expect_err("no jwt section to put it in");
        assert!(err.to_string().contains("[bridge.auth.jwt]"), "{err}");
        let mut config: Config = toml::from_str(
            "[upstream]\nurl_template = \"http://x.test/{topic}\"\n[bridge.auth.jwt]\nalgorithms = [\"HS256\"]\n",
        )
        .unwrap();
        let err = config.validate().expect_err("HS256 without a secret");
        assert!(
            err.to_string().contains("SSEGATE_JWT_HS256_SECRET"),
            "{err}"
        );
        config
            .apply_env([("SSEGATE_JWT_HS256_SECRET".to_string(), "x".repeat(40))].into_iter())
            .unwrap();
        config.validate().expect("HS256 with its secret");
    }

    #[test]
    fn cors_origins_are_checked() {
        let err = |text: &str| parse(text).expect_err("refused").to_string();
        let base = "[upstream]\nurl_template = \"http://x.test/{topic}\"\n[bridge]\n";
        assert!(
            err(&format!(
                "{base}cors_origins = [\"https://app.example.com/\"]"
            ))
            .contains("bridge.cors_origins")
        );
        assert!(
            err(&format!(
                "{base}cors_origins = [\"*\"]\ncors_credentials = true"
            ))
            .contains("bridge.cors_credentials")
        );
        let ok = parse(&format!(
            "{base}cors_origins = [\"https://app.example.com\", \"http://127.0.0.1:3000\"]\ncors_credentials = true"
        ))
        .expect("valid");
        assert_eq!(ok.bridge.cors_origins.len(), 2);
    }
}
