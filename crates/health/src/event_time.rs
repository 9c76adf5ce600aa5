//! Where an event says when it happened, so that its latency (arrival
//! minus event time) can be measured.
//!
//! The health crate does not parse event data: the caller finds the
//! number the [`EventTime::pointer`] names (a JSON pointer, RFC 6901) and
//! hands it to [`EventTime::latency`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The unit of an event's timestamp: seconds, milliseconds, microseconds
/// or nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum TimeUnit {
    /// `s`.
    S,
    /// `ms`.
    Ms,
    /// `us`.
    Us,
    /// `ns`.
    Ns,
}

impl TimeUnit {
    fn per_second(self) -> f64 {
        match self {
            Self::S => 1.0,
            Self::Ms => 1e3,
            Self::Us => 1e6,
            Self::Ns => 1e9,
        }
    }
}

/// An event's own timestamp: a JSON pointer into its data (`/t`, or
/// `/meta/ts`) naming a number (or a string of one) in `unit` since the
/// Unix epoch. Written `event_time = { pointer = "/t", unit = "ms" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct EventTime {
    /// The JSON pointer: empty (the whole data is the number) or starting
    /// with `/`.
    pub pointer: String,
    /// The timestamp's unit.
    pub unit: TimeUnit,
}

/// Why an [`EventTime`] makes no sense.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTimeError(&'static str);

impl fmt::Display for EventTimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for EventTimeError {}

impl EventTimeError {
    /// Why, in words.
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl EventTime {
    /// Checks the pointer's form.
    ///
    /// # Errors
    ///
    /// A pointer that is not empty and does not start with `/`, or a `~`
    /// not followed by `0` or `1` (RFC 6901's only escapes).
    pub fn validate(&self) -> Result<(), EventTimeError> {
        if !self.pointer.is_empty() && !self.pointer.starts_with('/') {
            return Err(EventTimeError(
                "a JSON pointer is empty or starts with `/` (like \"/t\")",
            ));
        }
        let mut chars = self.pointer.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(EventTimeError("`~` in a JSON pointer must be `~0` or `~1`"));
            }
        }
        Ok(())
    }

    /// The latency of an event stamped `stamp` (in [`unit`](Self::unit))
    /// that arrived at `now`. `None` for a stamp that is not a finite
    /// positive number; zero for a stamp in the future (the clocks differ:
    /// the event is not late).
    pub fn latency(&self, stamp: f64, now: SystemTime) -> Option<Duration> {
        if !(stamp.is_finite() && stamp > 0.0) {
            return None;
        }
        let since_epoch = Duration::try_from_secs_f64(stamp / self.unit.per_second()).ok()?;
        let at = UNIX_EPOCH.checked_add(since_epoch)?;
        Some(now.duration_since(at).unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn latency_is_arrival_minus_event_time_in_its_unit() {
        let now = at_ms(1_800_000_000_500);
        let ms = EventTime {
            pointer: "/t".into(),
            unit: TimeUnit::Ms,
        };
        assert_eq!(
            ms.latency(1_800_000_000_000.0, now),
            Some(Duration::from_millis(500))
        );
        let s = EventTime {
            unit: TimeUnit::S,
            ..ms.clone()
        };
        assert_eq!(
            s.latency(1_800_000_000.0, now),
            Some(Duration::from_millis(500))
        );
        let ns = EventTime {
            unit: TimeUnit::Ns,
            ..ms.clone()
        };
        let latency = ns
            .latency(1_800_000_000_250_000_000.0, now)
            .expect("a stamp");
        assert!(latency.abs_diff(Duration::from_millis(250)) < Duration::from_millis(1));
        assert_eq!(
            ms.latency(1_800_000_001_000.0, now),
            Some(Duration::ZERO),
            "from the future"
        );
        assert_eq!(ms.latency(f64::NAN, now), None);
        assert_eq!(ms.latency(-5.0, now), None);
        assert_eq!(ms.latency(f64::MAX, now), None, "beyond what a clock holds");
    }

    #[test]
    fn pointers_are_checked() {
        let p = |pointer: &str| {
            EventTime {
                pointer: pointer.into(),
                unit: TimeUnit::Ms,
            }
            .validate()
        };
        assert!(p("/t").is_ok() && p("").is_ok() && p("/meta/t~1s").is_ok());
        assert!(p("t").is_err());
        assert!(p("/a~2").is_err());
    }
}
