//! The server: accept loop, request routing, and one task per stream that
//! plays its connection's script.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::body::{ChannelBody, SimBody, event_stream, full};
use crate::fault::{Fault, Garbage};
use crate::feed::{FeedEvent, Quotes, Topic};
use crate::packed::{self, Firehose};
use crate::records::LOG_CAPACITY;
pub use crate::records::{RecordedRequest, StreamLog};
use crate::tls::TlsIdentity;

/// A TLS client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Entry point: [`Sim::builder`].
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// A builder with the defaults: topics AAPL, MSFT, GOOG, AMZN, TSLA; 10
    /// events per second per topic; a heartbeat comment every 15 s; 10,000
    /// events of history per topic; seed 0.
    pub fn builder() -> SimBuilder {
        SimBuilder {
            topics: ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA"]
                .map(String::from)
                .to_vec(),
            events_per_sec: 10.0,
            heartbeat: Duration::from_secs(15),
            history: 10_000,
            seed: 0,
            scripts: HashMap::new(),
            tls: None,
            log_streams: false,
        }
    }
}

/// Configures and starts a simulated upstream.
#[derive(Debug, Clone)]
pub struct SimBuilder {
    topics: Vec<String>,
    events_per_sec: f64,
    heartbeat: Duration,
    history: usize,
    seed: u64,
    scripts: HashMap<String, VecDeque<Fault>>,
    tls: Option<TlsIdentity>,
    log_streams: bool,
}

impl SimBuilder {
    /// Records the start and end of every stream response, for
    /// [`SimHandle::take_log`] (at most 100,000 entries between takes; the
    /// oldest are dropped and counted).
    #[must_use]
    pub fn log_streams(mut self, on: bool) -> Self {
        self.log_streams = on;
        self
    }

    /// Serves HTTPS with `identity` (ALPN `h2`, `http/1.1`) instead of HTTP.
    #[must_use]
    pub fn tls(mut self, identity: TlsIdentity) -> Self {
        self.tls = Some(identity);
        self
    }

    /// The topics served.
    #[must_use]
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// Events per second per topic (0 for none: a quiet feed).
    #[must_use]
    pub fn events_per_sec(mut self, rate: f64) -> Self {
        self.events_per_sec = rate;
        self
    }

    /// The interval of `: heartbeat` comments on every stream.
    #[must_use]
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// Events kept per topic for `Last-Event-ID` replay.
    #[must_use]
    pub fn history(mut self, events: usize) -> Self {
        self.history = events;
        self
    }

    /// The seed of the price walks.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The behaviours of the next connections to `topic`, in order.
    #[must_use]
    pub fn script(mut self, topic: &str, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.scripts
            .entry(topic.to_string())
            .or_default()
            .extend(faults);
        self
    }

    /// Binds `addr` (loopback only) and starts serving.
    ///
    /// # Errors
    ///
    /// The address is not loopback, a rate is not finite and non-negative,
    /// or binding failed.
    pub async fn start(self, addr: &str) -> io::Result<SimHandle> {
        let addr: SocketAddr = addr.parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listen address {addr:?}: {e}"),
            )
        })?;
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the simulator listens on loopback only, not {}", addr.ip()),
            ));
        }
        if !(self.events_per_sec.is_finite() && self.events_per_sec >= 0.0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "events per second must be >= 0",
            ));
        }
        let acceptor = self.tls.as_ref().map(TlsIdentity::acceptor).transpose()?;
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let state = Arc::new(State {
            topics: self
                .topics
                .iter()
                .map(|t| (t.clone(), Topic::new(t.clone(), self.history)))
                .collect(),
            // The packed history: each topic's, together, within a bound.
            firehose: Arc::new(Firehose::new(
                self.history.saturating_mul(self.topics.len()).min(1 << 18),
            )),
            scripts: Mutex::new(self.scripts),
            requests: Mutex::new(VecDeque::new()),
            connections: AtomicUsize::new(0),
            active_streams: AtomicUsize::new(0),
            heartbeat: self.heartbeat,
            stop: stop_rx.clone(),
            kick: watch::channel(0).0,
            down_until: Mutex::new(None),
            log: self.log_streams.then(|| Mutex::new(VecDeque::new())),
            log_dropped: AtomicUsize::new(0),
        });
        let mut tasks = JoinSet::new();
        if self.events_per_sec > 0.0 {
            let period = Duration::from_secs_f64(1.0 / self.events_per_sec);
            for topic in state.topics.values() {
                tasks.spawn(generate(
                    topic.clone(),
                    state.firehose.clone(),
                    Quotes::new(&topic.name, self.seed),
                    period,
                    stop_rx.clone(),
                ));
            }
        }
        tasks.spawn(accept_loop(
            listener,
            acceptor.clone(),
            state.clone(),
            stop_rx,
        ));
        Ok(SimHandle {
            addr: local,
            scheme: if acceptor.is_some() { "https" } else { "http" },
            state,
            stop: stop_tx,
            tasks: Mutex::new(tasks),
        })
    }
}

/// A running simulator. Dropping it stops everything.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    tasks: Mutex<JoinSet<()>>,
}

impl SimHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, or `https://<addr>` with TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The stream URL of `topic`.
    pub fn stream_url(&self, topic: &str) -> String {
        format!("{}/v1/quotes/{topic}/stream", self.url())
    }

    /// The URL of a packed stream of `topics`: `/v1/stream?symbols=a,b`
    /// (each event's data is its quote, the topic at `/s`) or, with
    /// `meta_stream`, `/v2/stream/a,b` (the topic at `/meta/stream`). Its
    /// ids are one sequence over every topic (see the crate docs).
    pub fn packed_url(&self, topics: &[&str], meta_stream: bool) -> String {
        let list = topics.join(",");
        if meta_stream {
            format!("{}/v2/stream/{list}", self.url())
        } else {
            format!("{}/v1/stream?symbols={list}", self.url())
        }
    }

    /// The last 1,000 requests received, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().iter().cloned().collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Streams being served now.
    pub fn active_streams(&self) -> usize {
        self.state.active_streams.load(Ordering::Relaxed)
    }

    /// Adds behaviours for the next connections to `topic`.
    pub fn script(&self, topic: &str, faults: impl IntoIterator<Item = Fault>) {
        self.state
            .scripts
            .lock()
            .entry(topic.to_string())
            .or_default()
            .extend(faults);
    }

    /// Scripted behaviours still waiting for a connection to `topic`.
    pub fn scripted(&self, topic: &str) -> usize {
        self.state
            .scripts
            .lock()
            .get(topic)
            .map_or(0, VecDeque::len)
    }

    /// Drops the behaviours still scripted for `topic`; returns how many.
    pub fn clear_script(&self, topic: &str) -> usize {
        self.state
            .scripts
            .lock()
            .remove(topic)
            .map_or(0, |script| script.len())
    }

    /// Ends every open stream of `topic` cleanly (the body ends), as an
    /// upstream that closes its streams now and then does. Returns whether
    /// the topic exists.
    pub fn close_topic(&self, topic: &str) -> bool {
        self.state.topics.get(topic).is_some_and(|t| {
            t.kick.send_modify(|generation| *generation += 1);
            true
        })
    }

    /// The topics served.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.state.topics.keys().cloned().collect();
        topics.sort();
        topics
    }

    /// Takes the stream log recorded since the last take (empty unless
    /// [`SimBuilder::log_streams`] is on), and how many entries were dropped
    /// because it was full.
    pub fn take_log(&self) -> (Vec<StreamLog>, usize) {
        let taken = self
            .state
            .log
            .as_ref()
            .map(|log| std::mem::take(&mut *log.lock()).into())
            .unwrap_or_default();
        (taken, self.state.log_dropped.swap(0, Ordering::Relaxed))
    }

    /// The id of the newest event of `topic`, if any.
    pub fn last_id(&self, topic: &str) -> Option<u64> {
        self.state.topics.get(topic).and_then(|t| t.last_id())
    }

    /// Simulates a restart of the upstream: every open connection is dropped,
    /// new ones are dropped at once for `downtime`, then the feed is served
    /// again. The feed's ids and history survive, as they would on a real
    /// upstream that persists them, so clients can resume with `Last-Event-ID`.
    pub fn restart(&self, downtime: Duration) {
        *self.state.down_until.lock() = Some(tokio::time::Instant::now() + downtime);
        self.state.kick.send_modify(|generation| *generation += 1);
    }

    /// Stops accepting, ends every stream, and waits (at most 5 s) for every
    /// task to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock());
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.tasks.lock().abort_all();
    }
}

#[derive(Debug)]
struct State {
    topics: HashMap<String, Arc<Topic>>,
    /// Every topic's events in one sequence, for packed streams.
    firehose: Arc<Firehose>,
    scripts: Mutex<HashMap<String, VecDeque<Fault>>>,
    requests: Mutex<VecDeque<RecordedRequest>>,
    connections: AtomicUsize,
    active_streams: AtomicUsize,
    heartbeat: Duration,
    stop: watch::Receiver<bool>,
    /// Bumped to drop every open connection (a restart).
    kick: watch::Sender<u64>,
    /// While set and in the future, new connections are dropped at accept.
    down_until: Mutex<Option<tokio::time::Instant>>,
    log: Option<Mutex<VecDeque<StreamLog>>>,
    log_dropped: AtomicUsize,
}

impl State {
    fn record(&self, topic: &str, fault: &'static str, ended: bool) {
        let Some(log) = &self.log else { return };
        let mut log = log.lock();
        if log.len() == LOG_CAPACITY {
            log.pop_front();
            self.log_dropped.fetch_add(1, Ordering::Relaxed);
        }
        log.push_back(StreamLog {
            at: SystemTime::now(),
            topic: topic.to_string(),
            fault,
            ended,
        });
    }
}

/// Waits until `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn generate(
    topic: Arc<Topic>,
    firehose: Arc<Firehose>,
    mut quotes: Quotes,
    period: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let name: Arc<str> = Arc::from(topic.name.as_str());
    let run = async {
        loop {
            tick.tick().await;
            let event = quotes.next(&topic.name);
            firehose.publish(&name, &event);
            topic.publish(event);
        }
    };
    tokio::select! {
        () = run => {}
        () = stopped(stop) => {}
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let accept = async {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                // Out of file descriptors, say: back off a little, go on.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            state.connections.fetch_add(1, Ordering::Relaxed);
            let down = state
                .down_until
                .lock()
                .is_some_and(|until| tokio::time::Instant::now() < until);
            if down {
                // Restarting: the connection is refused (closed at once).
                drop(socket);
                continue;
            }
            let state = state.clone();
            let stop = stop.clone();
            let mut kick = state.kick.subscribe();
            let tls = tls.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let builder = auto::Builder::new(TokioExecutor::new());
                let serve = async {
                    match tls {
                        // A failed handshake (an untrusting client) just ends
                        // the connection. The handshake is bounded like a
                        // request: a client that never finishes it is dropped.
                        Some(tls) => {
                            let handshake =
                                tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(socket));
                            if let Ok(Ok(stream)) = handshake.await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(socket), service)
                                .await;
                        }
                    }
                };
                tokio::select! {
                    () = serve => {}
                    () = stopped(stop) => {}
                    _ = kick.changed() => {}
                }
            });
            // Reap finished connections so the set stays small.
            while connections.try_join_next().is_some() {}
        }
    };
    tokio::select! {
        () = accept => {}
        () = stopped(stop.clone()) => {}
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<SimBody>, io::Error> {
    {
        let mut requests = state.requests.lock();
        if requests.len() == 1000 {
            requests.pop_front();
        }
        requests.push_back(RecordedRequest {
            method: req.method().to_string(),
            uri: req.uri().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        });
    }
    let path = req.uri().path();
    if let Some(asked) = packed::parse(path, req.uri().query()) {
        return Ok(serve_packed(&state, &req, asked));
    }
    let Some(topic_name) = path
        .strip_prefix("/v1/quotes/")
        .and_then(|rest| rest.strip_suffix("/stream"))
    else {
        return Ok(full(StatusCode::NOT_FOUND, "no such path\n"));
    };
    let Some(topic) = state.topics.get(topic_name).cloned() else {
        return Ok(full(StatusCode::NOT_FOUND, "no such topic\n"));
    };
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let fault = state
        .scripts
        .lock()
        .get_mut(topic_name)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Fault::Normal);

    let fault = match fault {
        Fault::SlowStart { delay } => {
            tokio::time::sleep(delay).await;
            Fault::Normal
        }
        other => other,
    };
    let label = fault.label();
    state.record(topic_name, label, false);
    if !matches!(
        fault,
        Fault::Normal
            | Fault::Stall
            | Fault::Drip { .. }
            | Fault::CloseMidEvent { .. }
            | Fault::EndAfter { .. }
            | Fault::Garbage(_)
            | Fault::EndlessLine { .. }
    ) {
        // Answered at once: its end is now.
        state.record(topic_name, label, true);
    }
    match fault {
        Fault::Refuse => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "scripted refusal",
        )),
        Fault::Status { code, retry_after } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            // A body that looks like SSE: a client must not parse it.
            let mut response = full(status, "id: 999\ndata: this error body is not an event\n\n");
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            Ok(response)
        }
        Fault::WrongContentType => {
            let mut response = full(StatusCode::OK, "{\"not\":\"a stream\"}\n");
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(response)
        }
        Fault::Redirect { code, location } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::FOUND);
            let mut response = full(status, "");
            if let Some(value) = location.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(LOCATION, value);
            }
            Ok(response)
        }
        stream_fault => {
            let (tx, rx) = mpsc::channel(64);
            let guard = ActiveGuard::new(&state, &topic.name, label);
            tokio::spawn(play(
                topic,
                stream_fault,
                last_event_id,
                state.heartbeat,
                tx,
                state.stop.clone(),
                guard,
            ));
            Ok(event_stream(ChannelBody { rx }))
        }
    }
}

/// A packed stream of topics that all exist (404 naming the first that
/// does not; 400 for a malformed list), resuming after `Last-Event-ID`.
fn serve_packed(
    state: &Arc<State>,
    req: &Request<Incoming>,
    asked: Result<(packed::Style, Vec<String>), String>,
) -> Response<SimBody> {
    let (style, topics) = match asked {
        Ok(asked) => asked,
        Err(why) => return full(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    if let Some(unknown) = topics.iter().find(|t| !state.topics.contains_key(*t)) {
        return full(StatusCode::NOT_FOUND, format!("no such topic: {unknown}\n"));
    }
    let after = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let name = topics.join(",");
    state.record(&name, "packed", false);
    let set = topics.iter().map(|t| Arc::from(t.as_str())).collect();
    let (tx, rx) = mpsc::channel(64);
    let guard = ActiveGuard::new(state, &name, "packed");
    tokio::spawn(packed::play(
        state.firehose.clone(),
        style,
        set,
        after,
        state.heartbeat,
        tx,
        state.stop.clone(),
        guard,
    ));
    event_stream(ChannelBody { rx })
}

/// Counts a stream as active while it lives, and logs its end.
struct ActiveGuard {
    state: Arc<State>,
    topic: String,
    fault: &'static str,
}

impl ActiveGuard {
    fn new(state: &Arc<State>, topic: &str, fault: &'static str) -> Self {
        state.active_streams.fetch_add(1, Ordering::Relaxed);
        Self {
            state: state.clone(),
            topic: topic.to_string(),
            fault,
        }
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.state.active_streams.fetch_sub(1, Ordering::Relaxed);
        self.state.record(&self.topic, self.fault, true);
    }
}

/// Plays one stream: replay, then live events and heartbeats, shaped by
/// `fault`. Ends when the client goes (`tx` fails), the script ends it, or
/// the simulator stops.
async fn play(
    topic: Arc<Topic>,
    fault: Fault,
    last_event_id: Option<u64>,
    heartbeat: Duration,
    tx: mpsc::Sender<Bytes>,
    stop: watch::Receiver<bool>,
    _active: ActiveGuard,
) {
    let mut closed = topic.kick.subscribe();
    let run = async {
        if fault == Fault::Stall {
            // Headers only; keep the sender so the body stays open, until
            // the client goes.
            tx.closed().await;
            return;
        }
        if let Fault::EndlessLine { max_bytes } = fault {
            let _ = tx.send(Bytes::from_static(b"data: ")).await;
            let block = Bytes::from(vec![b'x'; 8192]);
            let mut sent = 0;
            while sent < max_bytes {
                if tx.send(block.clone()).await.is_err() {
                    return;
                }
                sent += block.len();
            }
            return;
        }
        let _ = tx
            .send(Bytes::from_static(b": ssegate upstream simulator\n\n"))
            .await;
        let (replay, mut live) = topic.subscribe(last_event_id);
        let mut sent_events = 0usize;
        let mut garbage_sent = false;
        let mut ticker = tokio::time::interval(heartbeat);
        ticker.tick().await;
        let mut pending: VecDeque<FeedEvent> = replay.into();
        loop {
            let event = match pending.pop_front() {
                Some(event) => event,
                None => tokio::select! {
                    received = live.recv() => match received {
                        Ok(event) => event,
                        // Too slow for the live feed: end the stream; the
                        // client resumes with Last-Event-ID.
                        Err(_) => return,
                    },
                    _ = ticker.tick() => {
                        if tx.send(Bytes::from_static(b": heartbeat\n")).await.is_err() {
                            return;
                        }
                        continue;
                    }
                },
            };
            match &fault {
                Fault::CloseMidEvent { after_events } if sent_events == *after_events => {
                    let half = event.wire.slice(..event.wire.len() / 2);
                    let _ = tx.send(half).await;
                    return;
                }
                Fault::EndAfter { after_events } if sent_events == *after_events => return,
                Fault::Garbage(kind) if !garbage_sent => {
                    garbage_sent = true;
                    if tx.send(Bytes::from_static(kind.bytes())).await.is_err() {
                        return;
                    }
                }
                _ => {}
            }
            let wire = match fault {
                Fault::Garbage(Garbage::CrOnly) => Bytes::from(
                    event
                        .wire
                        .iter()
                        .map(|&b| if b == b'\n' { b'\r' } else { b })
                        .collect::<Vec<u8>>(),
                ),
                _ => event.wire,
            };
            if let Fault::Drip { interval } = fault {
                for i in 0..wire.len() {
                    if tx.send(wire.slice(i..=i)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(interval).await;
                }
            } else if tx.send(wire).await.is_err() {
                return;
            }
            sent_events += 1;
        }
    };
    tokio::select! {
        () = run => {}
        () = stopped(stop) => {}
        _ = closed.changed() => {}
    }
}
