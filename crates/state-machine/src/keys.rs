//! [`Config`] as a flat table of keys (the `serde` feature), the way an
//! application's configuration file writes it:
//!
//! ```toml
//! connect_timeout = "5s"
//! backoff_initial = "1s"
//! backoff_max = "30s"
//! reconnect_spread = "3s"
//! max_age = "12h"        # "0s": never rotate by age
//! ```
//!
//! Every key is optional and defaults to [`Config::default`]'s value;
//! unknown keys are refused. The names are those [`ConfigError::key`]
//! reports, so that an error names what the file says.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::config::{Backoff, Config, Jitter};

/// The flat keys, one per field of [`Config`] and its [`Backoff`].
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Keys {
    #[serde(with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    first_byte_timeout: Duration,
    #[serde(with = "humantime_serde")]
    idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    event_assembly_timeout: Duration,
    #[serde(with = "humantime_serde")]
    backoff_initial: Duration,
    backoff_multiplier: f64,
    #[serde(with = "humantime_serde")]
    backoff_max: Duration,
    #[serde(with = "humantime_serde")]
    backoff_max_rate_limited: Duration,
    #[serde(with = "humantime_serde")]
    backoff_max_auth: Duration,
    backoff_jitter: JitterKey,
    #[serde(with = "humantime_serde")]
    backoff_reset_after: Duration,
    #[serde(with = "humantime_serde")]
    reconnect_spread: Duration,
    #[serde(with = "humantime_serde")]
    reconnect_spread_step: Duration,
    #[serde(with = "humantime_serde")]
    backoff_after_loss: Duration,
    #[serde(with = "humantime_serde")]
    backoff_established_after: Duration,
    #[serde(with = "humantime_serde")]
    retry_min: Duration,
    #[serde(with = "humantime_serde")]
    retry_max: Duration,
    #[serde(with = "humantime_serde")]
    retry_after_max: Duration,
    /// `0s`: never.
    #[serde(with = "humantime_serde")]
    max_age: Duration,
    max_age_jitter: f64,
    /// `0`: never cool off.
    attempt_budget: u32,
    #[serde(with = "humantime_serde")]
    cool_off: Duration,
    #[serde(with = "humantime_serde")]
    rotation_handover_timeout: Duration,
    handover_window: usize,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum JitterKey {
    None,
    Half,
    Full,
}

impl Default for Keys {
    fn default() -> Self {
        let c = Config::default();
        Self {
            connect_timeout: c.connect_timeout,
            first_byte_timeout: c.first_byte_timeout,
            idle_timeout: c.idle_timeout,
            event_assembly_timeout: c.event_assembly_timeout,
            backoff_initial: c.backoff.initial,
            backoff_multiplier: c.backoff.multiplier,
            backoff_max: c.backoff.max,
            backoff_max_rate_limited: c.backoff.max_rate_limited,
            backoff_max_auth: c.backoff.max_auth,
            backoff_jitter: match c.backoff.jitter {
                Jitter::None => JitterKey::None,
                Jitter::Half => JitterKey::Half,
                Jitter::Full => JitterKey::Full,
            },
            backoff_reset_after: c.backoff.reset_after,
            reconnect_spread: c.backoff.reconnect_spread,
            reconnect_spread_step: c.backoff.reconnect_spread_step,
            backoff_after_loss: c.backoff.after_loss,
            backoff_established_after: c.backoff.established_after,
            retry_min: c.retry_min,
            retry_max: c.retry_max,
            retry_after_max: c.retry_after_max,
            max_age: c.max_age.unwrap_or_default(),
            max_age_jitter: c.max_age_jitter,
            attempt_budget: c.attempt_budget.unwrap_or(0),
            cool_off: c.cool_off,
            rotation_handover_timeout: c.handover_timeout,
            handover_window: c.handover_window,
        }
    }
}

impl From<Keys> for Config {
    fn from(k: Keys) -> Self {
        Self {
            connect_timeout: k.connect_timeout,
            first_byte_timeout: k.first_byte_timeout,
            idle_timeout: k.idle_timeout,
            event_assembly_timeout: k.event_assembly_timeout,
            backoff: Backoff {
                initial: k.backoff_initial,
                multiplier: k.backoff_multiplier,
                max: k.backoff_max,
                max_rate_limited: k.backoff_max_rate_limited,
                max_auth: k.backoff_max_auth,
                jitter: match k.backoff_jitter {
                    JitterKey::None => Jitter::None,
                    JitterKey::Half => Jitter::Half,
                    JitterKey::Full => Jitter::Full,
                },
                reset_after: k.backoff_reset_after,
                reconnect_spread: k.reconnect_spread,
                reconnect_spread_step: k.reconnect_spread_step,
                after_loss: k.backoff_after_loss,
                established_after: k.backoff_established_after,
            },
            retry_min: k.retry_min,
            retry_max: k.retry_max,
            retry_after_max: k.retry_after_max,
            max_age: (!k.max_age.is_zero()).then_some(k.max_age),
            max_age_jitter: k.max_age_jitter,
            attempt_budget: (k.attempt_budget > 0).then_some(k.attempt_budget),
            cool_off: k.cool_off,
            handover_timeout: k.rotation_handover_timeout,
            handover_window: k.handover_window,
        }
    }
}

/// Deserializes from the flat keys (see the module docs). Not validated:
/// call [`Config::validate`], whose errors name the same keys.
impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Keys::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_the_default_and_each_key_sets_its_field() {
        let empty: Config = toml::from_str("").expect("all keys optional");
        assert_eq!(empty, Config::default());
        let c: Config = toml::from_str(
            "backoff_initial = \"250ms\"\nreconnect_spread = \"0s\"\nmax_age = \"0s\"\n\
             rotation_handover_timeout = \"5s\"\nbackoff_jitter = \"full\"\nattempt_budget = 3\n",
        )
        .expect("valid");
        assert_eq!(c.backoff.initial, Duration::from_millis(250));
        assert_eq!(c.backoff.reconnect_spread, Duration::ZERO);
        assert_eq!(c.max_age, None, "0s: never by age");
        assert_eq!(c.handover_timeout, Duration::from_secs(5));
        assert_eq!(c.backoff.jitter, Jitter::Full);
        assert_eq!(c.attempt_budget, Some(3));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let e = toml::from_str::<Config>("backoff_initail = \"1s\"").expect_err("a typo");
        assert!(e.to_string().contains("backoff_initail"), "{e}");
        let e = toml::from_str::<Config>("idle_timeout = \"soon\"").expect_err("not a duration");
        assert!(e.to_string().contains("idle_timeout"), "{e}");
    }

    #[test]
    fn validation_errors_name_the_key_of_the_file() {
        let c: Config = toml::from_str("backoff_initial = \"1h\"").expect("parses");
        assert_eq!(c.validate().map_err(|e| e.key()), Err("backoff_initial"));
        let c: Config = toml::from_str("rotation_handover_timeout = \"0s\"").expect("parses");
        assert_eq!(
            c.validate().map_err(|e| e.key()),
            Err("rotation_handover_timeout")
        );
    }
}
