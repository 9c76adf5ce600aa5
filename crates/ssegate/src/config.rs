//! ssegate's configuration: one TOML file (`ssegate.example.toml` documents
//! every key with its default), environment overrides for secrets, and
//! validation that names the key and the reason.
//!
//! The file is composed of the libraries' own configurations, each of which
//! owns its keys, defaults and validation: `[bridge]` is
//! `sse_bridge::BridgeConfig`; `[upstream]` holds, in one flat table, the
//! keys of `sse_conn_pool::PoolConfig`, of its `StreamConfig` (with the
//! `[upstream.health]` table) and of the state machine's `Config`, plus the
//! `[upstream.tls]` and `[upstream.attempts]` tables. This module only
//! hands each its keys and puts the results together: it holds no copy of
//! any library's fields or defaults.
//!
//! Environment: `SSEGATE_UPSTREAM_HEADER_<NAME>=value` sets the upstream
//! request header `<NAME>` (underscores become dashes), so a bearer token
//! never has to be written into the file:
//! `SSEGATE_UPSTREAM_HEADER_AUTHORIZATION="Bearer ..."`.
//! `SSEGATE_ADMIN_TOKEN` sets `bridge.admin_token`; `SSEGATE_SUBSCRIBER_TOKENS`
//! sets `bridge.auth.tokens`; `SSEGATE_JWT_HS256_SECRET` sets
//! `bridge.auth.jwt.hs256_secret`. `SSEGATE_CLUSTER_PASSWORD`,
//! `SSEGATE_CLUSTER_TOKEN` and `SSEGATE_CLUSTER_NKEY` set the NATS
//! credentials of `[cluster]` (`sse_cluster::ClusterConfig`).

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sse_bridge::BridgeConfig;
use sse_conn_pool::{AttemptLimits, PoolConfig, StreamConfig, TlsConfig};

/// The whole file, composed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    pub(crate) upstream: Upstream,
    pub(crate) bridge: BridgeConfig,
    pub(crate) log: Log,
    /// `[cluster]`: off by default.
    pub(crate) cluster: sse_cluster::ClusterConfig,
    /// `[upstream]` as written, to tell a reload which of its keys changed.
    pub(crate) upstream_table: toml::Table,
    /// `[cluster]` as written, likewise (it applies only at a restart).
    pub(crate) cluster_table: toml::Table,
}

/// `[upstream]`: where streams come from and how they are kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct Upstream {
    /// The pool, with its stream and the stream's machine in it.
    pub(crate) pool: PoolConfig,
    /// `[upstream.tls]`.
    pub(crate) tls: TlsConfig,
    /// `[upstream.attempts]`: the pool-wide connection attempt limits.
    pub(crate) attempts: AttemptLimits,
    /// What `[[upstream.routes]]` say beyond the pool's keys.
    pub(crate) routes: crate::routes::RouteExtras,
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

/// The file as written: `[upstream]` is split among its owners afterwards.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct File {
    upstream: toml::Table,
    bridge: BridgeConfig,
    log: Log,
    cluster: toml::Table,
}

impl Default for File {
    fn default() -> Self {
        Self {
            upstream: toml::Table::new(),
            bridge: BridgeConfig::default(),
            log: Log::default(),
            cluster: toml::Table::new(),
        }
    }
}

impl Config {
    /// Reads, overrides from the environment, and validates `path`.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let mut config = Self::parse(&text).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
        config.apply_env(std::env::vars())?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration `text` holds (not yet validated).
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let file: File = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        let upstream = Upstream::compose(file.upstream.clone())?;
        let mut bridge = file.bridge;
        bridge.route_policies = upstream
            .pool
            .routes
            .iter()
            .zip(&upstream.routes.policies)
            .map(|(route, policy)| (route.topics.clone(), *policy))
            .collect();
        Ok(Self {
            upstream,
            bridge,
            log: file.log,
            cluster: part("cluster", file.cluster.clone())?,
            upstream_table: file.upstream,
            cluster_table: file.cluster,
        })
    }

    /// Applies `SSEGATE_UPSTREAM_HEADER_<NAME>` and the secrets named in
    /// the module docs.
    pub(crate) fn apply_env(&mut self, vars: impl Iterator<Item = (String, String)>) -> Result<()> {
        let vars: Vec<(String, String)> = vars.collect();
        crate::routes::apply_env(
            &mut self.upstream.pool,
            &self.upstream.routes.env_headers,
            |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        )?;
        for (key, value) in vars {
            if key == "SSEGATE_ADMIN_TOKEN" {
                self.bridge.admin_token = Some(sse_bridge::AdminToken::new(value));
                continue;
            }
            match key.as_str() {
                "SSEGATE_CLUSTER_PASSWORD" => {
                    self.cluster.password = Some(value);
                    continue;
                }
                "SSEGATE_CLUSTER_TOKEN" => {
                    self.cluster.token = Some(value);
                    continue;
                }
                "SSEGATE_CLUSTER_NKEY" => {
                    self.cluster.nkey = Some(value);
                    continue;
                }
                _ => {}
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
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| anyhow!("{key}: header {name:?}: {e}"))?;
                let value = HeaderValue::from_str(&value)
                    .map_err(|e| anyhow!("{key}: header {name:?}: {e}"))?;
                self.upstream.pool.headers.insert(header, value);
            }
        }
        Ok(())
    }

    /// Checks every section with its owner's validation; the error names
    /// the key as the file writes it.
    pub(crate) fn validate(&self) -> Result<()> {
        self.bridge.validate().map_err(|e| anyhow!("bridge.{e}"))?;
        self.upstream
            .pool
            .validate()
            .map_err(|e| anyhow!("upstream.{e}"))?;
        self.upstream
            .attempts
            .validate()
            .map_err(|e| anyhow!("upstream.attempts.{e}"))?;
        sse_conn_pool::HttpsConnector::new(&self.upstream.tls)
            .map_err(|e| anyhow!("upstream.tls: {e}"))?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| anyhow!("log.level: {e}"))?;
        // Checked on or off, so a section being prepared is checked too.
        self.cluster.validate().map_err(|e| anyhow!("{e}"))?;
        Ok(())
    }
}

impl Config {
    /// The keys outside `[bridge]` that differ in `new` and apply only at
    /// a restart: every `[upstream]` key but `max_streams` (which a reload
    /// applies), `log.format`, and the environment's upstream headers.
    pub(crate) fn restart_keys(&self, new: &Self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .upstream_table
            .keys()
            .chain(new.upstream_table.keys())
            .filter(|k| *k != "max_streams")
            .filter(|k| self.upstream_table.get(*k) != new.upstream_table.get(*k))
            .map(|k| format!("upstream.{k}"))
            .collect();
        keys.sort();
        keys.dedup();
        if self.upstream.pool.headers != new.upstream.pool.headers
            && !keys.iter().any(|k| k == "upstream.headers")
        {
            keys.push("upstream.headers".into());
        }
        // Route headers from the environment change with the file unchanged.
        let route_headers = |c: &Self| -> Vec<http::HeaderMap> {
            c.upstream
                .pool
                .routes
                .iter()
                .map(|r| r.headers.clone())
                .collect()
        };
        if route_headers(self) != route_headers(new) && !keys.iter().any(|k| k == "upstream.routes")
        {
            keys.push("upstream.routes".into());
        }
        if self.log.format != new.log.format {
            keys.push("log.format".into());
        }
        let mut cluster: Vec<String> = self
            .cluster_table
            .keys()
            .chain(new.cluster_table.keys())
            .filter(|k| self.cluster_table.get(*k) != new.cluster_table.get(*k))
            .map(|k| format!("cluster.{k}"))
            .collect();
        cluster.sort();
        cluster.dedup();
        keys.extend(cluster);
        keys
    }
}

impl Upstream {
    /// Hands each key of the `[upstream]` table to the configuration that
    /// owns it, and composes the results.
    fn compose(mut table: toml::Table) -> Result<Self> {
        let routes = crate::routes::prepare(&mut table)?;
        let owners: [(&str, Vec<&'static str>); 5] = [
            ("pool", fields::<PoolConfig>()),
            ("stream", fields::<StreamConfig>()),
            ("machine", fields::<sse_state_machine::Config>()),
            ("tls", vec!["tls"]),
            ("attempts", vec!["attempts"]),
        ];
        let mut parts: [toml::Table; 5] = Default::default();
        for (key, value) in table {
            let Some(owner) = owners
                .iter()
                .position(|(_, keys)| keys.contains(&key.as_str()))
            else {
                let known = owners.iter().flat_map(|(_, keys)| keys.iter().copied());
                let hint = match closest(&key, known) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "see ssegate.example.toml for every key".into(),
                };
                bail!("upstream.{key}: unknown key ({hint})");
            };
            parts[owner].insert(key, value);
        }
        let [pool, stream, machine, tls, attempts] = parts;
        let mut pool: PoolConfig = part("upstream", pool)?;
        pool.stream = part("upstream", stream)?;
        pool.stream.machine = part("upstream", machine)?;
        Ok(Self {
            pool,
            tls: section("upstream.tls", tls, "tls")?,
            attempts: section("upstream.attempts", attempts, "attempts")?,
            routes,
        })
    }
}

/// Deserializes `T` from `table` (keys of the table `prefix`). An error
/// names the key at fault, found by trying each key alone (and, in a
/// nested table, each of its keys).
fn part<T: DeserializeOwned>(prefix: &str, table: toml::Table) -> Result<T> {
    match toml::Value::Table(table.clone()).try_into::<T>() {
        Ok(value) => Ok(value),
        Err(whole) => {
            let (path, message) = culprit::<T>(&table, &[])
                .unwrap_or_else(|| (String::new(), whole.message().trim().to_string()));
            bail!("{prefix}{path}: {message}")
        }
    }
}

/// The first key of `table` (at `path` within `T`'s table) that `T`
/// refuses alone, and why.
fn culprit<T: DeserializeOwned>(table: &toml::Table, path: &[&str]) -> Option<(String, String)> {
    // `{path...: {key: value}}`: the key alone, where it belongs.
    let alone = |key: &str, value: &toml::Value| {
        let mut nested =
            toml::Value::Table(toml::Table::from_iter([(key.to_string(), value.clone())]));
        for outer in path.iter().rev() {
            nested = toml::Value::Table(toml::Table::from_iter([(outer.to_string(), nested)]));
        }
        nested.try_into::<T>().err()
    };
    for (key, value) in table {
        let Some(e) = alone(key, value) else { continue };
        if let toml::Value::Table(inner) = value {
            let mut deeper = path.to_vec();
            deeper.push(key);
            if let Some(found) = culprit::<T>(inner, &deeper) {
                return Some(found);
            }
        }
        let mut at: Vec<&str> = path.to_vec();
        at.push(key);
        return Some((format!(".{}", at.join(".")), e.message().trim().to_string()));
    }
    None
}

/// A sub-table (`tls = { ... }` in `parent`), or its default when absent.
fn section<T: DeserializeOwned + Default>(
    prefix: &str,
    mut parent: toml::Table,
    key: &str,
) -> Result<T> {
    match parent.remove(key) {
        None => Ok(T::default()),
        Some(toml::Value::Table(table)) => part(prefix, table),
        Some(other) => bail!("{prefix}: expected a table, found {}", other.type_str()),
    }
}

/// The known key nearest to `key`, if it is a likely typo (at most two
/// edits away).
fn closest<'a>(key: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let above = row[j + 1];
                row[j + 1] = (above + 1)
                    .min(row[j] + 1)
                    .min(diagonal + usize::from(ca != *cb));
                diagonal = above;
            }
        }
        row[b.len()]
    };
    known
        .map(|k| (distance(key, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// The keys `T`'s `Deserialize` reads (the fields it passes to
/// `deserialize_struct`): how each library says which keys are its own.
fn fields<T: DeserializeOwned>() -> Vec<&'static str> {
    struct Fields(Vec<&'static str>);
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only the fields are wanted"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields.to_vec();
            Err(serde::de::Error::custom("only the fields are wanted"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }
    let mut fields = Fields(Vec::new());
    let _ = T::deserialize(&mut fields);
    fields.0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Result<Config> {
        let config = Config::parse(text)?;
        config.validate()?;
        Ok(config)
    }

    const BASE: &str = "[upstream]\nurl_template = \"http://x.test/{topic}\"\n";

    #[test]
    fn every_upstream_key_has_exactly_one_owner() {
        let mut all: Vec<&str> = [
            fields::<PoolConfig>(),
            fields::<StreamConfig>(),
            fields::<sse_state_machine::Config>(),
        ]
        .concat();
        assert!(all.len() > 30, "{all:?}");
        all.extend(["tls", "attempts"]);
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "a key claimed twice: {all:?}");
    }

    #[test]
    fn the_cluster_section_is_checked_and_takes_its_secrets_from_the_environment() {
        let config = parse(&format!(
            "{BASE}[cluster]\nenabled = true\nname = \"prod\"\nlease_ttl = \"5s\"\n"
        ))
        .expect("valid");
        assert!(config.cluster.enabled);
        assert_eq!(config.cluster.lease_ttl, Duration::from_secs(5));
        for (text, key) in [
            ("lease_ttl = \"0s\"", "cluster.lease_ttl"),
            ("name = \"a.b\"", "cluster.name"),
            ("request_timeout = \"9s\"", "cluster.request_timeout"),
            ("nats_url = []", "cluster.nats_url"),
        ] {
            let err = parse(&format!("{BASE}[cluster]\n{text}\n"))
                .and_then(|c| c.validate().map(|()| c))
                .map(|_| ())
                .expect_err(text);
            assert!(format!("{err:#}").contains(key), "{text}: {err:#}");
        }
        // A user's password comes from the environment, not the file.
        let mut config =
            Config::parse(&format!("{BASE}[cluster]\nuser = \"gw\"\n")).expect("parsed");
        assert!(config.validate().is_err(), "a user without a password");
        config
            .apply_env(
                [
                    ("SSEGATE_CLUSTER_PASSWORD".to_string(), "p".to_string()),
                    ("SSEGATE_CLUSTER_TOKEN".to_string(), "t".to_string()),
                ]
                .into_iter(),
            )
            .expect("applied");
        assert_eq!(config.cluster.password.as_deref(), Some("p"));
        assert_eq!(config.cluster.token.as_deref(), Some("t"));
        // A change of [cluster] applies at a restart only: a reload says so.
        let base = parse(BASE).expect("valid");
        let other = parse(&format!("{BASE}[cluster]\nlease_ttl = \"4s\"\n")).expect("valid");
        assert_eq!(base.restart_keys(&other), ["cluster.lease_ttl"]);
    }

    #[test]
    fn the_example_file_is_valid_and_shows_the_defaults() {
        let text = include_str!("../../../ssegate.example.toml");
        let config = parse(text).expect("the example is valid");
        let defaults = Config::default();
        assert_eq!(
            config.bridge, defaults.bridge,
            "the example shows the bridge's defaults"
        );
        let (u, d) = (&config.upstream, &defaults.upstream);
        assert_eq!(
            u.pool.stream.machine, d.pool.stream.machine,
            "the example shows the machine's defaults"
        );
        assert_eq!(u.pool.stream.health, d.pool.stream.health);
        assert_eq!(u.pool.stream.limits, d.pool.stream.limits);
        assert_eq!(
            u.pool.stream.connections.max_per_host(),
            d.pool.stream.connections.max_per_host()
        );
        assert_eq!(
            (
                u.pool.max_streams,
                u.pool.max_streams_per_host,
                u.pool.idle_linger,
                u.pool.max_topic_len
            ),
            (
                d.pool.max_streams,
                d.pool.max_streams_per_host,
                d.pool.idle_linger,
                d.pool.max_topic_len
            )
        );
        assert_eq!((&u.tls, u.attempts), (&d.tls, d.attempts));
    }

    #[test]
    fn backoff_and_rotation_durations_reach_the_state_machine_and_are_checked() {
        let config = parse(&format!(
            "{BASE}reconnect_spread = \"250ms\"\nbackoff_reset_after = \"2s\"\n\
             rotation_handover_timeout = \"5s\"\nretry_after_max = \"1m\"\nmax_sockets_per_host = 7\n\
             [upstream.health]\nmin_events_per_min = 0\n"
        ))
        .expect("valid");
        let stream = &config.upstream.pool.stream;
        let machine = &stream.machine;
        assert_eq!(machine.backoff.reconnect_spread, Duration::from_millis(250));
        assert_eq!(machine.backoff.reset_after, Duration::from_secs(2));
        assert_eq!(machine.handover_timeout, Duration::from_secs(5));
        assert_eq!(machine.retry_after_max, Duration::from_secs(60));
        assert_eq!(stream.connections.max_per_host(), 7);
        assert_eq!(stream.health.min_events_per_min, Some(0));
        let err = parse(&format!("{BASE}backoff_max_rate_limited = \"1s\""))
            .expect_err("the 429 cap below backoff_max is refused")
            .to_string();
        assert!(err.contains("upstream.backoff_max_rate_limited"), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let err = |text: &str| format!("{:#}", parse(text).expect_err("refused"));
        let cases = [
            (
                format!("{BASE}[bridge]\nheartbeat = \"0s\""),
                "bridge.heartbeat",
            ),
            (format!("{BASE}max_streams = 0"), "upstream.max_streams"),
            (
                format!("{BASE}idle_timeout = \"soon\""),
                "upstream.idle_timeout",
            ),
            (format!("{BASE}bogus = 1"), "upstream.bogus"),
            (
                format!("{BASE}idle_timout = \"1m\""),
                "did you mean `idle_timeout`?",
            ),
            (
                "[bridge]\nheartbeat = \"15s\"".into(),
                "upstream.url_template",
            ),
            (
                format!("{BASE}backoff_initial = \"1h\""),
                "upstream.backoff_initial",
            ),
            (
                format!("{BASE}max_line_bytes = -1"),
                "upstream.max_line_bytes",
            ),
            (
                format!("{BASE}[upstream.health]\nwindow = \"0s\""),
                "upstream.health.window",
            ),
            (
                format!("{BASE}[upstream.attempts]\nburst = 0"),
                "upstream.attempts.burst",
            ),
            (
                format!("{BASE}[upstream.tls]\nhttp3 = true"),
                "upstream.tls.http3",
            ),
            (
                format!("{BASE}[upstream.headers]\n\"a b\" = \"c\""),
                "upstream.headers",
            ),
            (format!("{BASE}[log]\nlevel = \"[\""), "log.level"),
            ("[bogus]\nx = 1".into(), "bogus"),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.contains(key), "{key} not in {e:?}\n{text}");
        }
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let mut config = Config::parse(BASE).expect("parses");
        config
            .apply_env(
                [(
                    "SSEGATE_UPSTREAM_HEADER_AUTHORIZATION".to_string(),
                    "Bearer t".to_string(),
                )]
                .into_iter(),
            )
            .unwrap();
        assert_eq!(config.upstream.pool.headers["authorization"], "Bearer t");
        let err = config
            .apply_env([("SSEGATE_UPSTREAM_HEADER_X".to_string(), "a\nb".to_string())].into_iter())
            .expect_err("a value with a line break");
        assert!(
            err.to_string().contains("SSEGATE_UPSTREAM_HEADER_X"),
            "{err}"
        );
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
        let mut config = Config::parse(BASE).expect("parses");
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
        let mut config = Config::parse(&format!(
            "{BASE}[bridge.auth.jwt]\nalgorithms = [\"HS256\"]\n"
        ))
        .unwrap();
        let err = config.validate().expect_err("HS256 without a secret");
        assert!(
            err.to_string().contains("SSEGATE_JWT_HS256_SECRET"),
            "{err}"
        );
        assert!(
            err.to_string().contains("bridge.auth.jwt.algorithms"),
            "{err}"
        );
        config
            .apply_env([("SSEGATE_JWT_HS256_SECRET".to_string(), "x".repeat(40))].into_iter())
            .unwrap();
        config.validate().expect("HS256 with its secret");
    }

    #[test]
    fn a_reload_lists_every_upstream_key_that_changed() {
        let old = parse(&format!("{BASE}idle_timeout = \"90s\"\nmax_streams = 50\n")).unwrap();
        let new = parse(
            "[upstream]\nurl_template = \"http://y.test/{topic}\"\nmax_streams = 10\n\
             reconnect_spread = \"1s\"\n[upstream.tls]\nhttp2 = false\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(
            old.restart_keys(&new),
            [
                "upstream.idle_timeout",
                "upstream.reconnect_spread",
                "upstream.tls",
                "upstream.url_template",
                "log.format"
            ],
            "max_streams applies at once; the rest are listed"
        );
        assert!(old.restart_keys(&old).is_empty());
    }

    #[test]
    fn cors_origins_are_checked() {
        let err = |text: &str| parse(text).expect_err("refused").to_string();
        let base = format!("{BASE}[bridge]\n");
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
