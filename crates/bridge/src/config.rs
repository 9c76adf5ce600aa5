//! The bridge's settings, every one finite and defaulted (docs/RELIABILITY.md's
//! defaults table), deserializable from the `[bridge]` table of ssegate's
//! TOML config. Durations are written like `"15s"` or `"5m"`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::AuthConfig;
use crate::edge::forwarded::Cidr;
use crate::edge::tls::TlsFiles;
use crate::policy::Policy;

/// The bridge's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgeConfig {
    /// Where clients connect. Default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`, `/admin/...`).
    /// Default 127.0.0.1:9090: keep it off the public interface.
    pub admin_listen: SocketAddr,
    /// A `:` comment this often on every stream. Default 15 s.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// The `retry:` hint sent first on every stream. Default 3 s.
    #[serde(with = "humantime_serde")]
    pub retry_hint: Duration,
    /// A client must send its request headers within this (its first
    /// request's, on every connection). Default 10 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection served through hyper (HTTP/2, the admin listener, and
    /// HTTP/1.1 other than the streams' fast path) with no request in
    /// progress for this long is closed (HTTP/2 with a GOAWAY). Default 60 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// HTTP/2: streams at once on one connection (every subscriber limit
    /// counts streams, not connections). Default 100.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: streams a client may have reset before the server accepted
    /// them, at once; more close the connection (the "rapid reset" attack).
    /// Default 20.
    pub h2_max_pending_resets: usize,
    /// Client connections at once; a connection over it is closed as soon
    /// as it is accepted. 0 (default): the process's open-file limit minus
    /// `fd_reserve`, so that running out of descriptors never takes the
    /// admin listener, the upstream pool or the logs down with the clients.
    pub max_connections: usize,
    /// Descriptors kept from clients when `max_connections` is automatic.
    /// Default 512.
    pub fd_reserve: usize,
    /// Admin connections at once (probes, scrapes, status pages); more are
    /// closed at once. Default 64.
    pub max_admin_connections: usize,
    /// A subscriber with queued data that takes nothing for this long is
    /// disconnected. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Events a subscriber's queue holds. Default 1,024.
    pub queue_events: usize,
    /// Bytes a subscriber's queue holds. Default 1 MiB.
    pub queue_bytes: usize,
    /// The kernel's send buffer of each client socket (`SO_SNDBUF`; Linux
    /// doubles it). It bounds what a client that stopped reading holds in
    /// kernel memory: with the system's autotuning that reaches megabytes
    /// per socket, and the client is cut only once it is full (see
    /// `write_timeout`). 0 leaves the system's default. Default 64 KiB.
    pub send_buffer: usize,
    /// Events kept per topic for `Last-Event-ID` replay. Default 10,000.
    pub replay_events: usize,
    /// Bytes kept per topic for replay. Default 16 MiB.
    pub replay_bytes: usize,
    /// How old a replayable event may be. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub replay_age: Duration,
    /// How long a topic is kept (its replay buffer, and so its upstream)
    /// after its last subscriber left, so that a client that comes back
    /// (a lone browser after a network blip, everyone after
    /// `/admin/disconnect`) resumes without a gap. 0 releases at once.
    /// Default 30 s.
    #[serde(with = "humantime_serde")]
    pub replay_linger: Duration,
    /// Subscribers (streams) at once. Default 10,000.
    pub max_subscribers: usize,
    /// Streams per client IP at once. Default 100.
    pub max_per_ip: usize,
    /// Topics on one stream. Default 16.
    pub max_topics_per_connection: usize,
    /// New topics (each an upstream stream from the pool) one client IP
    /// may hold while they have not delivered an event: a client asking
    /// for topics that never deliver cannot crowd working ones out of the
    /// pool. Default 16.
    pub max_unproven_topics_per_ip: usize,
    /// New streams accepted per second (token bucket; burst twice that).
    /// Default 200.
    pub new_streams_per_sec: u32,
    /// Stream requests one client IP may make per second (burst twice
    /// that), counted before its token is checked: a client sending bad
    /// tokens spends its own budget, not the gateway's CPU. Default 50.
    pub new_streams_per_ip_per_sec: u32,
    /// On shutdown, streams are ended spread over this window, so clients
    /// do not all come back in the same second. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub drain_spread: Duration,
    /// Shutdown completes within this (streams, then upstreams). Default 20 s.
    #[serde(with = "humantime_serde")]
    pub drain_deadline: Duration,
    /// The slow-consumer policy for topics without their own.
    pub policy: Policy,
    /// Per-topic slow-consumer policies.
    pub policies: BTreeMap<String, Policy>,
    /// The upstream routes' slow-consumer policies, in the routes' order:
    /// a topic without a policy of its own takes that of the first route
    /// whose topics match it (the route that serves it), if that route
    /// has one. Not read from `[bridge]`: the application fills it from
    /// its routes (ssegate's `[[upstream.routes]]` `policy`).
    #[serde(skip)]
    pub route_policies: Vec<(sse_conn_pool::TopicMatch, Option<Policy>)>,
    /// Serve `/debug/vars` on the admin listener: internal counts for the
    /// soak harness (registry sizes, queue depths, tasks, descriptors, heap
    /// when a probe is installed). Default off.
    pub debug_vars: bool,
    /// A bearer token for the admin listener. When set, every admin
    /// endpoint but the probes (`/healthz`, `/readyz`) needs
    /// `Authorization: Bearer <token>`, and the admin actions are allowed
    /// from anywhere the listener is reachable; when unset, the actions are
    /// allowed only on a loopback admin listener. Default none; set it from
    /// the environment (`SSEGATE_ADMIN_TOKEN`), not the file.
    pub admin_token: Option<AdminToken>,
    /// Let anyone who reaches a non-loopback admin listener without
    /// `admin_token` read it (`/metrics`, `/admin/streams`, the status
    /// page; never act). Without it, such a listener refuses to start.
    /// Default false.
    pub admin_public_read: bool,
    /// Host names (as in the `Host` header, with or without the port) under
    /// which the admin listener may be asked to act, besides its own
    /// address, IP literals with its port, and `localhost`: a name not
    /// listed is refused (DNS rebinding). Default none.
    pub admin_hosts: Vec<String>,
    /// Origins whose pages may use the streams (CORS): exact origins such
    /// as `https://app.example.com`, or `*` for any. Default none: only
    /// same-origin pages.
    pub cors_origins: Vec<String>,
    /// Whether those pages may send credentials (cookies); not with `*`.
    /// Default false.
    pub cors_credentials: bool,
    /// Who may subscribe: static tokens, JWT (see [`crate::auth`]). Default
    /// off: anyone who reaches the listener.
    pub auth: AuthConfig,
    /// Write each day's report (the `/admin/report?window=24h` JSON) as one
    /// line in a file of its own in this directory. Default none: the daily
    /// summary goes to the log only.
    pub report_dir: Option<std::path::PathBuf>,
    /// Daily report files kept in `report_dir` (the oldest are removed).
    /// Default 30.
    pub report_keep: usize,
    /// Serve a demo page at `/` on the stream listener: one `EventSource`
    /// on the topics in its URL (`/?topic=AAPL&topic=MSFT`), with a live
    /// table and continuity checks. Default off (`ssegate demo` turns it on).
    pub demo_page: bool,
    /// TLS on the stream listener: `{ cert_file, key_file }`, PEM. TLS 1.2
    /// and 1.3, ALPN `h2` and `http/1.1` (browsers speak HTTP/2 only over
    /// TLS). The pair is read again at every reload (SIGHUP,
    /// `POST /admin/reload`): new connections get the new one, open
    /// streams go on. Default none: cleartext.
    pub tls: Option<TlsFiles>,
    /// TLS on the admin listener, with its own pair. Default none.
    pub admin_tls: Option<TlsFiles>,
    /// Balancers and proxies in front of the stream listener (`"10.0.0.0/8"`,
    /// `"2001:db8::/32"`, or single addresses): for a peer inside them the
    /// client's address is taken from `Forwarded` or `X-Forwarded-For` (the
    /// right-most address that is not itself trusted), and from the PROXY
    /// header. Per-IP limits, logs, metrics and `/admin/streams` use it.
    /// Default none: every peer is the client.
    pub trusted_proxies: Vec<Cidr>,
    /// Every connection to the stream listener starts with a PROXY protocol
    /// header (v1 or v2, as HAProxy and cloud balancers send it), read
    /// within `header_read_timeout`; a connection without one is closed.
    /// Its address is the client's when the peer is in `trusted_proxies`
    /// (or that list is empty). Default false.
    pub proxy_protocol: bool,
}

/// The admin token: compared in constant time, never printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token (at least 16 bytes: see [`BridgeConfig::validate`]).
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// Whether `presented` is this token, in time independent of where
    /// they differ.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            heartbeat: Duration::from_secs(15),
            retry_hint: Duration::from_secs(3),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            h2_max_concurrent_streams: 100,
            h2_max_pending_resets: 20,
            max_connections: 0,
            fd_reserve: 512,
            max_admin_connections: 64,
            write_timeout: Duration::from_secs(60),
            queue_events: 1024,
            queue_bytes: 1 << 20,
            send_buffer: 64 << 10,
            replay_events: 10_000,
            replay_bytes: 16 << 20,
            replay_age: Duration::from_secs(300),
            replay_linger: Duration::from_secs(30),
            max_subscribers: 10_000,
            max_per_ip: 100,
            max_topics_per_connection: 16,
            max_unproven_topics_per_ip: 16,
            new_streams_per_sec: 200,
            new_streams_per_ip_per_sec: 50,
            drain_spread: Duration::from_secs(10),
            drain_deadline: Duration::from_secs(20),
            policy: Policy::Disconnect,
            policies: BTreeMap::new(),
            route_policies: Vec::new(),
            debug_vars: false,
            admin_token: None,
            admin_public_read: false,
            admin_hosts: Vec::new(),
            cors_origins: Vec::new(),
            cors_credentials: false,
            auth: AuthConfig::default(),
            report_dir: None,
            report_keep: 30,
            demo_page: false,
            tls: None,
            admin_tls: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
        }
    }
}

/// A setting that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key, as in the `[bridge]` table (`auth.jwt.algorithms` for a
    /// nested one); an application that embeds the table elsewhere prefixes
    /// its own path.
    pub key: Cow<'static, str>,
    /// Why.
    pub reason: Cow<'static, str>,
}

impl ConfigError {
    pub(crate) fn new(
        key: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl BridgeConfig {
    /// The policy of `topic`.
    pub fn policy_of(&self, topic: &str) -> Policy {
        if let Some(policy) = self.policies.get(topic) {
            return *policy;
        }
        self.route_policies
            .iter()
            .find(|(topics, _)| topics.matches(topic))
            .and_then(|(_, policy)| *policy)
            .unwrap_or(self.policy)
    }

    /// Refuses zero sizes and zero or absurd durations.
    ///
    /// # Errors
    ///
    /// The first key that makes no sense, and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &'static str, reason: &'static str| Err(ConfigError::new(key, reason));
        let positive = [
            ("heartbeat", self.heartbeat),
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
            ("replay_age", self.replay_age),
            ("drain_deadline", self.drain_deadline),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return err(key, "must be greater than zero");
            }
            if value > Duration::from_secs(7 * 24 * 3600) {
                return err(key, "must be at most a week");
            }
        }
        let counts = [
            ("queue_events", self.queue_events),
            ("queue_bytes", self.queue_bytes),
            ("replay_events", self.replay_events),
            ("replay_bytes", self.replay_bytes),
            ("max_subscribers", self.max_subscribers),
            ("max_per_ip", self.max_per_ip),
            ("max_topics_per_connection", self.max_topics_per_connection),
            (
                "max_unproven_topics_per_ip",
                self.max_unproven_topics_per_ip,
            ),
            ("h2_max_pending_resets", self.h2_max_pending_resets),
            ("max_admin_connections", self.max_admin_connections),
            ("report_keep", self.report_keep),
        ];
        for (key, value) in counts {
            if value == 0 {
                return err(key, "must be at least 1");
            }
        }
        if self.h2_max_concurrent_streams == 0 {
            return err("h2_max_concurrent_streams", "must be at least 1");
        }
        if self.replay_linger > Duration::from_secs(3600) {
            return err("replay_linger", "must be at most an hour");
        }
        if self.new_streams_per_sec == 0 {
            return err("new_streams_per_sec", "must be at least 1");
        }
        if self.new_streams_per_ip_per_sec == 0 {
            return err("new_streams_per_ip_per_sec", "must be at least 1");
        }
        if self.drain_spread >= self.drain_deadline {
            return err("drain_spread", "must be shorter than drain_deadline");
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            return err("admin_listen", "must differ from listen");
        }
        if !self.admin_listen.ip().is_loopback()
            && self.admin_token.is_none()
            && !self.admin_public_read
        {
            return err(
                "admin_listen",
                "a non-loopback admin listener needs admin_token (SSEGATE_ADMIN_TOKEN), or admin_public_read = true to let anyone who reaches it read it",
            );
        }
        if self.admin_hosts.iter().any(|h| {
            h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        }) {
            return err(
                "admin_hosts",
                "each must be a host name, optionally with its port",
            );
        }
        if self.admin_token.as_ref().is_some_and(|t| t.0.len() < 16) {
            return err("admin_token", "must be at least 16 characters");
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| !t.0.bytes().all(|b| b.is_ascii_graphic()))
        {
            return err("admin_token", "must be printable ASCII without spaces");
        }
        for origin in &self.cors_origins {
            let valid = origin == "*"
                || ((origin.starts_with("https://") || origin.starts_with("http://"))
                    && !origin.ends_with('/')
                    && origin.split("://").nth(1).is_some_and(|rest| {
                        !rest.is_empty() && !rest.contains('/') && rest.is_ascii()
                    }));
            if !valid {
                return err(
                    "cors_origins",
                    "each must be `*` or a scheme://host[:port] origin without a path",
                );
            }
        }
        if self.cors_credentials && self.cors_origins.iter().any(|o| o == "*") {
            return err("cors_credentials", "cannot be combined with the origin `*`");
        }
        // Reads the token files and keys: a file that cannot be used is
        // refused here, not at the first subscriber.
        self.auth
            .load()
            .map_err(|e| ConfigError::new(format!("auth.{}", e.key), e.reason))?;
        // The certificates too: unreadable, mismatched or expired.
        let pairs = [(&self.tls, "tls"), (&self.admin_tls, "admin_tls")];
        for (files, key) in pairs {
            if let Some(files) = files {
                files
                    .load(key)
                    .map_err(|e| ConfigError::new(e.key, e.reason))?;
            }
        }
        Ok(())
    }
}
