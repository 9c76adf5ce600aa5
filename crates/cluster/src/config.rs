//! The `[cluster]` section: where NATS is, how to log in, how the cluster is
//! named, and the lease timing; checking it, and turning it into the
//! client's connect options.
//!
//! Secrets (password, token, nkey seed) may be written in the file, but
//! the application is expected to take them from the environment (ssegate
//! reads `SSEGATE_CLUSTER_PASSWORD` and the like) so they stay out of it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The longest cluster name: it prefixes every bucket and subject, whose
/// names NATS limits (a bucket name of 255 bytes is far beyond this).
pub const MAX_NAME_LEN: usize = 32;

/// The cluster section. Off unless `enabled`; then every key has a default
/// that suits one NATS on loopback.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Whether this process joins a cluster. Default false: one process, no
    /// NATS, every single-process behaviour.
    pub enabled: bool,
    /// Prefixes every subject and bucket, so two clusters can share one
    /// NATS. Letters, digits, `_` and `-`; default `ssegate`.
    pub name: String,
    /// This instance's name as the others see it (leases, `/admin/cluster`).
    /// Default: the host name, the process id and a random suffix, so a
    /// restarted process never mistakes an old lease for its own.
    pub instance: Option<String>,
    /// The NATS servers (`nats://host:port` or `tls://host:port`); the
    /// client tries them in turn and reconnects among them.
    pub nats_urls: Vec<String>,
    /// User and password authentication.
    pub user: Option<String>,
    /// The password for `user`.
    pub password: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// An nkey seed (`SU...`) to sign the server's challenge with.
    pub nkey: Option<String>,
    /// A `.creds` file (JWT and nkey seed), as `nsc` writes it.
    pub creds_file: Option<PathBuf>,
    /// Require TLS to NATS even where the URL says `nats://`.
    pub tls_required: bool,
    /// A PEM file of the CA certificates that sign NATS's certificate
    /// (default: the system's roots).
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate and key (PEM) for servers that verify clients.
    pub tls_cert_file: Option<PathBuf>,
    /// The key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// How long a topic's lease lives without renewal. The owner renews it
    /// at a third of this and gives the upstream up before it runs out, so
    /// a dead owner's topics are taken over after at most this long.
    /// Default 3 s; at least 1 s (NATS ages messages in whole seconds'
    /// granularity at best, and a shorter lease would renew too often).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How long a connect or a request to NATS may take. Default 2 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// While this instance cannot reach NATS (for a lease's time: every
    /// owner has given its upstream up by then), it opens upstreams of its
    /// own for topics it has subscribers of, at most this many, and
    /// closes them when NATS is back. Default 5; 0 turns the fallback off
    /// (subscribers then get heartbeats until NATS is back). Each one is
    /// a connection to the provider on top of the cluster-wide cap.
    pub fallback_max_streams: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            name: "ssegate".to_string(),
            instance: None,
            nats_urls: vec!["nats://127.0.0.1:4222".to_string()],
            user: None,
            password: None,
            token: None,
            nkey: None,
            creds_file: None,
            tls_required: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            lease_ttl: Duration::from_secs(3),
            request_timeout: Duration::from_secs(2),
            fallback_max_streams: 5,
        }
    }
}

/// The secrets are never printed.
impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<hidden>");
        f.debug_struct("ClusterConfig")
            .field("enabled", &self.enabled)
            .field("name", &self.name)
            .field("instance", &self.instance)
            .field("nats_urls", &self.nats_urls)
            .field("user", &self.user)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("nkey", &hidden(&self.nkey))
            .field("creds_file", &self.creds_file)
            .field("tls_required", &self.tls_required)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("lease_ttl", &self.lease_ttl)
            .field("request_timeout", &self.request_timeout)
            .field("fallback_max_streams", &self.fallback_max_streams)
            .finish()
    }
}

/// The largest `fallback_max_streams`.
pub const MAX_FALLBACK_STREAMS: usize = 10_000;

/// A key of the section that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key as the file writes it, e.g. `cluster.lease_ttl`.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

impl ClusterConfig {
    /// Checks every key; the first problem found, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return Err(invalid(
                "cluster.name",
                format!("must have 1 to {MAX_NAME_LEN} characters"),
            ));
        }
        if !self
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "cluster.name",
                format!(
                    "{:?}: only letters, digits, `_` and `-` (it prefixes NATS subjects and buckets)",
                    self.name
                ),
            ));
        }
        if let Some(instance) = &self.instance
            && (instance.is_empty()
                || instance.len() > 64
                || !instance.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(invalid(
                "cluster.instance",
                "1 to 64 printable characters without spaces",
            ));
        }
        if self.nats_urls.is_empty() {
            return Err(invalid("cluster.nats_urls", "give at least one NATS URL"));
        }
        for url in &self.nats_urls {
            // ws:// and wss:// parse too, but this build has no
            // WebSocket transport.
            let scheme_ok =
                url.starts_with("nats://") || url.starts_with("tls://") || !url.contains("://");
            if !scheme_ok || url.parse::<async_nats::ServerAddr>().is_err() {
                return Err(invalid(
                    "cluster.nats_urls",
                    format!("{url:?} is not a NATS URL (nats://host:port or tls://host:port)"),
                ));
            }
        }
        let methods = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey.is_some(),
            self.creds_file.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if methods > 1 {
            return Err(invalid(
                "cluster.user",
                "give one way to log in: user and password, token, nkey or creds_file",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(invalid("cluster.password", "user and password go together"));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(invalid(
                "cluster.tls_key_file",
                "tls_cert_file and tls_key_file go together",
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) || self.lease_ttl > Duration::from_secs(300) {
            return Err(invalid("cluster.lease_ttl", "must be from 1s to 5m"));
        }
        if self.request_timeout.is_zero() || self.request_timeout >= self.lease_ttl {
            return Err(invalid(
                "cluster.request_timeout",
                "must be above zero and below lease_ttl (a renewal must be able to fail in time)",
            ));
        }
        if self.fallback_max_streams > MAX_FALLBACK_STREAMS {
            return Err(invalid(
                "cluster.fallback_max_streams",
                format!("at most {MAX_FALLBACK_STREAMS}"),
            ));
        }
        Ok(())
    }

    /// The name others know this instance by: `instance` when set, else
    /// the host name, the process id and eight random hex digits.
    pub fn instance_name(&self) -> String {
        if let Some(instance) = &self.instance {
            return instance.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or_else(|| "host".to_string());
        let mut random = [0u8; 4];
        // Without the OS's randomness the pid still tells processes apart
        // on one host; the suffix only guards against pid reuse.
        let _ = getrandom::fill(&mut random);
        format!(
            "{host}-{}-{:08x}",
            std::process::id(),
            u32::from_be_bytes(random)
        )
    }

    /// The client's options: credentials, TLS, timeouts, and reconnecting
    /// for ever (the cluster degrades, it does not give up).
    pub async fn connect_options(&self) -> Result<async_nats::ConnectOptions, ConfigError> {
        let mut options = match (&self.user, &self.password, &self.token, &self.nkey) {
            (Some(user), Some(password), _, _) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            (_, _, Some(token), _) => async_nats::ConnectOptions::with_token(token.clone()),
            (_, _, _, Some(seed)) => async_nats::ConnectOptions::with_nkey(seed.clone()),
            _ => async_nats::ConnectOptions::new(),
        };
        if let Some(creds) = &self.creds_file {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| invalid("cluster.creds_file", format!("{}: {e}", creds.display())))?;
        }
        if self.tls_required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &self.tls_ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options
            .name(self.instance_name())
            .connection_timeout(self.request_timeout)
            .request_timeout(Some(self.request_timeout))
            .retry_on_initial_connect()
            .max_reconnects(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClusterConfig, String> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn the_defaults_are_off_and_valid() {
        let config = parse("").expect("defaults");
        assert!(!config.enabled);
        assert_eq!(config.lease_ttl, Duration::from_secs(3));
        assert_eq!(config.name, "ssegate");
    }

    #[test]
    fn each_bad_key_is_named() {
        for (text, key) in [
            ("name = 'a.b'", "cluster.name"),
            ("name = ''", "cluster.name"),
            ("nats_urls = []", "cluster.nats_urls"),
            ("nats_urls = ['http://[::1']", "cluster.nats_urls"),
            ("nats_urls = ['http://127.0.0.1:4222']", "cluster.nats_urls"),
            ("nats_urls = ['ws://127.0.0.1:4222']", "cluster.nats_urls"),
            ("lease_ttl = '100ms'", "cluster.lease_ttl"),
            (
                "lease_ttl = '2s'\nrequest_timeout = '2s'",
                "cluster.request_timeout",
            ),
            ("user = 'u'", "cluster.password"),
            ("user = 'u'\npassword = 'p'\ntoken = 't'", "cluster.user"),
            ("tls_cert_file = 'c.pem'", "cluster.tls_key_file"),
            ("instance = 'a b'", "cluster.instance"),
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.starts_with(key), "{text}: {error}");
        }
        let unknown = parse("lease_tll = '3s'").expect_err("unknown key");
        assert!(unknown.contains("lease_tll"), "{unknown}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let config = parse("token = 'hunter2'").expect("token");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn instance_names_differ_between_configs_without_one() {
        let config = ClusterConfig::default();
        assert_ne!(config.instance_name(), config.instance_name());
        let named = parse("instance = 'gw-1'").expect("named");
        assert_eq!(named.instance_name(), "gw-1");
    }
}
