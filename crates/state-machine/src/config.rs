//! Configuration of a stream machine: timeouts, backoff and rotation, each with
//! the default from `docs/RELIABILITY.md` and a check that it makes sense.

use std::fmt;
use std::time::Duration;

/// How a backoff delay is randomised, so that many streams that fail together
/// do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// No randomness: exactly the computed delay.
    None,
    /// Uniform in `[delay / 2, delay]` (the "-50 %" of the LaunchDarkly SDKs).
    Half,
    /// Uniform in `[0, delay]` (AWS "full jitter").
    Full,
}

/// Exponential backoff between connection attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry (before jitter). A server's `retry:`
    /// field, clamped to `[retry_min, retry_max]`, replaces it.
    pub initial: Duration,
    /// Each consecutive failure multiplies the delay by this (at least 1).
    pub multiplier: f64,
    /// The largest delay after ordinary failures.
    pub max: Duration,
    /// The largest delay after 429: the server asked us to slow down.
    pub max_rate_limited: Duration,
    /// The largest delay after 401 or 403: credentials must change, and
    /// hammering an auth server helps nobody.
    pub max_auth: Duration,
    /// How the delay is randomised.
    pub jitter: Jitter,
    /// The consecutive-failure count resets only after a connection stayed
    /// open and received data for this long, so a flapping upstream (accepts,
    /// dies within a second) keeps backing off.
    pub reset_after: Duration,
    /// An established connection that is lost (it had delivered data) is
    /// reconnected at once, after only a spread: uniform over
    /// `[0, min(reconnect_spread, k x reconnect_spread_step))`, where `k` is
    /// how many streams of the same origin were lost within the last second
    /// (the shell counts them: [`Machine::set_lost_together`]). One lost
    /// stream is back within `reconnect_spread_step`; the streams of a
    /// restarted upstream come back spread over up to `reconnect_spread`
    /// (fault F20). The default, 3 s, keeps every 100 ms bucket of 1,000
    /// simultaneous reconnects under 5 %. Without a count from the shell the
    /// whole `reconnect_spread` is used.
    ///
    /// [`Machine::set_lost_together`]: crate::Machine::set_lost_together
    pub reconnect_spread: Duration,
    /// The spread's window per stream lost together (see
    /// `reconnect_spread`). Default 100 ms.
    pub reconnect_spread_step: Duration,
    /// A lost connection counts as established (reconnected at once, after
    /// the spread) if it delivered data and stayed open this long; one that
    /// dies sooner is a flapping upstream and backs off (F19). Default 1 s.
    pub established_after: Duration,
    /// If the reconnect after a lost established connection fails, the
    /// retries start from this delay (doubling, jittered, up to `max`)
    /// instead of `initial`: an upstream back from a restart within half a
    /// second is found within a second. A server's `retry:` replaces it,
    /// as it replaces `initial`. Default 100 ms.
    pub after_loss: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            max_rate_limited: Duration::from_secs(300),
            max_auth: Duration::from_secs(300),
            jitter: Jitter::Half,
            reset_after: Duration::from_secs(60),
            reconnect_spread: Duration::from_secs(3),
            reconnect_spread_step: Duration::from_millis(100),
            established_after: Duration::from_secs(1),
            after_loss: Duration::from_millis(100),
        }
    }
}

/// Everything a [`Machine`](crate::Machine) needs to decide. All durations are
/// finite; [`Config::validate`] rejects nonsense.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// From the decision to connect until the response headers (DNS, TCP, TLS,
    /// request, headers). Default 5 s.
    pub connect_timeout: Duration,
    /// From the response headers until the first body byte. Default 30 s.
    pub first_byte_timeout: Duration,
    /// Without any byte (comments count) the stream is stale. Default 90 s.
    pub idle_timeout: Duration,
    /// An event must complete within this of its first byte, so a stream that
    /// drips one byte a second cannot stay alive on the idle timer. Default 30 s.
    pub event_assembly_timeout: Duration,
    /// Backoff between attempts.
    pub backoff: Backoff,
    /// A server's `retry:` is clamped to `[retry_min, retry_max]`.
    /// Defaults 1 s and 60 s.
    pub retry_min: Duration,
    /// See `retry_min`.
    pub retry_max: Duration,
    /// A `Retry-After` longer than this is cut to it. Default 600 s.
    pub retry_after_max: Duration,
    /// Connections are rotated (make-before-break) after this age, with
    /// `max_age_jitter` of randomness. Default 12 h; `None` never rotates by age.
    pub max_age: Option<Duration>,
    /// The fraction of `max_age` by which each connection's age limit varies
    /// (uniformly, either way). Default 0.1.
    pub max_age_jitter: f64,
    /// After this many consecutive failed attempts the stream cools off for
    /// `cool_off` before trying again (the old plan's "max 3 retries", without
    /// giving up for good). Default `None`: back off forever.
    pub attempt_budget: Option<u32>,
    /// See `attempt_budget`. Default 5 min.
    pub cool_off: Duration,
    /// A rotation whose new connection has not taken over within this is
    /// abandoned (the old connection stays) and retried later. Default 30 s.
    pub handover_timeout: Duration,
    /// How many ids delivered during a rotation are remembered to drop the new
    /// connection's duplicates. A rotation that would need more is abandoned.
    /// Default 4096.
    pub handover_window: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            event_assembly_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(600),
            max_age: Some(Duration::from_secs(12 * 3600)),
            max_age_jitter: 0.1,
            attempt_budget: None,
            cool_off: Duration::from_secs(300),
            handover_timeout: Duration::from_secs(30),
            handover_window: 4096,
        }
    }
}

/// A configuration that cannot work, with the field that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field, as named in [`Config`] (`backoff.max`, say).
    pub field: &'static str,
    /// Why it was refused.
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The flat key of the field (`backoff_initial` for `backoff.initial`),
    /// as a configuration file writes it (the `serde` feature's
    /// representation).
    pub fn key(&self) -> &'static str {
        match self.field {
            "backoff.initial" => "backoff_initial",
            "backoff.multiplier" => "backoff_multiplier",
            "backoff.max" => "backoff_max",
            "backoff.max_rate_limited" => "backoff_max_rate_limited",
            "backoff.max_auth" => "backoff_max_auth",
            "backoff.jitter" => "backoff_jitter",
            "backoff.reset_after" => "backoff_reset_after",
            "backoff.reconnect_spread" => "reconnect_spread",
            "backoff.reconnect_spread_step" => "reconnect_spread_step",
            "backoff.after_loss" => "backoff_after_loss",
            "backoff.established_after" => "backoff_established_after",
            "handover_timeout" => "rotation_handover_timeout",
            other => other,
        }
    }
}

/// A duration long enough to mean "never" for this machine, yet far from
/// overflowing `Instant` arithmetic.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Config {
    /// Checks every field.
    ///
    /// # Errors
    ///
    /// The first field that makes no sense: a zero timeout, a multiplier below
    /// 1, a cap below its base, a jitter outside `[0, 1)`, a duration of a
    /// century or more.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
        let positive = [
            ("connect_timeout", self.connect_timeout),
            ("first_byte_timeout", self.first_byte_timeout),
            ("idle_timeout", self.idle_timeout),
            ("event_assembly_timeout", self.event_assembly_timeout),
            ("backoff.max", self.backoff.max),
            ("backoff.max_rate_limited", self.backoff.max_rate_limited),
            ("backoff.max_auth", self.backoff.max_auth),
            ("cool_off", self.cool_off),
            ("handover_timeout", self.handover_timeout),
        ];
        for (field, value) in positive {
            if value.is_zero() {
                return err(field, "must be greater than zero");
            }
        }
        let all = positive.into_iter().chain([
            ("backoff.initial", self.backoff.initial),
            ("backoff.reset_after", self.backoff.reset_after),
            ("backoff.reconnect_spread", self.backoff.reconnect_spread),
            (
                "backoff.reconnect_spread_step",
                self.backoff.reconnect_spread_step,
            ),
            ("backoff.after_loss", self.backoff.after_loss),
            ("backoff.established_after", self.backoff.established_after),
            ("retry_min", self.retry_min),
            ("retry_max", self.retry_max),
            ("retry_after_max", self.retry_after_max),
            ("max_age", self.max_age.unwrap_or_default()),
        ]);
        for (field, value) in all {
            if value >= FOREVER {
                return err(field, "must be shorter than a century");
            }
        }
        if !(self.backoff.multiplier >= 1.0 && self.backoff.multiplier <= 100.0) {
            return err("backoff.multiplier", "must be between 1 and 100");
        }
        if self.backoff.initial > self.backoff.max {
            return err("backoff.initial", "must not exceed backoff.max");
        }
        if self.backoff.after_loss > self.backoff.max {
            return err("backoff.after_loss", "must not exceed backoff.max");
        }
        if self.backoff.max > self.backoff.max_rate_limited {
            return err("backoff.max_rate_limited", "must be at least backoff.max");
        }
        if self.backoff.max > self.backoff.max_auth {
            return err("backoff.max_auth", "must be at least backoff.max");
        }
        if self.retry_min > self.retry_max {
            return err("retry_min", "must not exceed retry_max");
        }
        if !(0.0..1.0).contains(&self.max_age_jitter) {
            return err("max_age_jitter", "must be in [0, 1)");
        }
        if self.max_age.is_some_and(|age| age.is_zero()) {
            return err("max_age", "must be greater than zero (or unset)");
        }
        if self.attempt_budget == Some(0) {
            return err("attempt_budget", "must be at least 1 (or unset)");
        }
        if self.handover_window == 0 {
            return err("handover_window", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_reliability_md() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.backoff.max, Duration::from_secs(30));
        assert_eq!(c.backoff.max_rate_limited, Duration::from_secs(300));
        assert_eq!(c.backoff.max_auth, Duration::from_secs(300));
        assert_eq!(c.backoff.reset_after, Duration::from_secs(60));
        assert_eq!(c.retry_after_max, Duration::from_secs(600));
        assert_eq!(c.max_age, Some(Duration::from_secs(12 * 3600)));
    }

    #[test]
    fn nonsense_is_refused_with_the_field() {
        type Breaker = fn(&mut Config);
        let cases: [(Breaker, &str); 7] = [
            (|c| c.idle_timeout = Duration::ZERO, "idle_timeout"),
            (|c| c.backoff.multiplier = 0.5, "backoff.multiplier"),
            (|c| c.backoff.multiplier = f64::NAN, "backoff.multiplier"),
            (
                |c| c.backoff.initial = Duration::from_secs(31),
                "backoff.initial",
            ),
            (|c| c.retry_min = Duration::from_secs(61), "retry_min"),
            (|c| c.max_age_jitter = 1.0, "max_age_jitter"),
            (|c| c.cool_off = Duration::MAX, "cool_off"),
        ];
        for (break_it, field) in cases {
            let mut c = Config::default();
            break_it(&mut c);
            assert_eq!(c.validate().map_err(|e| e.field), Err(field));
        }
    }
}
