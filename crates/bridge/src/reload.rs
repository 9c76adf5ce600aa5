//! Reloading the configuration without dropping anyone. Every key of
//! [`BridgeConfig`] is in [`KEYS`], with how a change to it takes effect:
//! at once (for newcomers; nobody already admitted is dropped) or only at
//! a restart. A reload validates everything first: an invalid configuration
//! changes nothing.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sse_conn_pool::Connector;

use crate::config::{BridgeConfig, ConfigError};
use crate::edge::tls::{Certificate, Pair, TlsFiles};
use crate::hooks::Reload;
use crate::state::{Shared, duration_ms};

/// How a changed key takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applies {
    /// At once, for what comes next.
    Now,
    /// Only when the gateway restarts (listeners, buffers sized at start,
    /// what clients were already told).
    AtRestart,
}

/// One key of `[bridge]`: its name, how a change applies, whether it
/// changed between two configurations, and (for `Now`) how to take the new
/// value into the configuration in force.
pub(crate) struct Key {
    pub(crate) name: &'static str,
    pub(crate) applies: Applies,
    /// The fields of `BridgeConfig` it stands for.
    #[cfg_attr(not(test), allow(dead_code))]
    fields: &'static [&'static str],
    changed: fn(&BridgeConfig, &BridgeConfig) -> bool,
    take: fn(&mut BridgeConfig, &BridgeConfig),
}

/// A [`Key`] over one or more fields of `BridgeConfig`.
macro_rules! key {
    ($name:literal, $applies:ident, $($field:ident),+) => {
        Key {
            name: $name,
            applies: Applies::$applies,
            fields: &[$(stringify!($field)),+],
            changed: |a, b| false $(|| a.$field != b.$field)+,
            take: |to, from| { $(to.$field = from.$field.clone();)+ },
        }
    };
}

/// Every key of `[bridge]` (a test holds this to the struct's fields).
pub(crate) const KEYS: &[Key] = &[
    key!("max_subscribers", Now, max_subscribers),
    key!("max_per_ip", Now, max_per_ip),
    key!("new_streams_per_sec", Now, new_streams_per_sec),
    key!(
        "new_streams_per_ip_per_sec",
        Now,
        new_streams_per_ip_per_sec
    ),
    key!("write_timeout", Now, write_timeout),
    // Token files and keys are read again: a revoked token is refused from
    // now on; streams open keep going until their token expires.
    key!("auth", Now, auth),
    key!("listen", AtRestart, listen),
    key!("admin_listen", AtRestart, admin_listen),
    key!("heartbeat", AtRestart, heartbeat),
    key!("retry_hint", AtRestart, retry_hint),
    key!("header_read_timeout", AtRestart, header_read_timeout),
    key!("idle_timeout", AtRestart, idle_timeout),
    key!(
        "h2_max_concurrent_streams",
        AtRestart,
        h2_max_concurrent_streams
    ),
    key!("h2_max_pending_resets", AtRestart, h2_max_pending_resets),
    key!("max_connections", AtRestart, max_connections),
    key!("fd_reserve", AtRestart, fd_reserve),
    key!("max_admin_connections", AtRestart, max_admin_connections),
    key!("queue_events", AtRestart, queue_events),
    key!("queue_bytes", AtRestart, queue_bytes),
    key!("send_buffer", AtRestart, send_buffer),
    key!("replay_events", AtRestart, replay_events),
    key!("replay_bytes", AtRestart, replay_bytes),
    key!("replay_age", AtRestart, replay_age),
    key!("replay_linger", AtRestart, replay_linger),
    key!(
        "max_topics_per_connection",
        AtRestart,
        max_topics_per_connection
    ),
    key!(
        "max_unproven_topics_per_ip",
        AtRestart,
        max_unproven_topics_per_ip
    ),
    key!("drain_spread", AtRestart, drain_spread),
    key!("drain_deadline", AtRestart, drain_deadline),
    key!("policies", AtRestart, policy, policies),
    key!("debug_vars", AtRestart, debug_vars),
    key!("admin_token", AtRestart, admin_token),
    key!("admin_public_read", AtRestart, admin_public_read),
    key!("admin_hosts", AtRestart, admin_hosts),
    key!("cors", AtRestart, cors_origins, cors_credentials),
    key!("report_dir", AtRestart, report_dir),
    key!("report_keep", AtRestart, report_keep),
    key!("demo_page", AtRestart, demo_page),
    // The pair is read again at every reload, like the auth files (a
    // renewed certificate is a change of the files, not of the key);
    // turning TLS on or off needs a restart.
    key!("tls", Now, tls),
    key!("admin_tls", Now, admin_tls),
    key!("trusted_proxies", Now, trusted_proxies),
    key!("proxy_protocol", AtRestart, proxy_protocol),
];

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Keys that changed and apply now.
    pub applied: Vec<String>,
    /// Keys that changed and apply only at a restart.
    pub restart: Vec<String>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "applied [{}]; changed but need a restart: [{}]",
            self.applied.join(", "),
            self.restart.join(", ")
        )
    }
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// The gateway was given no [`Hooks::reload`](crate::Hooks::reload)
    /// source.
    NoSource,
    /// The source could not read the configuration (an invalid file).
    Source(String),
    /// The configuration read is invalid.
    Invalid(ConfigError),
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSource => f.write_str("this gateway has no configuration source to reload"),
            Self::Source(why) => write!(f, "reload refused, nothing changed: {why}"),
            Self::Invalid(e) => write!(f, "reload refused, nothing changed: bridge.{e}"),
        }
    }
}

impl std::error::Error for ReloadError {}

/// Applies reloaded settings to a running gateway (cheap to clone; get one
/// from [`GatewayHandle::reloader`](crate::GatewayHandle::reloader)).
pub struct Reloader<C: Connector> {
    shared: Arc<Shared<C>>,
}

impl<C: Connector> Clone for Reloader<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C: Connector> Reloader<C> {
    pub(crate) fn new(shared: Arc<Shared<C>>) -> Self {
        Self { shared }
    }

    /// Reads the configuration with the gateway's reload source and
    /// applies it; the outcome (or why nothing changed) is logged and
    /// returned in words.
    ///
    /// # Errors
    ///
    /// No source, or what it read cannot be used: nothing changed.
    pub fn reload(&self) -> Result<String, ReloadError> {
        let source = self
            .shared
            .hooks
            .reload
            .clone()
            .ok_or(ReloadError::NoSource)?;
        let result = source()
            .map_err(ReloadError::Source)
            .and_then(|reload| self.apply(&reload).map(|outcome| (reload, outcome)));
        match result {
            Ok((reload, outcome)) => {
                let what = format!("reloaded {}: {outcome}", reload.source);
                tracing::warn!("{what}");
                Ok(what)
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused: nothing changed");
                Err(e)
            }
        }
    }

    /// Applies `reload`'s settings that can change without dropping
    /// anyone, and reports every key that changed.
    ///
    /// # Errors
    ///
    /// `reload.bridge` or `reload.max_streams` is invalid: nothing is
    /// applied.
    pub fn apply(&self, reload: &Reload) -> Result<Outcome, ReloadError> {
        let shared = &self.shared;
        let new = &reload.bridge;
        new.validate().map_err(ReloadError::Invalid)?;
        if reload.max_streams == 0 {
            return Err(ReloadError::Source(
                "upstream.max_streams: must be at least 1".into(),
            ));
        }
        // The auth files are read once, here: what validate checked.
        let authenticator = new.auth.load().map_err(|e| {
            ReloadError::Invalid(ConfigError::new(format!("auth.{}", e.key), e.reason))
        })?;
        // The certificates: read here, swapped in below with the rest.
        let pairs = certificates(shared, new)?;
        // Held to the end: one reload at a time, each reporting against
        // what the one before it left in force.
        let mut in_force = shared.in_force.lock();
        let mut outcome = Outcome::default();
        for key in KEYS {
            let changed = (key.changed)(&in_force, new);
            // Token files are re-read whatever the settings say (a revoked
            // token is a change of the file, not of the key).
            let auth = key.name == "auth" && (new.auth.enabled() || in_force.auth.enabled());
            if !(changed || auth) {
                continue;
            }
            match key.applies {
                Applies::Now => {
                    (key.take)(&mut in_force, new);
                    outcome.applied.push(key.name.to_string());
                }
                Applies::AtRestart => outcome.restart.push(key.name.to_string()),
            }
        }
        shared.limits.set(
            in_force.max_subscribers,
            in_force.max_per_ip,
            in_force.new_streams_per_sec,
            in_force.new_streams_per_ip_per_sec,
        );
        shared
            .write_timeout_ms
            .store(duration_ms(in_force.write_timeout), Ordering::Relaxed);
        *shared.auth.write() = Arc::new(authenticator);
        shared
            .trusted_proxies
            .write()
            .clone_from(&in_force.trusted_proxies);
        for (certificate, pair, name) in pairs {
            certificate.swap(pair);
            if !outcome.applied.iter().any(|k| k == name) {
                outcome.applied.push(name.into());
            }
        }
        // TLS turned on or off: the listener keeps what it started with.
        for (serving, wanted, name) in tls_listeners(shared, new) {
            if serving.is_some() != wanted.is_some() {
                outcome.applied.retain(|k| k != name);
                outcome.restart.push(name.into());
            }
        }
        shared
            .principals
            .set_max(in_force.auth.max_streams_per_token);
        let pool = shared.hub.pool();
        if pool.max_streams() != reload.max_streams {
            pool.set_max_streams(reload.max_streams);
            outcome.applied.push("upstream.max_streams".into());
        }
        if let (Some(level), Some(log)) = (&reload.log_level, &shared.hooks.log)
            && *level != log.current()
        {
            match log.apply(level) {
                Ok(_) => outcome.applied.push("log.level".into()),
                Err(why) => tracing::warn!(%why, "reload: log.level not applied"),
            }
        }
        outcome.restart.extend(reload.restart.iter().cloned());
        Ok(outcome)
    }
}

/// The pairs to serve from now on, read from `new`'s files, for each
/// listener that has TLS: a listener started without TLS gets none until
/// a restart (its key reports the change), and one started with it keeps
/// serving TLS.
fn certificates<'a, C: Connector>(
    shared: &'a Shared<C>,
    new: &BridgeConfig,
) -> Result<Vec<(&'a Certificate, Pair, &'static str)>, ReloadError> {
    let mut pairs = Vec::new();
    for (certificate, files, key) in tls_listeners(shared, new) {
        if let (Some(certificate), Some(files)) = (certificate, files) {
            let pair = files
                .load(key)
                .map_err(|e| ReloadError::Invalid(ConfigError::new(e.key, e.reason)))?;
            pairs.push((certificate, pair, key));
        }
    }
    Ok(pairs)
}

/// Each TLS-capable listener: what it serves now, what `new` asks for,
/// and its key.
fn tls_listeners<'a, 'b, C: Connector>(
    shared: &'a Shared<C>,
    new: &'b BridgeConfig,
) -> [(Option<&'a Certificate>, Option<&'b TlsFiles>, &'static str); 2] {
    [
        (shared.tls.as_ref(), new.tls.as_ref(), "tls"),
        (
            shared.admin_tls.as_ref(),
            new.admin_tls.as_ref(),
            "admin_tls",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of `BridgeConfig`'s fields, as its deserializer lists
    /// them when it meets a key it does not know.
    fn fields() -> Vec<String> {
        let e = toml::from_str::<BridgeConfig>("not_a_key = 1").expect_err("unknown");
        let message = e.to_string();
        let expected = message.split("expected one of").nth(1).expect("the list");
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_key_of_the_bridge_says_how_a_change_applies() {
        let mut covered: Vec<&str> = KEYS.iter().flat_map(|k| k.fields.iter().copied()).collect();
        covered.sort_unstable();
        let mut all = fields();
        all.sort_unstable();
        assert!(all.len() > 20, "{all:?}");
        assert_eq!(
            covered, all,
            "each field of BridgeConfig in exactly one key"
        );
        // Changing one field: exactly its key notices.
        type Change = fn(&mut BridgeConfig);
        let changes: [(&str, Change); 4] = [
            ("max_per_ip", |c| c.max_per_ip += 1),
            ("heartbeat", |c| c.heartbeat *= 2),
            ("cors", |c| c.cors_credentials = !c.cors_credentials),
            ("policies", |c| c.policy = crate::Policy::Conflate),
        ];
        let before = BridgeConfig::default();
        for (name, change) in changes {
            let mut after = BridgeConfig::default();
            change(&mut after);
            let noticed: Vec<&str> = KEYS
                .iter()
                .filter(|k| (k.changed)(&before, &after))
                .map(|k| k.name)
                .collect();
            assert_eq!(noticed, [name]);
            let mut taken = BridgeConfig::default();
            for key in KEYS.iter().filter(|k| k.name == name) {
                (key.take)(&mut taken, &after);
            }
            assert_eq!(taken, after, "{name}: taking the key takes the change");
        }
    }
}
