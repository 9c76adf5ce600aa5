//! The machine: the lifecycle of one upstream stream, as a pure function of
//! inputs and `now`.
//!
//! This file is long because the private `State` enum, whose variants own
//! their data, and every transition between them belong in one place (as in
//! h2's `proto/streams/state.rs`): the invariants (at most one delivering
//! connection, every connection opened is closed exactly once, no attempt
//! before its backoff floor) are checked by reading the transitions
//! together.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use sse_parser::Utf8Bytes;

use crate::config::{Config, ConfigError, Jitter};
use crate::rng::Rng;

/// Names one connection attempt. The machine assigns it in
/// [`Output::Connect`]; every input about that connection carries it, so that
/// news about a connection the machine has already given up on is recognised
/// and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

impl ConnId {
    /// The number, for logs and metrics labels of a single stream.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// What happened, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Begin: connect.
    Start,
    /// The response headers of `conn` arrived (redirects already followed).
    Connected {
        /// The connection.
        conn: ConnId,
        /// The HTTP status.
        status: u16,
        /// Whether the content type is `text/event-stream`.
        event_stream: bool,
        /// `Retry-After`, resolved by the shell to a delay (a date minus the
        /// wall clock); `None` when absent or unparsable.
        retry_after: Option<Duration>,
    },
    /// Body bytes arrived on `conn` (comments count: any byte proves life).
    Data {
        /// The connection.
        conn: ConnId,
        /// Whether, after these bytes, an event block is partly received (the
        /// parser's `has_partial`): this starts the event assembly deadline.
        mid_event: bool,
    },
    /// The stream sent a valid `retry:` field.
    Retry {
        /// The connection.
        conn: ConnId,
        /// The reconnection time it asks for (clamped by the machine).
        delay: Duration,
    },
    /// The parser committed a new last event ID without an event (an `id`
    /// in a block without data). Events report their id through
    /// [`Machine::on_event`].
    LastEventId {
        /// The connection.
        conn: ConnId,
        /// The new last event ID.
        id: Utf8Bytes,
    },
    /// The response body of `conn` ended normally.
    EndOfBody {
        /// The connection.
        conn: ConnId,
    },
    /// Connecting or reading `conn` failed.
    Failed {
        /// The connection.
        conn: ConnId,
        /// What failed.
        kind: FailureKind,
    },
    /// The shell holds `conn`'s attempt back before it starts (its limiter's
    /// turn): the connect deadline is lifted until [`Input::Dialing`]. A
    /// shell whose limiter is bounded sends it, so that time spent waiting
    /// for a permit is never counted as a connect timeout.
    Queued {
        /// The connection.
        conn: ConnId,
    },
    /// `conn`'s attempt starts now (its permit came): the connect deadline
    /// runs from now. Without [`Input::Queued`] it runs from the
    /// [`Output::Connect`], and this input restarts it.
    Dialing {
        /// The connection.
        conn: ConnId,
    },
    /// Replace the open connection with a new one, make-before-break.
    Rotate(RotateReason),
    /// Drop the connection and connect again at once, without backoff (the
    /// conformance service's `restart`).
    Reconnect,
    /// Close everything, for good.
    Stop,
}

impl Input {
    /// The input's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start => "Start",
            Self::Connected { .. } => "Connected",
            Self::Data { .. } => "Data",
            Self::Retry { .. } => "Retry",
            Self::LastEventId { .. } => "LastEventId",
            Self::EndOfBody { .. } => "EndOfBody",
            Self::Failed { .. } => "Failed",
            Self::Queued { .. } => "Queued",
            Self::Dialing { .. } => "Dialing",
            Self::Rotate(_) => "Rotate",
            Self::Reconnect => "Reconnect",
            Self::Stop => "Stop",
        }
    }
}

/// What the machine asks the shell to do, or tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a new connection named `conn`, sending `Last-Event-ID` if given.
    Connect {
        /// The name of the new connection.
        conn: ConnId,
        /// The `Last-Event-ID` header to send (never empty).
        last_event_id: Option<Utf8Bytes>,
    },
    /// Close `conn` and release everything it holds. Every connection the
    /// machine opens is closed exactly once, whatever ends it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// The next attempt is scheduled (on entering `BackingOff` or
    /// `CoolingOff`): no connection is opened before `at`.
    Retrying {
        /// Consecutive failed attempts so far.
        attempt: u32,
        /// When the next attempt starts.
        at: Instant,
    },
    /// The stream changed phase (or, from `Open` to `Open`, a rotation handed
    /// over to a new connection).
    StateChanged {
        /// The phase before.
        from: Phase,
        /// The phase after.
        to: Phase,
        /// Why.
        reason: Reason,
    },
}

/// What to do with an event the shell parsed, from [`Machine::on_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Deliver it to subscribers.
    Deliver,
    /// Drop it: a rotation's new connection repeats an event the old one
    /// already delivered.
    Duplicate,
    /// Drop it: it came from a connection that is not (or no longer) the
    /// delivering one.
    Stale,
}

/// The phase of a stream, without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not started.
    Idle,
    /// Waiting for the response headers.
    Connecting,
    /// Receiving the stream.
    Open,
    /// Waiting before the next attempt.
    BackingOff,
    /// The attempt budget is spent; waiting out the cool-off.
    CoolingOff,
    /// Stopped for good.
    Stopped,
}

/// Why the phase changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// [`Input::Start`].
    Start,
    /// A 200 response with `text/event-stream`.
    Opened,
    /// The backoff delay passed.
    BackoffElapsed,
    /// The cool-off passed.
    CoolOffElapsed,
    /// Connecting or reading failed.
    Failed(FailureKind),
    /// A status that asks to retry (5xx, 408, 429, 401, 403, or an unexpected one).
    Status(u16),
    /// A 200 response that is not `text/event-stream`.
    NotEventStream,
    /// The body ended.
    EndOfBody,
    /// A deadline passed.
    Timeout(TimeoutKind),
    /// `attempt_budget` consecutive attempts failed.
    AttemptBudget,
    /// A rotation handed over to a new connection.
    Rotated(RotateReason),
    /// [`Input::Reconnect`].
    Reconnect,
    /// The stream stopped.
    Stop(StopReason),
}

/// Why a stream stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// [`Input::Stop`].
    Requested,
    /// The server answered 204: it has nothing for us.
    NoContent,
    /// The server answered a 4xx other than 401, 403, 408 and 429: retrying
    /// the same request cannot help. Alert on it.
    ClientError(u16),
    /// A redirect led where the client may not go (another origin not
    /// allowed, the gateway itself, a metadata or loopback address): the
    /// same request would lead there again ([`FailureKind::RedirectRefused`]).
    RedirectRefused,
}

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// No response headers within `connect_timeout`.
    Connect,
    /// No body byte within `first_byte_timeout` of the headers.
    FirstByte,
    /// No byte within `idle_timeout`.
    Idle,
    /// An event not completed within `event_assembly_timeout` of its start.
    EventAssembly,
}

/// What failed, as the shell classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// Name resolution.
    Dns,
    /// The connection was refused or reset before the response.
    Refused,
    /// The TLS handshake or certificate check.
    Tls,
    /// Reading or writing the connection.
    Io,
    /// The shell's own deadline (for example around DNS).
    Timeout,
    /// The peer broke HTTP, or a redirect could not be followed.
    Protocol,
    /// The stream broke a parser limit (line or event too large).
    Limit,
    /// A redirect the shell refused to follow (its policy): the stream
    /// stops for good ([`StopReason::RedirectRefused`]).
    RedirectRefused,
    /// Anything else.
    Other,
}

/// Why a rotation was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RotateReason {
    /// The connection reached its maximum age.
    Age,
    /// Too many errors on it.
    Errors,
    /// It has gone stale.
    Stale,
    /// Its health degraded for too long.
    Degraded,
    /// An operator asked.
    Manual,
}

/// Why the machine closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The stream stopped.
    Stop,
    /// It failed.
    Failed(FailureKind),
    /// Its body ended.
    EndOfBody,
    /// Its response had this status.
    Status(u16),
    /// Its response was not `text/event-stream`.
    NotEventStream,
    /// A deadline passed.
    Timeout(TimeoutKind),
    /// A rotation's new connection took over from it.
    Replaced,
    /// It was a rotation's new connection and did not take over in time (or
    /// the old connection delivered more than the hand-over window).
    HandoverAbandoned,
    /// [`Input::Reconnect`].
    Reconnect,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dns => "name resolution failed",
            Self::Refused => "connection refused or reset",
            Self::Tls => "TLS handshake or certificate check failed",
            Self::Io => "connection broken",
            Self::Timeout => "connect deadline passed",
            Self::Protocol => "HTTP protocol error or unusable redirect",
            Self::Limit => "line or event over the size limit",
            Self::RedirectRefused => "a redirect the gateway may not follow",
            Self::Other => "connection failed",
        })
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "no response headers within the connect timeout",
            Self::FirstByte => "no body byte within the first-byte timeout",
            Self::Idle => "no byte within the idle (read) timeout",
            Self::EventAssembly => "event not completed within the event assembly timeout",
        })
    }
}

impl fmt::Display for RotateReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Age => "age",
            Self::Errors => "errors",
            Self::Stale => "stale",
            Self::Degraded => "degraded",
            Self::Manual => "manual",
        })
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Idle => "idle",
            Self::Connecting => "connecting",
            Self::Open => "open",
            Self::BackingOff => "backing off",
            Self::CoolingOff => "cooling off",
            Self::Stopped => "stopped",
        })
    }
}

/// Operator-readable: these words reach logs, admin views and subscribers.
impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start => f.write_str("started"),
            Self::Opened => f.write_str("connected"),
            Self::BackoffElapsed => f.write_str("backoff elapsed"),
            Self::CoolOffElapsed => f.write_str("cool-off elapsed"),
            Self::Failed(kind) => kind.fmt(f),
            Self::Status(code) => write!(f, "upstream answered HTTP {code}"),
            Self::NotEventStream => f.write_str("upstream answered without text/event-stream"),
            Self::EndOfBody => f.write_str("upstream ended the stream"),
            Self::Timeout(kind) => kind.fmt(f),
            Self::AttemptBudget => f.write_str("attempt budget spent"),
            Self::Rotated(reason) => write!(f, "rotated ({reason})"),
            Self::Reconnect => f.write_str("reconnect requested"),
            Self::Stop(StopReason::Requested) => f.write_str("stopped on request"),
            Self::Stop(reason) => write!(f, "{reason}: not reconnecting"),
        }
    }
}

/// Operator-readable, as `Reason`'s.
impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Requested => f.write_str("stopped on request"),
            Self::NoContent => f.write_str("upstream answered 204 No Content"),
            Self::ClientError(code) => write!(f, "upstream answered HTTP {code}"),
            Self::RedirectRefused => {
                f.write_str("upstream redirected somewhere the gateway may not go")
            }
        }
    }
}

/// An input that makes no sense in the machine's state. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input names a connection this machine never opened.
    UnknownConnection(ConnId),
    /// The input cannot happen in this phase: a second `Start`, `Reconnect`
    /// before `Start`, body data or an end of body before the headers.
    Unexpected {
        /// The input's name.
        input: &'static str,
        /// The phase it arrived in.
        phase: Phase,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownConnection(conn) => {
                write!(f, "input about {conn}, which this stream never opened")
            }
            Self::Unexpected { input, phase } => {
                write!(f, "unexpected input {input} while {phase:?}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// How a failure counts for the backoff cap.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Normal,
    /// 429: the rate-limit cap.
    RateLimited,
    /// 401, 403: the auth cap.
    Auth,
}

/// One connection the machine holds.
#[derive(Debug, Clone)]
struct Conn {
    id: ConnId,
    /// No headers by then: connect timeout.
    connect_deadline: Option<Instant>,
    /// When the headers arrived.
    opened_at: Option<Instant>,
    first_byte_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
    assembly_deadline: Option<Instant>,
    got_data: bool,
}

impl Conn {
    fn connecting(id: ConnId, deadline: Instant) -> Self {
        Self {
            id,
            connect_deadline: Some(deadline),
            opened_at: None,
            first_byte_deadline: None,
            idle_deadline: None,
            assembly_deadline: None,
            got_data: false,
        }
    }

    fn is_open(&self) -> bool {
        self.opened_at.is_some()
    }

    fn open(&mut self, now: Instant, config: &Config) {
        self.connect_deadline = None;
        self.opened_at = Some(now);
        self.first_byte_deadline = Some(now + config.first_byte_timeout);
    }

    fn data(&mut self, now: Instant, mid_event: bool, config: &Config) {
        self.got_data = true;
        self.first_byte_deadline = None;
        self.idle_deadline = Some(now + config.idle_timeout);
        self.assembly_deadline = match (mid_event, self.assembly_deadline) {
            (false, _) => None,
            (true, Some(started)) => Some(started),
            (true, None) => Some(now + config.event_assembly_timeout),
        };
    }

    /// The earliest of this connection's deadlines.
    fn deadline(&self) -> Option<(Instant, TimeoutKind)> {
        [
            self.connect_deadline.map(|t| (t, TimeoutKind::Connect)),
            self.first_byte_deadline
                .map(|t| (t, TimeoutKind::FirstByte)),
            self.idle_deadline.map(|t| (t, TimeoutKind::Idle)),
            self.assembly_deadline
                .map(|t| (t, TimeoutKind::EventAssembly)),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|(t, _)| *t)
    }
}

/// A make-before-break rotation.
#[derive(Debug)]
enum Rotation {
    None,
    /// An abandoned rotation is tried again at `at`.
    Retry {
        at: Instant,
        reason: RotateReason,
    },
    InProgress {
        successor: Conn,
        reason: RotateReason,
        /// The successor must have taken over by then.
        deadline: Instant,
        /// Ids the old connection delivered since the rotation began.
        delivered: VecDeque<Utf8Bytes>,
    },
}

#[derive(Debug)]
enum State {
    Idle,
    Connecting(Conn),
    Open {
        conn: Conn,
        /// Rotate by age then.
        age_deadline: Option<Instant>,
        rotation: Rotation,
    },
    BackingOff {
        until: Instant,
    },
    CoolingOff {
        until: Instant,
    },
    Stopped,
}

impl State {
    fn phase(&self) -> Phase {
        match self {
            Self::Idle => Phase::Idle,
            Self::Connecting(_) => Phase::Connecting,
            Self::Open { .. } => Phase::Open,
            Self::BackingOff { .. } => Phase::BackingOff,
            Self::CoolingOff { .. } => Phase::CoolingOff,
            Self::Stopped => Phase::Stopped,
        }
    }
}

/// What a timer, when it fires, is about.
#[derive(Debug, Clone, Copy)]
enum Timer {
    Primary(TimeoutKind),
    Age,
    Successor(TimeoutKind),
    Handover,
    RotationRetry,
    Backoff,
    CoolOff,
}

/// The lifecycle of one upstream stream. See the crate docs for the diagram
/// and the run loop.
#[derive(Debug)]
pub struct Machine {
    config: Config,
    state: State,
    rng: Rng,
    next_conn: u64,
    /// Consecutive failed attempts.
    attempts: u32,
    /// The server's `retry:`, clamped.
    server_retry: Option<Duration>,
    /// The last event ID delivered (or committed) on the delivering connection.
    last_event_id: Utf8Bytes,
    /// Streams of this origin lost within the last second, as the shell
    /// counted them for the next loss (taken by it).
    lost_together: Option<u32>,
    /// The failures since the last healthy connection began with the loss of
    /// an established one: the backoff starts from `backoff.after_loss`.
    after_loss: bool,
    /// `attempts` when the last established connection was lost: the
    /// backoff after it counts from there.
    loss_base: u32,
    outputs: VecDeque<Output>,
}

impl Machine {
    /// A machine in [`Phase::Idle`]. `seed` drives its jitter: give every
    /// stream a different one.
    ///
    /// # Errors
    ///
    /// The configuration does not [validate](Config::validate).
    pub fn new(config: Config, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            state: State::Idle,
            rng: Rng::new(seed),
            next_conn: 0,
            attempts: 0,
            server_retry: None,
            last_event_id: Utf8Bytes::new(),
            lost_together: None,
            after_loss: false,
            loss_base: 0,
            outputs: VecDeque::new(),
        })
    }

    /// How many streams of this stream's origin were lost within the last
    /// second, this one included, should its established connection be lost
    /// now: the reconnect spreads over `min(reconnect_spread, k x
    /// reconnect_spread_step)` (see [`Backoff::reconnect_spread`]). A shell
    /// that runs many streams counts their losses per origin and sets this
    /// before each input or timeout that may end a connection; it applies to
    /// the next loss only. Unset, the whole `reconnect_spread` is used.
    ///
    /// [`Backoff::reconnect_spread`]: crate::Backoff::reconnect_spread
    pub fn set_lost_together(&mut self, k: u32) {
        self.lost_together = Some(k.max(1));
    }

    /// Sets the last event ID to send on the next connection (for example one
    /// a client asked to resume from).
    pub fn set_last_event_id(&mut self, id: Utf8Bytes) {
        self.last_event_id = id;
    }

    /// The last event ID delivered.
    pub fn last_event_id(&self) -> &Utf8Bytes {
        &self.last_event_id
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    /// Consecutive failed attempts so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The connection that delivers events, if one is open.
    pub fn delivering(&self) -> Option<ConnId> {
        match &self.state {
            State::Open { conn, .. } => Some(conn.id),
            _ => None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The next output, until `None`.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if
    /// ever. Never earlier than the `now` of the last input.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// Processes an input at `now`.
    ///
    /// After a stop every input is absorbed. News about a connection the
    /// machine already closed is ignored: such races are normal.
    ///
    /// # Errors
    ///
    /// The input names a connection this machine never opened, or cannot
    /// happen in this phase. The machine is unchanged.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), Error> {
        if matches!(self.state, State::Stopped) {
            return Ok(());
        }
        match input {
            Input::Start => match self.state {
                State::Idle => {
                    self.connect(now, Reason::Start);
                    Ok(())
                }
                _ => Err(self.unexpected("Start")),
            },
            Input::Connected {
                conn,
                status,
                event_stream,
                retry_after,
            } => self.connected(now, conn, status, event_stream, retry_after),
            Input::Data { conn, mid_event } => self.data(now, conn, mid_event),
            Input::Retry { conn, delay } => {
                if self.is_current(conn)? {
                    self.server_retry =
                        Some(delay.clamp(self.config.retry_min, self.config.retry_max));
                }
                Ok(())
            }
            Input::LastEventId { conn, id } => {
                if self.delivering() == Some(conn) {
                    self.last_event_id = id;
                }
                self.check_known(conn)
            }
            Input::EndOfBody { conn } => {
                self.ended(now, conn, Reason::EndOfBody, CloseReason::EndOfBody)
            }
            Input::Failed {
                conn,
                kind: FailureKind::RedirectRefused,
            } if self.is_current(conn)? => {
                self.stop(
                    now,
                    StopReason::RedirectRefused,
                    CloseReason::Failed(FailureKind::RedirectRefused),
                );
                Ok(())
            }
            Input::Failed { conn, kind } => {
                self.ended(now, conn, Reason::Failed(kind), CloseReason::Failed(kind))
            }
            Input::Queued { conn } => self.set_connect_deadline(conn, None, "Queued"),
            Input::Dialing { conn } => {
                let deadline = now + self.config.connect_timeout;
                self.set_connect_deadline(conn, Some(deadline), "Dialing")
            }
            Input::Rotate(reason) => {
                self.start_rotation(now, reason);
                Ok(())
            }
            Input::Reconnect => match self.state {
                State::Idle => Err(self.unexpected("Reconnect")),
                _ => {
                    self.close_all(CloseReason::Reconnect);
                    self.connect(now, Reason::Reconnect);
                    Ok(())
                }
            },
            Input::Stop => {
                self.stop(now, StopReason::Requested, CloseReason::Stop);
                Ok(())
            }
        }
    }

    /// Decides what to do with an event parsed from `conn` whose effective
    /// last event ID is `id`, and records the id when it is delivered.
    ///
    /// During a rotation the old connection keeps delivering; the new one's
    /// events are dropped while their ids were already delivered. The first
    /// event of the new connection that repeats the last delivered id, or that
    /// was not delivered yet, hands over: the old connection is closed and only
    /// the new one delivers from then on. So a rotation shows subscribers no
    /// gap and no duplicate, provided the upstream sends ids and honours
    /// `Last-Event-ID`. (Without ids the first new event hands over.)
    pub fn on_event(&mut self, now: Instant, conn: ConnId, id: &Utf8Bytes) -> Delivery {
        let window = self.config.handover_window;
        let State::Open {
            conn: primary,
            rotation,
            ..
        } = &mut self.state
        else {
            return Delivery::Stale;
        };
        if primary.id == conn {
            let mut overflow = false;
            if let Rotation::InProgress { delivered, .. } = rotation {
                overflow = delivered.len() == window;
                delivered.push_back(id.clone());
            }
            if overflow {
                // The new connection cannot catch up: give up on it.
                self.abandon_rotation(now, CloseReason::HandoverAbandoned);
            }
            self.last_event_id.clone_from(id);
            return Delivery::Deliver;
        }
        let Rotation::InProgress {
            successor,
            delivered,
            ..
        } = rotation
        else {
            return Delivery::Stale;
        };
        if successor.id != conn {
            return Delivery::Stale;
        }
        if !id.is_empty() && *id == self.last_event_id {
            // Caught up exactly: hand over; this event was delivered already.
            self.promote(now);
            return Delivery::Duplicate;
        }
        if !id.is_empty() && delivered.contains(id) {
            return Delivery::Duplicate;
        }
        self.promote(now);
        self.last_event_id.clone_from(id);
        Delivery::Deliver
    }

    /// Processes every deadline that has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, timer)) = self.next_timer() {
            if at > now {
                break;
            }
            self.fire(now, timer);
        }
    }

    // ------------------------------------------------------------ inputs

    fn connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        status: u16,
        event_stream: bool,
        retry_after: Option<Duration>,
    ) -> Result<(), Error> {
        let ok = status == 200 && event_stream;
        match &mut self.state {
            State::Connecting(c) if c.id == conn => {
                if ok {
                    let mut c = c.clone();
                    c.open(now, &self.config);
                    let age_deadline = self.age_deadline(now);
                    self.set_state(
                        State::Open {
                            conn: c,
                            age_deadline,
                            rotation: Rotation::None,
                        },
                        Reason::Opened,
                    );
                    return Ok(());
                }
                match classify(status) {
                    Verdict::Stop(reason) => self.stop(now, reason, CloseReason::Status(status)),
                    Verdict::Retry(class) => {
                        let (reason, close) = if status == 200 {
                            (Reason::NotEventStream, CloseReason::NotEventStream)
                        } else {
                            (Reason::Status(status), CloseReason::Status(status))
                        };
                        self.fail(now, close, reason, class, retry_after);
                    }
                }
                Ok(())
            }
            State::Open {
                rotation: Rotation::InProgress { successor, .. },
                ..
            } if successor.id == conn => {
                if ok {
                    successor.open(now, &self.config);
                } else {
                    self.abandon_rotation(now, CloseReason::Status(status));
                }
                Ok(())
            }
            _ => self.stale_or(conn, "Connected"),
        }
    }

    /// Sets the connect deadline of `conn` while it has no response yet.
    fn set_connect_deadline(
        &mut self,
        conn: ConnId,
        deadline: Option<Instant>,
        input: &'static str,
    ) -> Result<(), Error> {
        let connecting = match &mut self.state {
            State::Connecting(c) if c.id == conn => Some(c),
            State::Open {
                rotation: Rotation::InProgress { successor, .. },
                ..
            } if successor.id == conn => Some(successor),
            _ => None,
        };
        match connecting {
            Some(c) if !c.is_open() => {
                c.connect_deadline = deadline;
                Ok(())
            }
            // Answered already: the news came late.
            Some(_) => Ok(()),
            None => self.stale_or(conn, input),
        }
    }

    fn data(&mut self, now: Instant, conn: ConnId, mid_event: bool) -> Result<(), Error> {
        let config = &self.config;
        match &mut self.state {
            State::Open { conn: c, .. } if c.id == conn => {
                c.data(now, mid_event, config);
                Ok(())
            }
            State::Open {
                rotation: Rotation::InProgress { successor, .. },
                ..
            } if successor.id == conn && successor.is_open() => {
                successor.data(now, mid_event, config);
                Ok(())
            }
            _ => self.stale_or(conn, "Data"),
        }
    }

    /// The body of `conn` ended, or reading or connecting it failed.
    fn ended(
        &mut self,
        now: Instant,
        conn: ConnId,
        reason: Reason,
        close: CloseReason,
    ) -> Result<(), Error> {
        match &self.state {
            State::Connecting(c) if c.id == conn => {
                if reason == Reason::EndOfBody {
                    return Err(self.unexpected("EndOfBody"));
                }
                self.fail(now, close, reason, Class::Normal, None);
                Ok(())
            }
            State::Open { conn: c, .. } if c.id == conn => {
                self.fail(now, close, reason, Class::Normal, None);
                Ok(())
            }
            State::Open {
                rotation: Rotation::InProgress { successor, .. },
                ..
            } if successor.id == conn => {
                self.abandon_rotation(now, close);
                Ok(())
            }
            _ => self.stale_or(conn, "EndOfBody or Failed"),
        }
    }

    // ------------------------------------------------------------ timers

    fn next_timer(&self) -> Option<(Instant, Timer)> {
        match &self.state {
            State::Idle | State::Stopped => None,
            State::Connecting(c) => c.deadline().map(|(t, k)| (t, Timer::Primary(k))),
            State::Open {
                conn,
                age_deadline,
                rotation,
            } => {
                let rotation_timers = match rotation {
                    Rotation::None => [None, None],
                    Rotation::Retry { at, .. } => [Some((*at, Timer::RotationRetry)), None],
                    Rotation::InProgress {
                        successor,
                        deadline,
                        ..
                    } => [
                        successor.deadline().map(|(t, k)| (t, Timer::Successor(k))),
                        Some((*deadline, Timer::Handover)),
                    ],
                };
                [
                    conn.deadline().map(|(t, k)| (t, Timer::Primary(k))),
                    age_deadline.map(|t| (t, Timer::Age)),
                ]
                .into_iter()
                .chain(rotation_timers)
                .flatten()
                .min_by_key(|(t, _)| *t)
            }
            State::BackingOff { until } => Some((*until, Timer::Backoff)),
            State::CoolingOff { until } => Some((*until, Timer::CoolOff)),
        }
    }

    fn fire(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Primary(kind) => {
                self.fail(
                    now,
                    CloseReason::Timeout(kind),
                    Reason::Timeout(kind),
                    Class::Normal,
                    None,
                );
            }
            Timer::Age => {
                if let State::Open { age_deadline, .. } = &mut self.state {
                    *age_deadline = None;
                }
                self.start_rotation(now, RotateReason::Age);
            }
            Timer::Successor(kind) => self.abandon_rotation(now, CloseReason::Timeout(kind)),
            Timer::Handover => self.abandon_rotation(now, CloseReason::HandoverAbandoned),
            Timer::RotationRetry => {
                if let State::Open { rotation, .. } = &mut self.state
                    && let Rotation::Retry { reason, .. } = *rotation
                {
                    *rotation = Rotation::None;
                    self.start_rotation(now, reason);
                }
            }
            Timer::Backoff => self.connect(now, Reason::BackoffElapsed),
            Timer::CoolOff => {
                // A fresh budget: the failures are counted from zero, and
                // so is the base the budget counts them from (left where
                // it was, it could exceed the new count).
                self.attempts = 0;
                self.loss_base = 0;
                self.connect(now, Reason::CoolOffElapsed);
            }
        }
    }

    // ------------------------------------------------------------ transitions

    fn connect(&mut self, now: Instant, reason: Reason) {
        let conn = self.new_conn();
        self.set_state(
            State::Connecting(Conn::connecting(conn, now + self.config.connect_timeout)),
            reason,
        );
        self.outputs.push_back(Output::Connect {
            conn,
            last_event_id: self.resume_id(),
        });
    }

    /// The delivering (or connecting) connection is lost: hand over to a
    /// rotation's new connection if there is one, else back off.
    fn fail(
        &mut self,
        now: Instant,
        close: CloseReason,
        reason: Reason,
        class: Class,
        retry_after: Option<Duration>,
    ) {
        let from = self.state.phase();
        let primary = match std::mem::replace(&mut self.state, State::Idle) {
            State::Connecting(c) => c,
            State::Open {
                conn,
                rotation: Rotation::InProgress { successor, .. },
                ..
            } => {
                // Make-before-break pays off: the new connection takes over now.
                self.outputs.push_back(Output::Close {
                    conn: conn.id,
                    reason: close,
                });
                let next = if successor.is_open() {
                    State::Open {
                        conn: successor,
                        age_deadline: self.age_deadline(now),
                        rotation: Rotation::None,
                    }
                } else {
                    State::Connecting(successor)
                };
                self.enter(from, next, reason);
                return;
            }
            State::Open { conn, .. } => conn,
            other => {
                self.state = other;
                return;
            }
        };
        self.outputs.push_back(Output::Close {
            conn: primary.id,
            reason: close,
        });
        let healthy = primary.got_data
            && primary.opened_at.is_some_and(|t| {
                now.saturating_duration_since(t) >= self.config.backoff.reset_after
            });
        if healthy {
            self.attempts = 0;
            self.loss_base = 0;
            self.after_loss = false;
        }
        // An established connection lost (it delivered data and outlived a
        // flap): reconnect at once, after only the spread (gRPC reconnects a
        // lost READY connection without backoff); should that fail, the
        // backoff starts short (`after_loss`), counted from this loss. One
        // that dies sooner is a flapping upstream: the backoff grows (F19).
        let established = primary.got_data
            && primary.opened_at.is_some_and(|t| {
                now.saturating_duration_since(t) >= self.config.backoff.established_after
            });
        let lost_together = self.lost_together.take();
        if established {
            self.after_loss = true;
            self.loss_base = self.attempts;
        }
        self.attempts = self.attempts.saturating_add(1);
        // Consecutive failures since the stream last delivered for a while.
        let attempt = self.attempts.saturating_sub(self.loss_base);
        if self
            .config
            .attempt_budget
            .is_some_and(|budget| attempt >= budget)
        {
            let until = now + self.config.cool_off;
            self.enter(from, State::CoolingOff { until }, Reason::AttemptBudget);
            self.outputs
                .push_back(Output::Retrying { attempt, at: until });
            return;
        }
        let delay = if established {
            // A server that set its reconnection time (`retry:`) gets it.
            let asked = self.server_retry.unwrap_or(Duration::ZERO);
            self.spread(lost_together).max(asked)
        } else {
            self.backoff_delay(class, retry_after)
        };
        let until = now + delay;
        self.enter(from, State::BackingOff { until }, reason);
        self.outputs
            .push_back(Output::Retrying { attempt, at: until });
    }

    fn stop(&mut self, _now: Instant, reason: StopReason, close: CloseReason) {
        self.close_all(close);
        self.set_state(State::Stopped, Reason::Stop(reason));
    }

    fn start_rotation(&mut self, now: Instant, reason: RotateReason) {
        let deadline = now + self.config.handover_timeout;
        let connect_deadline = now + self.config.connect_timeout;
        let id = ConnId(self.next_conn);
        let State::Open { rotation, .. } = &mut self.state else {
            return;
        };
        if matches!(rotation, Rotation::InProgress { .. }) {
            return;
        }
        self.next_conn += 1;
        *rotation = Rotation::InProgress {
            successor: Conn::connecting(id, connect_deadline),
            reason,
            deadline,
            delivered: VecDeque::new(),
        };
        self.outputs.push_back(Output::Connect {
            conn: id,
            last_event_id: self.resume_id(),
        });
    }

    /// The rotation's new connection goes; the old one stays, and the rotation
    /// is tried again after `handover_timeout`.
    fn abandon_rotation(&mut self, now: Instant, close: CloseReason) {
        let retry_at = now + self.config.handover_timeout;
        if let State::Open { rotation, .. } = &mut self.state
            && let Rotation::InProgress {
                successor, reason, ..
            } = rotation
        {
            self.outputs.push_back(Output::Close {
                conn: successor.id,
                reason: close,
            });
            *rotation = Rotation::Retry {
                at: retry_at,
                reason: *reason,
            };
        }
    }

    /// The rotation's new connection takes over.
    fn promote(&mut self, now: Instant) {
        let age_deadline = self.age_deadline(now);
        let State::Open { conn, rotation, .. } = &mut self.state else {
            return;
        };
        let Rotation::InProgress {
            successor, reason, ..
        } = std::mem::replace(rotation, Rotation::None)
        else {
            return;
        };
        let old = std::mem::replace(conn, successor);
        self.outputs.push_back(Output::Close {
            conn: old.id,
            reason: CloseReason::Replaced,
        });
        if let State::Open {
            age_deadline: age, ..
        } = &mut self.state
        {
            *age = age_deadline;
        }
        self.outputs.push_back(Output::StateChanged {
            from: Phase::Open,
            to: Phase::Open,
            reason: Reason::Rotated(reason),
        });
    }

    fn close_all(&mut self, reason: CloseReason) {
        let mut close = |conn: &Conn| {
            self.outputs.push_back(Output::Close {
                conn: conn.id,
                reason,
            });
        };
        match &self.state {
            State::Connecting(c) => close(c),
            State::Open { conn, rotation, .. } => {
                close(conn);
                if let Rotation::InProgress { successor, .. } = rotation {
                    close(successor);
                }
            }
            _ => {}
        }
    }

    fn set_state(&mut self, state: State, reason: Reason) {
        self.enter(self.state.phase(), state, reason);
    }

    /// Enters `state`, reporting the change from `from` (the phase before the
    /// caller took the old state apart).
    fn enter(&mut self, from: Phase, state: State, reason: Reason) {
        self.state = state;
        self.outputs.push_back(Output::StateChanged {
            from,
            to: self.state.phase(),
            reason,
        });
    }

    // ------------------------------------------------------------ helpers

    fn new_conn(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    fn resume_id(&self) -> Option<Utf8Bytes> {
        (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone())
    }

    /// The backoff delay after the `self.attempts`-th consecutive failure.
    fn backoff_delay(&mut self, class: Class, retry_after: Option<Duration>) -> Duration {
        let b = &self.config.backoff;
        // After a lost established connection the first retry was the
        // immediate one: the schedule starts short, one step later.
        let (base, skipped) = if self.after_loss {
            (
                self.server_retry.unwrap_or(b.after_loss),
                self.loss_base + 1,
            )
        } else {
            (self.server_retry.unwrap_or(b.initial), 0)
        };
        let cap = match class {
            Class::Normal => b.max,
            Class::RateLimited => b.max_rate_limited,
            Class::Auth => b.max_auth,
        }
        .max(base);
        let exponent = i32::try_from(self.attempts.saturating_sub(1 + skipped))
            .unwrap_or(i32::MAX)
            .min(1024);
        let raw = (base.as_secs_f64() * b.multiplier.powi(exponent)).min(cap.as_secs_f64());
        let jittered = match b.jitter {
            Jitter::None => raw,
            Jitter::Half => raw * (0.5 + 0.5 * self.rng.unit()),
            Jitter::Full => raw * self.rng.unit(),
        };
        let delay = Duration::from_secs_f64(jittered);
        let floor = retry_after.map_or(Duration::ZERO, |d| d.min(self.config.retry_after_max));
        delay.max(floor)
    }

    /// The wait before reconnecting a lost established connection: uniform
    /// over `[0, min(reconnect_spread, k x reconnect_spread_step))` for `k`
    /// streams of the origin lost together (unknown: the whole spread).
    fn spread(&mut self, lost_together: Option<u32>) -> Duration {
        let b = &self.config.backoff;
        let window = match lost_together {
            Some(k) => b
                .reconnect_spread_step
                .saturating_mul(k)
                .min(b.reconnect_spread),
            None => b.reconnect_spread,
        };
        window.mul_f64(self.rng.unit())
    }

    fn age_deadline(&mut self, now: Instant) -> Option<Instant> {
        let age = self.config.max_age?;
        let factor = 1.0 + self.config.max_age_jitter * (2.0 * self.rng.unit() - 1.0);
        Some(now + age.mul_f64(factor))
    }

    /// Whether `conn` is the delivering or connecting connection, or a
    /// rotation's new one.
    fn is_current(&self, conn: ConnId) -> Result<bool, Error> {
        let current = match &self.state {
            State::Connecting(c) => c.id == conn,
            State::Open {
                conn: c, rotation, ..
            } => {
                c.id == conn
                    || matches!(rotation, Rotation::InProgress { successor, .. } if successor.id == conn)
            }
            _ => false,
        };
        if current {
            Ok(true)
        } else {
            self.check_known(conn).map(|()| false)
        }
    }

    fn check_known(&self, conn: ConnId) -> Result<(), Error> {
        if conn.0 < self.next_conn {
            Ok(())
        } else {
            Err(Error::UnknownConnection(conn))
        }
    }

    /// An input about `conn` that does not fit the state: ignored when `conn`
    /// was closed already (a race), an error otherwise.
    fn stale_or(&self, conn: ConnId, input: &'static str) -> Result<(), Error> {
        self.check_known(conn)?;
        if self.is_current(conn)? {
            Err(self.unexpected(input))
        } else {
            Ok(())
        }
    }

    fn unexpected(&self, input: &'static str) -> Error {
        Error::Unexpected {
            input,
            phase: self.phase(),
        }
    }
}

/// What a non-200 status (or a 200 of the wrong type) means.
enum Verdict {
    Retry(Class),
    Stop(StopReason),
}

fn classify(status: u16) -> Verdict {
    match status {
        204 => Verdict::Stop(StopReason::NoContent),
        429 => Verdict::Retry(Class::RateLimited),
        401 | 403 => Verdict::Retry(Class::Auth),
        408 => Verdict::Retry(Class::Normal),
        400..=499 => Verdict::Stop(StopReason::ClientError(status)),
        // 5xx, a 200 that is not an event stream, and anything unexpected
        // (an unfollowed redirect, 1xx, other 2xx): retry with backoff.
        _ => Verdict::Retry(Class::Normal),
    }
}
