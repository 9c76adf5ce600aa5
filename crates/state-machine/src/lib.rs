//! The lifecycle of one upstream SSE stream as a sans-IO state machine: when
//! to connect, how long to wait, when a stream is stale, when to rotate it,
//! when to give up. No tokio, no sockets, no clock: every input carries `now`,
//! and jitter comes from a generator seeded at construction. The same inputs
//! always give the same outputs, so 72 hours of reconnects are tested in
//! milliseconds.
//!
//! # States
//!
//! ```text
//!            Start           200 + text/event-stream
//!   Idle ──────────► Connecting ─────────────────────────► Open ◄───────┐
//!                     ▲   │                                  │  │        │ rotation: the new
//!                     │   │ refused, timeout, 5xx, 408,      │  └────────┘ connection takes over
//!     backoff elapsed │   │ 429, 401, 403, wrong type        │   (make-before-break)
//!                     │   ▼                                  │
//!                    BackingOff ◄────────────────────────────┘ failure, timeout, end of body
//!                     ▲   │ attempt budget spent
//!     cool-off elapsed│   ▼
//!     (to Connecting) CoolingOff
//!
//!   any phase ── Stop, 204, other 4xx ──► Stopped   (final: later inputs are absorbed)
//! ```
//!
//! Transitions are named by [`Reason`]; each is reported as
//! [`Output::StateChanged`]. An input that cannot happen in a phase (data
//! before the headers, a second `Start`) is an [`Error`], never a panic, and
//! leaves the machine unchanged. News about a connection the machine already
//! closed is ignored: such races are normal.
//!
//! # The run loop
//!
//! After every input (or timeout), drain [`Machine::poll_output`] until it
//! returns `None`, then wait until [`Machine::poll_timeout`] or the next input,
//! whichever comes first:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sse_state_machine::{Config, Input, Machine, Output};
//!
//! let mut machine = Machine::new(Config::default(), 42)?;
//! let start = Instant::now(); // the shell's clock; tests pass virtual time
//! machine.handle_input(start, Input::Start)?;
//! let mut conn = None;
//! while let Some(output) = machine.poll_output() {
//!     match output {
//!         Output::Connect { conn: c, last_event_id } => conn = Some(c), // open it
//!         Output::Close { conn, reason } => {}                          // drop it
//!         Output::StateChanged { from, to, reason } => {}               // log, count
//!         Output::Retrying { attempt, at } => {}                        // log
//!     }
//! }
//! // Sleep until the deadline (a single runtime timer), unless input comes first.
//! let deadline = machine.poll_timeout().expect("a connect deadline");
//! assert_eq!(deadline, start + Duration::from_secs(5));
//! machine.handle_timeout(deadline);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Events are not inputs but questions: for each event the parser yields, the
//! shell asks [`Machine::on_event`] whether to deliver it, which also records
//! its id as the last event ID for the next connection.
//!
//! # Decisions
//!
//! - **Backoff**: exponential (`initial`, `multiplier`, cap `max`, or
//!   `max_rate_limited` after 429, `max_auth` after 401 and 403), jittered, reset only after a
//!   connection stayed healthy for `reset_after`, so a flapping upstream keeps
//!   backing off. A server's `retry:` replaces `initial` (clamped);
//!   `Retry-After` sets a floor (clamped). An established connection (it
//!   delivered data for at least `established_after`, 1 s) that is lost
//!   reconnects at once, after only a spread that grows with the
//!   streams of its origin lost together ([`Machine::set_lost_together`]):
//!   one lost stream is back within 100 ms, the streams of a restarted
//!   upstream return over up to 3 s. Should that reconnect fail, the
//!   backoff starts short (`after_loss`, 100 ms). An optional attempt budget
//!   leads to a cool-off, not to giving up.
//! - **Queued attempts**: a shell that holds attempts for a limiter's permit
//!   says so ([`Input::Queued`], [`Input::Dialing`]): the connect deadline
//!   runs from the permit, so waiting in line is never a timeout.
//! - **Statuses**: 200 with `text/event-stream` opens; 204 stops for good; 5xx,
//!   408, 429, 401 and 403 retry; other 4xx stop and say why; a wrong content
//!   type retries.
//! - **Deadlines**: connect, first byte, idle (any byte resets it), event
//!   assembly (a stream dripping a byte a second cannot stay alive), and the
//!   maximum age, jittered, which starts a rotation.
//! - **Rotation** is make-before-break: a second connection opens with the
//!   last delivered id; the old one keeps delivering until the new one
//!   delivers an event that was not delivered yet, or repeats the last one
//!   (see [`Machine::on_event`]). At most one connection delivers at any time.
//! - **Last event ID**: carried across connections; only complete events
//!   (and committed ids) set it, so a partial event's id never leaks.

mod config;
#[cfg(feature = "serde")]
mod keys;
mod machine;
mod rng;

pub use config::{Backoff, Config, ConfigError, Jitter};
pub use machine::{
    CloseReason, ConnId, Delivery, Error, FailureKind, Input, Machine, Output, Phase, Reason,
    RotateReason, StopReason, TimeoutKind,
};

// The README's examples are compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
