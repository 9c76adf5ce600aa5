//! The health of upstream SSE streams, as pure structures over what the shell
//! observes, with `now` passed in: no clock, no runtime, no I/O.
//!
//! - [`StreamHealth`]: per-stream sliding-window statistics (events and
//!   errors per minute, bytes per second, latency quantiles, time since the
//!   last byte and event, connection age, reconnects), a [`Verdict`] with
//!   hysteresis (healthy, degraded, unhealthy; worse only after
//!   `degrade_after`, better only after a sustained `recover_after`), every
//!   verdict with its [`Cause`]s, rotation advice ([`RotateCause`]: errors,
//!   failure ratio, eventless staleness, lasting degradation), and
//!   [`StreamHealth::poll_timeout`]: when it next needs time. (A connection's
//!   age is the state machine's to act on, and releasing an idle stream the
//!   pool's: health does neither.)
//! - [`readiness`]: pool-level readiness (not ready when too many streams
//!   have been unhealthy for too long).
//! - [`Reports`]: rolling per-minute buckets (fixed memory, 24 h) giving
//!   [`Report`]s over the last hour or day: connection statistics, errors by
//!   kind, rates and trends, and the resource figures the shell feeds in.
//! - [`metrics`]: the names, units and descriptions of the metrics health
//!   reports, and the functions that record them.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sse_health::{HealthConfig, Level, StreamHealth};
//!
//! let t0 = Instant::now();
//! let mut health = StreamHealth::new(HealthConfig::default(), t0);
//! health.on_connected(t0);
//! // A minute of one event per second, each 50 ms late.
//! for s in 1..=60 {
//!     let now = t0 + Duration::from_secs(s);
//!     health.on_bytes(now, 120);
//!     health.on_event(now, Some(Duration::from_millis(50)));
//! }
//! let now = t0 + Duration::from_secs(60);
//! assert_eq!(health.evaluate(now).level, Level::Healthy);
//! assert_eq!(health.stats(now).events_per_min, 60.0);
//! ```

mod event_time;
pub mod metrics;
mod pool;
mod stream;
mod window;

pub use event_time::{EventTime, EventTimeError, TimeUnit};
pub use pool::{Minute, Readiness, ReadinessConfig, Report, Reports, Resources, readiness};
pub use stream::{
    Cause, ErrorKind, HealthConfig, HealthConfigError, Level, RotateCause, Stats, StreamHealth,
    Verdict,
};

// The README's examples are compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
