//! One upstream stream: a task that drives an `sse-state-machine` with real
//! connections, parses them with `sse-parser`, and broadcasts what the
//! machine lets through.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http_body_util::BodyExt;
use sse_health::{ErrorKind, EventTime, Level, RotateCause, StreamHealth};
use sse_parser::{Event, Item, Limits, Parser, Utf8Bytes};
use sse_state_machine::{
    ConfigError, ConnId, Delivery, FailureKind, Input, Machine, Output, Phase, Reason, RotateReason,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

pub use crate::config::StreamConfig;
use crate::connector::{ConnectFailure, Connector, Target};
use crate::latency::latency_of;
use crate::metrics;
use crate::redirect::RedirectPolicy;
use crate::request::{self, UpstreamRequest};
use crate::transport::{Connections, LeaseError};

/// What subscribers receive. Non-exhaustive: a [`Source`](crate::Source)
/// may send kinds a stream does not.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum StreamItem {
    /// An event the machine delivered (no duplicate across rotations).
    Event(Event),
    /// An event numbered by its [`Source`](crate::Source) (a cluster's
    /// event stream): `sequence` orders it among all the source's events
    /// and outlives the process, so a resume can continue from it anywhere.
    /// A stream of the pool never sends this.
    Sequenced {
        /// Its position, from the source.
        sequence: u64,
        /// The event.
        event: Event,
    },
    /// The source lost events of this topic (its retention dropped them
    /// before they were read, or its owner could not store them): what
    /// follows continues after `resumes_after`, not after the last item.
    /// A stream of the pool never sends this.
    Missed {
        /// The position the next event follows.
        resumes_after: u64,
    },
    /// Events of this topic may be missing here (a packed connection was
    /// re-made without resuming, or fell behind): `missed` of them, at
    /// least; 0 when the count is unknown. Subscribers are told of a gap.
    /// A stream of its own never sends this (its resume has no gap).
    Gap {
        /// How many, at least (0: unknown).
        missed: u64,
    },
    /// A comment from the delivering connection.
    Comment(Utf8Bytes),
    /// The stream changed phase. Errors are non-terminal updates unless the
    /// stream stopped for good.
    Status(Status),
}

/// A stream's state and counters, for admin views and maintenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// The phase.
    pub phase: Phase,
    /// Why it entered that phase.
    pub reason: Reason,
    /// Since when (tokio's clock).
    pub since: tokio::time::Instant,
    /// Connection attempts so far.
    pub attempts: u64,
    /// Connections opened (200, event stream) so far, rotations included.
    pub opened: u64,
    /// Rotations completed (a new connection took over) so far.
    pub rotations: u64,
    /// Events delivered so far.
    pub events: u64,
    /// Body bytes received so far.
    pub bytes: u64,
    /// The last event ID delivered.
    pub last_event_id: String,
    /// Latency (arrival minus event time) over health's window, median and
    /// 99th percentile. `None`: not measured (no `health.event_time`, or
    /// no event in the window carried a time).
    pub latency_p50: Option<Duration>,
    /// See `latency_p50`.
    pub latency_p99: Option<Duration>,
    /// The health verdict (after hysteresis).
    pub health: Level,
    /// Since when that verdict holds (tokio's clock).
    pub health_since: tokio::time::Instant,
    /// What the last evaluation found wrong, in words.
    pub causes: Vec<String>,
    /// Rotations health advised.
    pub rotations_advised: u64,
    /// Errors by kind, in `sse_health::ErrorKind::ALL` order (connect,
    /// status, stream, timeout).
    pub errors: [u64; 4],
}

impl StreamState {
    /// A stream's state before its first attempt.
    pub(crate) fn initial(last_event_id: Option<String>) -> Self {
        Self {
            phase: Phase::Idle,
            reason: Reason::Start,
            since: tokio::time::Instant::now(),
            attempts: 0,
            opened: 0,
            rotations: 0,
            events: 0,
            bytes: 0,
            last_event_id: last_event_id.unwrap_or_default(),
            latency_p50: None,
            latency_p99: None,
            health: Level::Healthy,
            health_since: tokio::time::Instant::now(),
            causes: Vec::new(),
            rotations_advised: 0,
            errors: [0; 4],
        }
    }
}

/// A phase change, as subscribers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// The new phase.
    pub phase: Phase,
    /// Why.
    pub reason: Reason,
    /// The stream stopped for good (204, a 4xx, or a stop): nothing follows.
    pub terminal: bool,
}

enum Command {
    Reconnect,
    Rotate(RotateReason),
    Stop,
}

/// A running stream. Dropping it stops the stream.
#[derive(Debug)]
pub struct StreamHandle {
    items: broadcast::Sender<StreamItem>,
    /// Made before the task started, so the first subscriber misses nothing.
    first: parking_lot::Mutex<Option<broadcast::Receiver<StreamItem>>>,
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<StreamState>,
    task: Option<JoinHandle<()>>,
}

impl StreamHandle {
    /// Receives what the stream delivers from now on; the first call
    /// receives everything since the stream started. A receiver that falls
    /// more than `channel_capacity` items behind is told how many it missed
    /// (`RecvError::Lagged`) and never blocks the stream or other receivers.
    pub fn subscribe(&self) -> broadcast::Receiver<StreamItem> {
        self.first
            .lock()
            .take()
            .unwrap_or_else(|| self.items.subscribe())
    }

    /// The stream's current state and counters.
    pub fn state(&self) -> StreamState {
        self.state.borrow().clone()
    }

    /// The stream's state as it changes (a watch channel).
    pub fn watch_state(&self) -> watch::Receiver<StreamState> {
        self.state.clone()
    }

    /// Drops the connection and reconnects at once.
    pub async fn reconnect(&self) {
        let _ = self.commands.send(Command::Reconnect).await;
    }

    /// Replaces the connection, make-before-break.
    pub async fn rotate(&self, reason: RotateReason) {
        let _ = self.commands.send(Command::Rotate(reason)).await;
    }

    /// Asks for a reconnect without waiting (for callers holding a lock).
    /// False if the stream has ended or too many commands are queued (one
    /// already pending has the same effect).
    pub fn request_reconnect(&self) -> bool {
        self.commands.try_send(Command::Reconnect).is_ok()
    }

    /// Asks for a make-before-break rotation without waiting; as
    /// [`request_reconnect`](Self::request_reconnect).
    pub fn request_rotate(&self, reason: RotateReason) -> bool {
        self.commands.try_send(Command::Rotate(reason)).is_ok()
    }

    /// Stops the stream, closes its connections and waits for its task.
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Whether the stream's task has ended (it stopped for good).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts a stream of `request` through `connector`.
///
/// # Errors
///
/// The machine's configuration is invalid.
pub fn spawn_stream<C: Connector>(
    connector: C,
    request: UpstreamRequest,
    config: StreamConfig,
) -> Result<StreamHandle, ConfigError> {
    let mut machine = Machine::new(config.machine.clone(), config.seed)?;
    if let Some(id) = &config.last_event_id {
        machine.set_last_event_id(Utf8Bytes::from(id.as_str()));
    }
    let (state_tx, state) = watch::channel(StreamState::initial(config.last_event_id.clone()));
    let health = StreamHealth::new(config.health.clone(), now());
    let (items, first) = broadcast::channel(config.channel_capacity.max(1));
    let (commands, command_rx) = mpsc::channel(8);
    let (messages, message_rx) = mpsc::channel(64);
    let driver = Driver {
        machine,
        connector,
        origin: request::target(request.url()),
        request: Arc::new(request),
        connections: config.connections.clone(),
        limits: config.limits,
        conns: HashMap::new(),
        messages,
        items: items.clone(),
        state: state_tx,
        event_time: config.health.event_time.clone().map(|e| {
            let route = config.route.clone().unwrap_or_else(|| "default".into());
            (
                e,
                ::metrics::histogram!(metrics::EVENT_LATENCY, "route" => route.to_string()),
            )
        }),
        health,
        health_rotation: config.health_rotation,
        redirects: config.redirects.clone(),
        resume: config.resume,
        phase: metrics::PhaseGauge::new(Phase::Idle),
    };
    let span = tracing::info_span!("upstream", url = %driver.request.url());
    let task = tokio::spawn(tracing::Instrument::instrument(
        driver.run(message_rx, command_rx),
        span,
    ));
    Ok(StreamHandle {
        items,
        first: parking_lot::Mutex::new(Some(first)),
        commands,
        state,
        task: Some(task),
    })
}

/// News from a connection task.
enum Message {
    /// The attempt left the limiter's queue: its connect deadline runs.
    Dialing {
        conn: ConnId,
    },
    Response {
        conn: ConnId,
        status: u16,
        event_stream: bool,
        retry_after: Option<Duration>,
    },
    Chunk {
        conn: ConnId,
        data: Bytes,
    },
    End {
        conn: ConnId,
    },
    Failed {
        conn: ConnId,
        kind: FailureKind,
    },
}

struct Conn {
    task: JoinHandle<()>,
    parser: Parser,
    /// When it was asked for: on the wall clock (an event stamped before
    /// is history the upstream replays after a `Last-Event-ID`, not a live
    /// delivery, and no latency sample), and on tokio's. An event's arrival
    /// is the first plus what the second has run since: the wall clock as
    /// the machine's clock runs, which paused-time tests drive too.
    asked: (SystemTime, tokio::time::Instant),
}

struct Driver<C> {
    machine: Machine,
    connector: C,
    request: Arc<UpstreamRequest>,
    /// Where `request` connects: losses are counted per origin.
    origin: Target,
    connections: Connections,
    limits: Limits,
    conns: HashMap<ConnId, Conn>,
    messages: mpsc::Sender<Message>,
    items: broadcast::Sender<StreamItem>,
    state: watch::Sender<StreamState>,
    health: StreamHealth,
    /// Where events carry their time, and the route's latency histogram.
    event_time: Option<(EventTime, ::metrics::Histogram)>,
    health_rotation: bool,
    redirects: RedirectPolicy,
    /// Send `Last-Event-ID` on reconnects ([`StreamConfig::resume`]).
    resume: bool,
    phase: metrics::PhaseGauge,
}

/// The machine's clock: tokio's, so that paused time reaches it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl<C: Connector> Driver<C> {
    async fn run(
        mut self,
        mut messages: mpsc::Receiver<Message>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        self.input(now(), Input::Start);
        loop {
            self.drain_outputs();
            if self.machine.phase() == Phase::Stopped {
                break;
            }
            let deadline = self.machine.poll_timeout();
            let health_due = self.health.poll_timeout();
            tokio::select! {
                Some(message) = messages.recv() => self.on_message(message),
                command = commands.recv() => {
                    let input = match command {
                        Some(Command::Reconnect) => Input::Reconnect,
                        Some(Command::Rotate(reason)) => Input::Rotate(reason),
                        // The handle is gone: stop.
                        Some(Command::Stop) | None => Input::Stop,
                    };
                    self.input(now(), input);
                }
                () = sleep_until(deadline) => {
                    self.counting_loss(|driver| driver.machine.handle_timeout(now()));
                }
                () = sleep_until(health_due) => self.maintain(),
            }
        }
        for (_, conn) in self.conns.drain() {
            conn.task.abort();
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Connect {
                    conn,
                    last_event_id,
                } => {
                    self.state.send_modify(|s| s.attempts += 1);
                    metrics::record_attempt();
                    let mut parser = Parser::with_limits(self.limits);
                    if let Some(id) = &last_event_id {
                        parser.set_last_event_id(id.clone());
                    }
                    let attempt = Attempt {
                        connector: self.connector.clone(),
                        connections: self.connections.clone(),
                        template: self.request.clone(),
                        redirects: self.redirects.clone(),
                        conn,
                        // A rotation's connection replaces the current one's
                        // socket, which may be the problem.
                        fresh: self.machine.phase() == Phase::Open,
                        last_event_id: last_event_id
                            .filter(|_| self.resume)
                            .map(|id| id.to_string()),
                    };
                    let task = tokio::spawn(connection(attempt, self.messages.clone()));
                    self.conns.insert(
                        conn,
                        Conn {
                            task,
                            parser,
                            asked: (SystemTime::now(), tokio::time::Instant::now()),
                        },
                    );
                    // Until the task says it is dialing, it may wait in the
                    // limiter's queue: not a connect timeout.
                    self.input(now(), Input::Queued { conn });
                }
                Output::Close { conn, .. } => {
                    if let Some(conn) = self.conns.remove(&conn) {
                        conn.task.abort();
                    }
                }
                Output::StateChanged { from, to, reason } => {
                    // Connections made and lost are the operator's business;
                    // the steps between are detail.
                    if to == Phase::Open || from == Phase::Open || to == Phase::Stopped {
                        tracing::info!(%from, %to, %reason, "upstream stream");
                    } else {
                        tracing::debug!(%from, %to, %reason, "upstream stream");
                    }
                    metrics::record_change(to, reason);
                    self.phase.set(to);
                    self.observe(from, to, reason);
                    self.state.send_modify(|s| {
                        s.phase = to;
                        s.reason = reason;
                        s.since = tokio::time::Instant::now();
                        let rotated = matches!(reason, Reason::Rotated(_));
                        s.opened += u64::from(reason == Reason::Opened || rotated);
                        s.rotations += u64::from(rotated);
                    });
                    let _ = self.items.send(StreamItem::Status(Status {
                        phase: to,
                        reason,
                        terminal: to == Phase::Stopped,
                    }));
                }
                Output::Retrying { attempt, at } => {
                    let wait = at.saturating_duration_since(now());
                    tracing::info!(
                        attempt,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "upstream reconnect scheduled"
                    );
                }
            }
        }
    }

    /// Feeds a phase change to health.
    fn observe(&mut self, from: Phase, to: Phase, reason: Reason) {
        let t = now();
        match (to, reason) {
            (Phase::Open, Reason::Opened) => self.health.on_connected(t),
            (Phase::Open, Reason::Rotated(_)) => self.health.on_rotated(t),
            _ => {}
        }
        if from == Phase::Open && to != Phase::Open {
            self.health.on_disconnected(t);
        }
        let kind = match reason {
            Reason::Failed(_) if from == Phase::Connecting => Some(ErrorKind::Connect),
            Reason::Failed(_) | Reason::EndOfBody => Some(ErrorKind::Stream),
            Reason::Status(_) | Reason::NotEventStream => Some(ErrorKind::Status),
            Reason::Timeout(_) => Some(ErrorKind::Timeout),
            _ => None,
        };
        if let Some(kind) = kind {
            self.health.on_error(t, kind);
            sse_health::metrics::record_error(kind);
            let i = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
            self.state.send_modify(|s| s.errors[i] += 1);
        }
    }

    /// Runs `step` (an input or a deadline that may end the delivering
    /// connection) with the machine told how many streams of this origin
    /// were lost within the last second, this one included should it be:
    /// its reconnect spreads by that (one lost stream comes back at once,
    /// a restarted upstream's streams spread out). A loss is counted for
    /// the origin's other streams.
    fn counting_loss(&mut self, step: impl FnOnce(&mut Self)) {
        let open = self.machine.phase() == Phase::Open;
        if open {
            let k = self.connections.losses(&self.origin).saturating_add(1);
            self.machine.set_lost_together(k);
        }
        step(self);
        if open && matches!(self.machine.phase(), Phase::BackingOff | Phase::Connecting) {
            self.connections.record_loss(&self.origin);
        }
    }

    /// Feeds `input` to the machine. An input the machine calls impossible
    /// in its state is a bug of this driver (races with closed connections
    /// are absorbed by the machine itself): logged, and fatal in debug
    /// builds, never in production.
    fn input(&mut self, t: std::time::Instant, input: Input) {
        let name = input.name();
        if let Err(e) = self.machine.handle_input(t, input) {
            tracing::error!(error = %e, input = name, "the state machine refused an input");
            debug_assert!(false, "the state machine refused {name}: {e}");
        }
    }

    /// Evaluates health, publishes the verdict, and rotates when advised.
    fn maintain(&mut self) {
        let t = now();
        let verdict = self.health.evaluate(t);
        let (level, since, causes) = (
            verdict.level,
            tokio::time::Instant::from_std(verdict.since),
            verdict.causes.iter().map(ToString::to_string).collect(),
        );
        let advice = self.health.rotation(t).filter(|_| self.health_rotation);
        let rotate = advice.map(|cause| match cause {
            RotateCause::Errors(_) | RotateCause::FailureRatio(_) => RotateReason::Errors,
            RotateCause::Eventless(_) => RotateReason::Stale,
            RotateCause::Degraded(_) => RotateReason::Degraded,
        });
        let stats = self.health.stats(t);
        self.state.send_modify(|s| {
            s.latency_p50 = stats.latency_p50;
            s.latency_p99 = stats.latency_p99;
            s.health = level;
            s.health_since = since;
            s.causes = causes;
            s.rotations_advised += u64::from(rotate.is_some());
        });
        if let (Some(cause), Some(reason)) = (advice, rotate) {
            sse_health::metrics::record_rotation_advised(cause);
            // No other advice within health's minimum rotation interval; the
            // hand-over itself is reported by `observe`.
            self.health.on_rotation_started(t);
            self.input(t, Input::Rotate(reason));
        }
    }

    fn on_message(&mut self, message: Message) {
        let t = now();
        let input = match message {
            Message::Response {
                conn,
                status,
                event_stream,
                retry_after,
            } => Input::Connected {
                conn,
                status,
                event_stream,
                retry_after,
            },
            Message::Chunk { conn, data } => {
                self.on_chunk(t, conn, data);
                return;
            }
            Message::Dialing { conn } => Input::Dialing { conn },
            Message::End { conn } => Input::EndOfBody { conn },
            Message::Failed { conn, kind } => Input::Failed { conn, kind },
        };
        // News about a connection the machine closed is ignored by it.
        if matches!(input, Input::EndOfBody { .. } | Input::Failed { .. }) {
            self.counting_loss(|driver| driver.input(t, input));
        } else {
            self.input(t, input);
        }
    }

    fn on_chunk(&mut self, t: std::time::Instant, conn: ConnId, data: Bytes) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        let bytes = data.len();
        self.health.on_bytes(t, bytes);
        state.parser.feed(data);
        let mut inputs = Vec::new();
        let mut delivered = 0u64;
        loop {
            match state.parser.next_item() {
                Ok(Some(Item::Event(event))) => {
                    if self.machine.on_event(t, conn, &event.id) == Delivery::Deliver {
                        delivered += 1;
                        let asked = state.asked;
                        let latency = self.event_time.as_ref().and_then(|(time, histogram)| {
                            let latency = latency_of(time, &event.data, asked)?;
                            histogram.record(latency.as_secs_f64());
                            Some(latency)
                        });
                        self.health.on_event(t, latency);
                        let _ = self.items.send(StreamItem::Event(event));
                    }
                }
                Ok(Some(Item::Comment(text))) => {
                    if self.machine.delivering() == Some(conn) {
                        let _ = self.items.send(StreamItem::Comment(text));
                    }
                }
                Ok(Some(Item::Retry(delay))) => inputs.push(Input::Retry { conn, delay }),
                Ok(None) => break,
                Err(_) => {
                    inputs.push(Input::Failed {
                        conn,
                        kind: FailureKind::Limit,
                    });
                    break;
                }
            }
        }
        // Counters are published once per chunk, not once per event: the
        // watch channel takes a lock and the last id is a string copy.
        metrics::record_events(delivered);
        metrics::record_bytes(bytes);
        let last_id = (delivered > 0).then(|| self.machine.last_event_id().to_string());
        self.state.send_modify(|s| {
            s.bytes += bytes as u64;
            s.events += delivered;
            if let Some(id) = last_id {
                s.last_event_id = id;
            }
        });
        let mid_event = state.parser.has_partial();
        let committed = state.parser.last_event_id().clone();
        self.input(t, Input::Data { conn, mid_event });
        if self.machine.delivering() == Some(conn) && committed != *self.machine.last_event_id() {
            self.input(
                t,
                Input::LastEventId {
                    conn,
                    id: committed,
                },
            );
        }
        for input in inputs {
            self.input(t, input);
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn classify(err: &io::Error) -> FailureKind {
    match ConnectFailure::of(err) {
        Some(ConnectFailure::Dns(_)) => return FailureKind::Dns,
        Some(ConnectFailure::Tls(_)) => return FailureKind::Tls,
        None => {}
    }
    match err.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => FailureKind::Refused,
        io::ErrorKind::TimedOut => FailureKind::Timeout,
        _ => FailureKind::Io,
    }
}

/// What one connection attempt needs.
struct Attempt<C> {
    connector: C,
    connections: Connections,
    template: Arc<UpstreamRequest>,
    redirects: RedirectPolicy,
    conn: ConnId,
    /// A new socket, never a shared HTTP/2 connection (a rotation).
    fresh: bool,
    last_event_id: Option<String>,
}

/// One connection: connect, send the request (following redirects), report
/// the response, forward the body. Aborted when the machine closes it.
async fn connection<C: Connector>(attempt: Attempt<C>, messages: mpsc::Sender<Message>) {
    let Attempt {
        connector,
        connections,
        template,
        redirects,
        conn,
        fresh,
        last_event_id,
    } = attempt;
    let result = async {
        let origin = template.url().clone();
        let mut url = origin.clone();
        let mut hops = 0u8;
        loop {
            // Kept until the body ends: dropping it may close the socket.
            // A redirect's hop is part of the same attempt: its deadline
            // runs already.
            let first = hops == 0;
            let dialing = async {
                if first {
                    let _ = messages.send(Message::Dialing { conn }).await;
                }
            };
            let mut lease = connections
                .lease(&connector, &request::target(&url), fresh && first, dialing)
                .await
                .map_err(|e| match e {
                    LeaseError::Connect(e) => classify(&e),
                    LeaseError::Handshake => FailureKind::Protocol,
                })?;
            let strip = !request::same_origin(&origin, &url);
            let req = request::build(
                &template,
                &url,
                last_event_id.as_deref(),
                strip,
                lease.is_h2(),
            )
            .map_err(|_| FailureKind::Protocol)?;
            let response = lease.send(req).await.map_err(|_| FailureKind::Io)?;
            let status = response.status().as_u16();
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                hops += 1;
                if hops > template.max_redirects {
                    return Err(FailureKind::Protocol);
                }
                url = request::redirect(&url, response.headers().get(LOCATION))
                    .map_err(|_| FailureKind::Protocol)?;
                if let Err(refused) = redirects.check(&origin, &url) {
                    // The same request would lead there again: the machine
                    // stops the stream (and the pool remembers why).
                    tracing::warn!(%refused, "upstream redirect not followed");
                    return Err(FailureKind::RedirectRefused);
                }
                continue;
            }
            let event_stream = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.split(';')
                        .next()
                        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/event-stream"))
                });
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| request::retry_after(v, SystemTime::now()));
            let sent = messages
                .send(Message::Response {
                    conn,
                    status,
                    event_stream,
                    retry_after,
                })
                .await;
            if sent.is_err() || status != 200 || !event_stream {
                // The machine decides; an error body is never parsed as SSE.
                return Ok(());
            }
            let mut body = response.into_body();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| FailureKind::Io)?;
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                    && messages.send(Message::Chunk { conn, data }).await.is_err()
                {
                    return Ok(());
                }
            }
            let _ = messages.send(Message::End { conn }).await;
            return Ok(());
        }
    }
    .await;
    if let Err(kind) = result {
        let _ = messages.send(Message::Failed { conn, kind }).await;
    }
}
