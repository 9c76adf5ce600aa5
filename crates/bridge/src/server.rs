//! The listeners: client streams (HTTP/1.1 and HTTP/2) and the admin
//! endpoints, with admission, resume parsing, and the drain on shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ALLOW, AUTHORIZATION, CACHE_CONTROL,
    CONTENT_TYPE, COOKIE, HeaderValue, ORIGIN, RETRY_AFTER, VARY, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use serde_json::json;
use sse_conn_pool::{Connector, Pool, PoolError};
use sse_health::Reports;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::auth::{Authenticator, Denied, Principals};
use crate::body::{BodyParts, SseBody};
use crate::config::{BridgeConfig, ConfigError};
use crate::h1;
use crate::hub::{Hub, Start};
use crate::limits::{Limits, Refusal};
use crate::metrics;
use crate::queue::{Closed, Queue};

pub(crate) type Reply = Response<UnsyncBoxBody<Bytes, Infallible>>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A built-in page (no external assets: nothing else is fetched).
fn html(page: impl Into<Bytes>) -> Reply {
    let mut reply = text(StatusCode::OK, page);
    let headers = reply.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    reply
}

fn refuse(status: StatusCode, retry_after: Duration, body: String) -> Reply {
    let mut response = text(status, body);
    if let Ok(value) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

fn json_reply(value: &serde_json::Value) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(crate) struct Shared<C: Connector> {
    pub(crate) config: Arc<BridgeConfig>,
    pub(crate) hub: Arc<Hub<C>>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) draining: AtomicBool,
    pub(crate) drain: watch::Sender<Option<Instant>>,
    pub(crate) prometheus: Option<PrometheusHandle>,
    pub(crate) reports: Mutex<Reports>,
    /// Spreads streams over the drain window (golden-ratio sequence).
    pub(crate) spread: AtomicU64,
    /// Client connections open (sockets), for baselines.
    pub(crate) connections: AtomicU64,
    /// Whether the admin listener is bound to loopback only (then the
    /// actions need no token).
    pub(crate) admin_loopback: bool,
    /// `write_timeout` in force (reloadable), milliseconds.
    pub(crate) write_timeout_ms: AtomicU64,
    /// Status-page event streams open (at most [`MAX_STATUS_STREAMS`]).
    pub(crate) status_streams: AtomicU64,
    /// The subscriber token verifier (replaced on reload).
    pub(crate) auth: parking_lot::RwLock<Arc<Authenticator>>,
    /// Streams per token holder.
    pub(crate) principals: Arc<Principals>,
    /// Status-page logins (admin token set).
    pub(crate) sessions: crate::session::Sessions,
}

/// Status pages watching at once, per gateway.
const MAX_STATUS_STREAMS: u64 = 16;

/// The status page: a table of the upstream streams, fed by
/// `/admin/events`. No external assets.
const STATUS_PAGE: &str = include_str!("status.html");

/// The demo page (`bridge.demo_page`): an `EventSource` on the topics in
/// its URL. No external assets.
const DEMO_PAGE: &str = include_str!("demo.html");

/// The status page's login form (admin token set, no session yet).
const LOGIN_PAGE: &str = include_str!("login.html");

/// Live heap figures, from a counting global allocator the binary installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes allocated and not freed.
    pub bytes: u64,
    /// Blocks allocated and not freed.
    pub blocks: u64,
}

static HEAP_PROBE: std::sync::OnceLock<fn() -> HeapStats> = std::sync::OnceLock::new();

/// Installs the process's heap probe (once; later calls are ignored), read
/// by `/debug/vars`. The allocator is process-wide, so the probe is too.
pub fn set_heap_probe(probe: fn() -> HeapStats) {
    let _ = HEAP_PROBE.set(probe);
}

/// Changes the process's log filter (an `EnvFilter` directive such as
/// `info,sse_conn_pool=debug`); `Err` says why a directive was refused.
pub type LogControl = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

struct LogState {
    control: LogControl,
    current: Mutex<String>,
}

static LOG_CONTROL: std::sync::OnceLock<LogState> = std::sync::OnceLock::new();

/// Installs the process's log control (once; later calls are ignored), for
/// `GET`/`POST /admin/log-level`. Logging is process-wide, so this is too.
/// `current` is the filter in force now.
pub fn set_log_control(current: impl Into<String>, control: LogControl) {
    let _ = LOG_CONTROL.set(LogState {
        control,
        current: Mutex::new(current.into()),
    });
}

/// Changes the log filter through the installed control (and records it
/// as current).
///
/// # Errors
///
/// No control is installed, or it refused the directive.
pub fn apply_log_filter(filter: &str) -> Result<(), String> {
    let state = LOG_CONTROL
        .get()
        .ok_or_else(|| "no log control installed".to_string())?;
    (state.control)(filter)?;
    *state.current.lock() = filter.to_string();
    Ok(())
}

/// `GET` shows the log filter, `POST ?filter=...` changes it.
fn log_level(req: &Request<Incoming>) -> Reply {
    let Some(state) = LOG_CONTROL.get() else {
        return text(
            StatusCode::NOT_FOUND,
            "this process does not let the log level change at runtime\n",
        );
    };
    if req.method() == Method::GET {
        return text(StatusCode::OK, format!("{}\n", state.current.lock()));
    }
    let filter = req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "filter")
            .map(|(_, v)| v.into_owned())
    });
    let Some(filter) = filter.filter(|f| !f.trim().is_empty() && f.len() <= 1024) else {
        return text(
            StatusCode::BAD_REQUEST,
            "give the new filter: POST /admin/log-level?filter=info,sse_conn_pool=debug\n",
        );
    };
    match (state.control)(&filter) {
        Ok(()) => {
            let previous = std::mem::replace(&mut *state.current.lock(), filter.clone());
            tracing::warn!(%previous, now = %filter, "admin action: log filter changed");
            text(StatusCode::OK, format!("{filter}\n"))
        }
        Err(why) => text(
            StatusCode::BAD_REQUEST,
            format!("refused filter {filter:?}: {why}\n"),
        ),
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Applies a new configuration's reloadable settings to a running gateway
/// (cheap to clone; get one from [`GatewayHandle::reloader`]).
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
    /// Applies `config`'s limits and thresholds without dropping anyone:
    /// `max_subscribers`, `max_per_ip`, `new_streams_per_sec`,
    /// `write_timeout`, and the pool's `max_streams`. Returns the keys that
    /// changed and were applied, and those that changed but need a restart.
    ///
    /// # Errors
    ///
    /// `config` is invalid: nothing is applied.
    pub fn reload(
        &self,
        config: &BridgeConfig,
        max_streams: usize,
    ) -> Result<(Vec<&'static str>, Vec<&'static str>), ConfigError> {
        config.validate()?;
        if max_streams == 0 {
            return Err(ConfigError {
                key: "max_streams",
                reason: "must be at least 1".into(),
            });
        }
        let old = &self.shared.config;
        let mut applied = Vec::new();
        let changed = |a: bool, key, list: &mut Vec<&'static str>| {
            if a {
                list.push(key);
            }
        };
        changed(
            old.max_subscribers != config.max_subscribers,
            "max_subscribers",
            &mut applied,
        );
        changed(
            old.max_per_ip != config.max_per_ip,
            "max_per_ip",
            &mut applied,
        );
        changed(
            old.new_streams_per_sec != config.new_streams_per_sec,
            "new_streams_per_sec",
            &mut applied,
        );
        let timeout = duration_ms(config.write_timeout);
        changed(
            self.shared.write_timeout_ms.load(Ordering::Relaxed) != timeout,
            "write_timeout",
            &mut applied,
        );
        let pool = self.shared.hub.pool();
        changed(
            pool.max_streams() != max_streams,
            "upstream.max_streams",
            &mut applied,
        );
        self.shared.limits.set(
            config.max_subscribers,
            config.max_per_ip,
            config.new_streams_per_sec,
        );
        self.shared
            .write_timeout_ms
            .store(timeout, Ordering::Relaxed);
        pool.set_max_streams(max_streams);
        // Token files and keys are read again (validate checked them): a
        // revoked token is refused from now on; streams open keep going
        // until their token expires.
        if let Ok(authenticator) = config.auth.load() {
            if config.auth.enabled() || self.shared.auth.read().enabled() {
                applied.push("auth");
            }
            *self.shared.auth.write() = Arc::new(authenticator);
            self.shared
                .principals
                .set_max(config.auth.max_streams_per_token);
        }
        let mut restart = Vec::new();
        changed(old.listen != config.listen, "listen", &mut restart);
        changed(
            old.admin_listen != config.admin_listen,
            "admin_listen",
            &mut restart,
        );
        changed(old.heartbeat != config.heartbeat, "heartbeat", &mut restart);
        changed(
            old.queue_events != config.queue_events,
            "queue_events",
            &mut restart,
        );
        changed(
            old.queue_bytes != config.queue_bytes,
            "queue_bytes",
            &mut restart,
        );
        changed(
            old.replay_events != config.replay_events,
            "replay_events",
            &mut restart,
        );
        changed(
            old.replay_bytes != config.replay_bytes,
            "replay_bytes",
            &mut restart,
        );
        changed(
            old.replay_age != config.replay_age,
            "replay_age",
            &mut restart,
        );
        changed(
            old.replay_linger != config.replay_linger,
            "replay_linger",
            &mut restart,
        );
        changed(
            old.policy != config.policy || old.policies != config.policies,
            "policies",
            &mut restart,
        );
        changed(
            old.admin_token != config.admin_token,
            "admin_token",
            &mut restart,
        );
        changed(
            old.cors_origins != config.cors_origins
                || old.cors_credentials != config.cors_credentials,
            "cors",
            &mut restart,
        );
        Ok((applied, restart))
    }
}

/// A way to reload the configuration (from its file): the binary installs
/// one; `POST /admin/reload` calls it. `Ok` describes what changed.
pub type ReloadHook = Box<dyn Fn() -> Result<String, String> + Send + Sync>;

static RELOAD_HOOK: std::sync::OnceLock<ReloadHook> = std::sync::OnceLock::new();

/// Installs the process's reload hook (once; later calls are ignored).
pub fn set_reload_hook(hook: ReloadHook) {
    let _ = RELOAD_HOOK.set(hook);
}

/// A running gateway. [`shutdown`](Self::shutdown) drains it.
pub struct GatewayHandle<C: Connector> {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared<C>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Starts the gateway on `config.listen` and `config.admin_listen` in front
/// of `pool`. `prometheus` renders `/metrics` (install its recorder first).
///
/// # Errors
///
/// The configuration is invalid, or a listener cannot bind.
pub async fn start<C: Connector>(
    config: BridgeConfig,
    pool: Pool<C>,
    prometheus: Option<PrometheusHandle>,
) -> io::Result<GatewayHandle<C>> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let listener = listen(config.listen, config.send_buffer)?;
    let admin = TcpListener::bind(config.admin_listen).await?;
    let (addr, admin_addr) = (listener.local_addr()?, admin.local_addr()?);
    let write_timeout = config.write_timeout;
    let authenticator = config
        .auth
        .load()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let principals = Principals::new(config.auth.max_streams_per_token);
    let config = Arc::new(config);
    let run = run_token();
    let limits = Limits::new(
        config.max_subscribers,
        config.max_per_ip,
        config.new_streams_per_sec,
    );
    let shared = Arc::new(Shared {
        hub: Hub::new(pool, config.clone(), run.into()),
        config,
        limits,
        draining: AtomicBool::new(false),
        drain: watch::channel(None).0,
        prometheus,
        reports: Mutex::new(Reports::new(Instant::now().into_std())),
        spread: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        admin_loopback: admin_addr.ip().is_loopback(),
        write_timeout_ms: AtomicU64::new(duration_ms(write_timeout)),
        status_streams: AtomicU64::new(0),
        auth: parking_lot::RwLock::new(Arc::new(authenticator)),
        principals,
        sessions: crate::session::Sessions::default(),
    });
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(accept(
        listener,
        shared.clone(),
        stopped.clone(),
        Role::Streams,
    ));
    tasks.spawn(accept(admin, shared.clone(), stopped.clone(), Role::Admin));
    tasks.spawn(housekeeping(shared.clone(), stopped));
    tracing::info!(%addr, %admin_addr, run = shared.hub.run_token(), "gateway listening");
    Ok(GatewayHandle {
        addr,
        admin_addr,
        shared,
        stop,
        tasks,
    })
}

impl<C: Connector> GatewayHandle<C> {
    /// A handle that applies reloaded settings to this gateway.
    pub fn reloader(&self) -> Reloader<C> {
        Reloader {
            shared: self.shared.clone(),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Client streams open now.
    pub fn streams(&self) -> usize {
        self.shared.limits.total()
    }

    /// Client sockets open now.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Topics with a subscriber, and client IPs with a stream (registry
    /// sizes, for baselines).
    pub fn registries(&self) -> (usize, usize) {
        (self.shared.hub.topics().len(), self.shared.limits.ips())
    }

    /// The pool behind the gateway.
    pub fn pool(&self) -> &Pool<C> {
        self.shared.hub.pool()
    }

    /// Drains and stops: readiness false and new streams refused at once;
    /// every stream ends with a `retry:` hint, spread over the drain window;
    /// then the listeners stop and the pool closes. Returns within the drain
    /// deadline (streams still open then are cut).
    pub async fn shutdown(mut self) {
        let started = Instant::now();
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shared.drain.send_replace(Some(started));
        tracing::info!(streams = self.streams(), "draining");
        let deadline = started + self.shared.config.drain_deadline;
        // Streams end by themselves within the spread; wait for them, but
        // keep time for closing the upstreams.
        let streams_by = deadline - self.shared.config.drain_deadline / 4;
        while self.shared.limits.total() > 0 && Instant::now() < streams_by {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.shared.hub.close_all(Closed::Upstream);
        let _ = self.stop.send(true);
        let tasks = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, tasks).await.is_err() {
            self.tasks.abort_all();
        }
        let _ = tokio::time::timeout_at(deadline, self.shared.hub.pool().close()).await;
        tracing::info!(elapsed = ?started.elapsed(), "stopped");
    }
}

/// The streams' listener, with a deep accept queue: after a restart or a
/// network blip thousands of clients reconnect within a second or two, and
/// a SYN dropped from a full queue costs its client a second (the first
/// retransmission), not a few microseconds.
///
/// `TCP_NODELAY` and `SO_SNDBUF` (`bridge.send_buffer`) are set here too: on
/// Linux every accepted socket inherits them, two system calls fewer per
/// connection when thousands arrive at once (elsewhere `serve` sets them).
fn listen(addr: SocketAddr, send_buffer: usize) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    if send_buffer > 0 {
        socket.set_send_buffer_size(u32::try_from(send_buffer).unwrap_or(u32::MAX))?;
    }
    socket.bind(addr)?;
    // The kernel caps it at net.core.somaxconn (4096 by default).
    socket.listen(4096)
}

/// A token distinguishing this run's ids from an earlier run's.
fn run_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // The low 64 bits of the clock are what varies between runs.
    let low = u64::try_from(nanos & u128::from(u64::MAX)).unwrap_or(0);
    let mixed = low ^ (u64::from(std::process::id()) << 32);
    let mut n = mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 24;
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut token = String::new();
    for _ in 0..8 {
        token.push(char::from(alphabet[(n % 36) as usize]));
        n /= 36;
    }
    token
}

/// Lets a repeated warning through once per interval, counting the rest.
struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last one)` if this one may be logged.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Waits until `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[derive(Clone, Copy)]
enum Role {
    Streams,
    Admin,
}

async fn accept<C: Connector>(
    listener: TcpListener,
    shared: Arc<Shared<C>>,
    mut stop: watch::Receiver<bool>,
    role: Role,
) {
    let mut connections = JoinSet::new();
    let mut accept_errors = RateLimited::new(Duration::from_secs(10));
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: back off, go on, and say
                    // so once per interval, not 20 times a second.
                    if let Some(suppressed) = accept_errors.allow(Instant::now()) {
                        tracing::warn!(error = %e, suppressed, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let shared = shared.clone();
        let stop = stop.clone();
        connections.spawn(serve(socket, peer, shared, stop, role));
        while connections.try_join_next().is_some() {}
    }
    // Connections finish their graceful shutdown; the caller bounds this.
    while connections.join_next().await.is_some() {}
}

async fn serve<C: Connector>(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared<C>>,
    mut stop: watch::Receiver<bool>,
    role: Role,
) {
    let mut socket = socket;
    // A stream socket inherits these from its listener on Linux (`listen`).
    let inherited = matches!(role, Role::Streams) && cfg!(target_os = "linux");
    if !inherited {
        let _ = socket.set_nodelay(true);
    }
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let kill = Arc::new(Notify::new());
    match role {
        Role::Admin => {
            Box::pin(serve_hyper(socket, peer, &shared, &mut stop, role, &kill)).await;
        }
        Role::Streams => {
            if !inherited && shared.config.send_buffer > 0 {
                let _ =
                    socket2::SockRef::from(&socket).set_send_buffer_size(shared.config.send_buffer);
            }
            // Subscriptions over HTTP/1.1 take the fast path (see `h1`);
            // everything else goes to hyper, from the first byte.
            match h1::read_head(&mut socket, shared.config.header_read_timeout).await {
                h1::Head::Stream(req) => {
                    let origin = req.headers().get(ORIGIN).cloned();
                    let mut reply = stream(&shared, req, peer.ip(), kill.clone());
                    cors(&shared.config, origin.as_ref(), &mut reply);
                    // Not raced with `stop`: a stream ends in the drain,
                    // before the listeners stop; one still open at the
                    // deadline is aborted with its task. (A select here
                    // would poll the stop channel, shared by every stream,
                    // at each of this stream's events.)
                    let _ = h1::respond(&mut socket, reply, &kill).await;
                }
                h1::Head::Other(read) => {
                    let io = h1::Rewind::new(read, socket);
                    Box::pin(serve_hyper(io, peer, &shared, &mut stop, role, &kill)).await;
                }
                h1::Head::Gone => {}
            }
        }
    }
    shared.connections.fetch_sub(1, Ordering::SeqCst);
}

/// One connection through hyper (HTTP/1.1 and HTTP/2): the admin listener,
/// and whatever the streams' fast path does not take.
async fn serve_hyper<C: Connector, I>(
    io: I,
    peer: SocketAddr,
    shared: &Arc<Shared<C>>,
    stop: &mut watch::Receiver<bool>,
    role: Role,
    kill: &Arc<Notify>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let (shared, kill) = (shared.clone(), kill.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (shared, kill) = (shared.clone(), kill.clone());
            async move {
                Ok::<_, Infallible>(match role {
                    Role::Streams => {
                        let origin = req.headers().get(ORIGIN).cloned();
                        let mut reply = if req.method() == Method::OPTIONS {
                            preflight()
                        } else if shared.config.demo_page && req.uri().path() == "/" {
                            html(DEMO_PAGE)
                        } else {
                            stream(&shared, req, peer.ip(), kill)
                        };
                        cors(&shared.config, origin.as_ref(), &mut reply);
                        reply
                    }
                    Role::Admin => match (req.method(), req.uri().path()) {
                        (&Method::POST, "/admin/login") => admin_login(&shared, req).await,
                        (&Method::POST, "/admin/logout") => admin_logout(&shared, &req),
                        _ => admin(&shared, &req),
                    },
                })
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    tokio::select! {
        _ = conn.as_mut() => {}
        // A stalled slow consumer: drop the socket (nothing else frees it).
        () = kill.notified() => {}
        () = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
        }
    }
}

/// Which topics a request asks for, and its resume id, or why it is bad.
fn parse_request<B>(req: &Request<B>) -> Result<(Vec<String>, Option<String>), String> {
    let path = req.uri().path();
    let mut topics = Vec::new();
    let mut last_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let query = req.uri().query().unwrap_or("");
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "topic" => topics.push(value.into_owned()),
            // A browser cannot set the header on its first request.
            "lastEventId" if last_id.is_none() => last_id = Some(value.into_owned()),
            _ => {}
        }
    }
    if let Some(topic) = path.strip_prefix("/v1/stream/") {
        if !topics.is_empty() {
            return Err("give the topic in the path or as ?topic=, not both".into());
        }
        let decoded = url::form_urlencoded::parse(format!("t={topic}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        topics.push(decoded);
    } else if path != "/v1/stream" {
        return Err(String::new());
    }
    Ok((topics, last_id.filter(|id| !id.is_empty())))
}

/// Where each topic starts, from the resume id.
fn starts(run: &str, topics: &[String], last_id: Option<&str>) -> Vec<Start> {
    let Some(id) = last_id else {
        return vec![Start::Now; topics.len()];
    };
    let Some((token, rest)) = id.split_once(':') else {
        return vec![Start::Reset; topics.len()];
    };
    if token != run {
        return vec![Start::Reset; topics.len()];
    }
    if !rest.contains('=') {
        return match (rest.parse::<u64>(), topics.len()) {
            (Ok(seq), 1) => vec![Start::After(seq)],
            _ => vec![Start::Reset; topics.len()],
        };
    }
    let mut positions = HashMap::new();
    for part in rest.split(',') {
        let Some((topic, seq)) = part.split_once('=') else {
            return vec![Start::Reset; topics.len()];
        };
        let Ok(seq) = seq.parse::<u64>() else {
            return vec![Start::Reset; topics.len()];
        };
        positions.insert(topic, seq);
    }
    topics
        .iter()
        .map(|t| {
            positions
                .get(t.as_str())
                .map_or(Start::Now, |&s| Start::After(s))
        })
        .collect()
}

fn stream<C: Connector, B>(
    shared: &Arc<Shared<C>>,
    req: Request<B>,
    ip: IpAddr,
    kill: Arc<Notify>,
) -> Reply {
    let config = &shared.config;
    let (mut topics, last_id) = match parse_request(&req) {
        Ok(parsed) => parsed,
        Err(why) if why.is_empty() => {
            return text(
                StatusCode::NOT_FOUND,
                "not found: use /v1/stream/{topic} or /v1/stream?topic=A&topic=B\n",
            );
        }
        Err(why) => return text(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    if shared.draining.load(Ordering::SeqCst) {
        metrics::record_refused("draining");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            config.retry_hint,
            "the gateway is shutting down\n".into(),
        );
    }
    if topics.is_empty() {
        return text(StatusCode::BAD_REQUEST, "no topic: add ?topic=NAME\n");
    }
    if topics.len() > config.max_topics_per_connection {
        metrics::record_refused("too_many_topics");
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "{} topics; at most {} per stream\n",
                topics.len(),
                config.max_topics_per_connection
            ),
        );
    }
    let unique = topics.len();
    topics.sort();
    topics.dedup();
    if topics.len() != unique {
        return text(StatusCode::BAD_REQUEST, "a topic is named twice\n");
    }
    for topic in &topics {
        if let Err(e) = shared.hub.pool().check_topic(topic) {
            metrics::record_refused("invalid_topic");
            return text(StatusCode::BAD_REQUEST, format!("{e}\n"));
        }
    }
    // Authorised before anything is sent: a resume replays only topics the
    // token may read, like live events.
    let authenticator = shared.auth.read().clone();
    let grant = match authenticator.check(req.headers(), req.uri().query(), &topics) {
        Ok(grant) => grant,
        Err(Denied::Unauthenticated(why)) => {
            metrics::record_refused("unauthenticated");
            let mut reply = text(StatusCode::UNAUTHORIZED, format!("unauthorized: {why}\n"));
            let challenge = format!(
                "Bearer realm=\"ssegate\", error=\"invalid_token\", error_description=\"{}\"",
                why.replace(['"', '\\'], "'")
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                reply.headers_mut().insert(WWW_AUTHENTICATE, value);
            }
            return reply;
        }
        Err(Denied::Forbidden(topic)) => {
            metrics::record_refused("forbidden");
            return text(
                StatusCode::FORBIDDEN,
                format!("forbidden: this token may not read the topic `{topic}`\n"),
            );
        }
    };
    let (principal, expires) = match &grant {
        None => (None, None),
        Some(grant) => {
            let Some(guard) = shared.principals.admit(grant.principal.clone()) else {
                metrics::record_refused("max_per_token");
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    config.retry_hint,
                    format!(
                        "this token has {} streams open; at most that many at once\n",
                        config.auth.max_streams_per_token
                    ),
                );
            };
            let expires = grant.expires.map(|at| {
                Instant::now()
                    + at.duration_since(std::time::SystemTime::now())
                        .unwrap_or_default()
            });
            (Some(guard), expires)
        }
    };
    let admission = match shared.limits.admit(ip) {
        Ok(admission) => admission,
        Err((refusal, retry)) => {
            metrics::record_refused(refusal.label());
            let (status, why) = match refusal {
                Refusal::Total => (StatusCode::SERVICE_UNAVAILABLE, "the gateway is full"),
                Refusal::PerIp => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many streams from your address",
                ),
                Refusal::Rate => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many new streams; slow down",
                ),
            };
            return refuse(status, retry, format!("{why}\n"));
        }
    };
    let run = shared.hub.run_token().to_string();
    let starts = starts(&run, &topics, last_id.as_deref());
    let queue = Arc::new(Queue::new(config.queue_events, config.queue_bytes, kill));
    let (membership, positions) = match shared.hub.subscribe(&topics, &starts, &queue) {
        Ok(joined) => joined,
        Err(e) => {
            let reason = match e {
                PoolError::InvalidTopic(_) => "invalid_topic",
                PoolError::UnknownStream(_) => "unknown_stream",
                _ => "upstream_capacity",
            };
            metrics::record_refused(reason);
            return match e {
                PoolError::InvalidTopic(_) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
                PoolError::UnknownStream(_) => text(StatusCode::NOT_FOUND, format!("{e}\n")),
                PoolError::AtCapacity { retry_after, .. }
                | PoolError::HostAtCapacity { retry_after, .. } => refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    retry_after,
                    format!("{e}\n"),
                ),
                _ => refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    config.retry_hint,
                    format!("{e}\n"),
                ),
            };
        }
    };
    // Golden-ratio steps spread streams evenly over the drain window.
    let n = shared.spread.fetch_add(1, Ordering::Relaxed);
    let drain_offset = (n as f64 * 0.618_033_988_749_895).fract();
    let mut first = sse_parser::encode_retry(config.retry_hint).to_vec();
    first.push(b'\n');
    let span = tracing::info_span!("subscriber", %ip, topics = %topics.join(","));
    let body = SseBody::new(BodyParts {
        span,
        queue,
        topics: topics.iter().map(|t| Arc::from(t.as_str())).collect(),
        positions,
        run: run.into(),
        first: Bytes::from(first),
        heartbeat: config.heartbeat,
        drain: shared.drain.subscribe(),
        drain_offset,
        drain_spread: config.drain_spread,
        retry_hint: config.retry_hint,
        membership,
        admission,
        principal,
        expires,
    });
    let mut response = Response::new(body.boxed_unsync());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx must not buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The answer to a CORS preflight (or a plain OPTIONS): what the streams
/// accept. Whether the origin may use them is added by [`cors`].
fn preflight() -> Reply {
    let mut reply = text(StatusCode::NO_CONTENT, "");
    let headers = reply.headers_mut();
    headers.insert(ALLOW, HeaderValue::from_static("GET, OPTIONS"));
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET"),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Last-Event-ID, Authorization, Cache-Control"),
    );
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    reply
}

/// Lets a page on an allowed origin read the response (every response,
/// errors included, so that the page can read why it was refused).
fn cors(config: &BridgeConfig, origin: Option<&HeaderValue>, reply: &mut Reply) {
    let headers = reply.headers_mut();
    headers.append(VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin else { return };
    let any = config.cors_origins.iter().any(|o| o == "*");
    let listed = origin
        .to_str()
        .is_ok_and(|o| config.cors_origins.iter().any(|allowed| allowed == o));
    if !(any || listed) {
        return;
    }
    if any && !config.cors_credentials {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    } else {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    if config.cors_credentials {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

/// `POST /admin/login` (the status page's form): the admin token, as the
/// form field `token`, opens a browser session (see `session.rs`).
async fn admin_login<C: Connector>(shared: &Arc<Shared<C>>, req: Request<Incoming>) -> Reply {
    use crate::session::{Login, MAX_FORM, set_cookie, token_from_form};
    let Some(token) = shared.config.admin_token.clone() else {
        return text(
            StatusCode::NOT_FOUND,
            "no bridge.admin_token is set: the status page needs no login\n",
        );
    };
    let body = http_body_util::Limited::new(req.into_body(), MAX_FORM).collect();
    let form = match tokio::time::timeout(shared.config.header_read_timeout, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the login form is at most {MAX_FORM} bytes\n"),
            );
        }
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                "the login form came too slowly\n",
            );
        }
    };
    let presented = token_from_form(&form);
    let login = shared
        .sessions
        .login(presented.as_deref(), |p| token.matches(p));
    metrics::record_admin_sessions(shared.sessions.len());
    match login {
        Login::Session(id) => {
            tracing::info!("admin: a browser session was opened");
            let mut reply = text(StatusCode::SEE_OTHER, "");
            let headers = reply.headers_mut();
            headers.insert(http::header::LOCATION, HeaderValue::from_static("/"));
            if let Ok(cookie) = HeaderValue::from_str(&set_cookie(Some(&id))) {
                headers.insert(http::header::SET_COOKIE, cookie);
            }
            reply
        }
        Login::Wrong => {
            tracing::warn!("admin: a login with a wrong token");
            let mut reply = html(LOGIN_PAGE.replace(
                "<!--message-->",
                "<p class=\"error\">That is not the admin token.</p>",
            ));
            *reply.status_mut() = StatusCode::UNAUTHORIZED;
            reply
        }
        Login::Throttled => refuse(
            StatusCode::TOO_MANY_REQUESTS,
            Duration::from_secs(60),
            "too many wrong tokens: try again in a minute (or use the Authorization header)\n"
                .into(),
        ),
    }
}

/// `POST /admin/logout`: ends the presented session and clears its cookie.
fn admin_logout<C: Connector>(shared: &Arc<Shared<C>>, req: &Request<Incoming>) -> Reply {
    let cookies = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if let Some(id) = crate::session::from_cookies(cookies) {
        shared.sessions.logout(id);
    }
    metrics::record_admin_sessions(shared.sessions.len());
    let mut reply = text(StatusCode::SEE_OTHER, "");
    let headers = reply.headers_mut();
    headers.insert(http::header::LOCATION, HeaderValue::from_static("/"));
    if let Ok(cookie) = HeaderValue::from_str(&crate::session::set_cookie(None)) {
        headers.insert(http::header::SET_COOKIE, cookie);
    }
    reply
}

fn admin<C: Connector>(shared: &Arc<Shared<C>>, req: &Request<Incoming>) -> Reply {
    let path = req.uri().path();
    // The probes stay open: orchestrators rarely carry credentials.
    if !matches!(path, "/healthz" | "/readyz")
        && let Some(token) = &shared.config.admin_token
    {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        // A browser's login (the status page: EventSource cannot send
        // headers) authorises reading only: an action always needs the
        // header, so no other page can make a logged-in browser act.
        let reading = matches!(*req.method(), Method::GET | Method::HEAD);
        let session = reading
            && crate::session::from_cookies(
                req.headers()
                    .get_all(COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            )
            .is_some_and(|id| shared.sessions.valid(id));
        if !session && !header.is_some_and(|p| token.matches(p)) {
            if path == "/" && reading {
                let mut reply = html(LOGIN_PAGE);
                *reply.status_mut() = StatusCode::UNAUTHORIZED;
                return reply;
            }
            let mut reply = text(
                StatusCode::UNAUTHORIZED,
                "this admin endpoint needs `Authorization: Bearer <bridge.admin_token>`\n",
            );
            reply.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ssegate admin\""),
            );
            return reply;
        }
    }
    if path == "/admin/log-level" && matches!(*req.method(), Method::GET | Method::POST) {
        if req.method() == Method::POST && !actions_allowed(shared) {
            return actions_forbidden();
        }
        return log_level(req);
    }
    if req.method() == Method::POST && path == "/admin/reload" {
        if !actions_allowed(shared) {
            return actions_forbidden();
        }
        return match RELOAD_HOOK.get() {
            None => text(
                StatusCode::NOT_FOUND,
                "this process has no config file to reload\n",
            ),
            Some(hook) => match hook() {
                Ok(what) => text(StatusCode::OK, format!("{what}\n")),
                Err(why) => text(
                    StatusCode::BAD_REQUEST,
                    format!("reload refused, nothing changed: {why}\n"),
                ),
            },
        };
    }
    if req.method() == Method::POST {
        return action(shared, path);
    }
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET (POST for the actions under /admin)\n",
        );
    }
    match path {
        // Liveness never depends on upstreams.
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/" => html(STATUS_PAGE),
        "/admin/events" => status_events(shared),
        "/readyz" => {
            if shared.draining.load(Ordering::SeqCst) {
                return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
            }
            let readiness = readiness(shared);
            match readiness.reason {
                Some(why) if !readiness.ready => {
                    text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
                }
                _ => text(StatusCode::OK, "ready\n"),
            }
        }
        "/metrics" => match &shared.prometheus {
            Some(handle) => {
                // The process gauges as of this scrape.
                metrics::record_admin_sessions(shared.sessions.len());
                metrics::record_process(
                    rss_bytes(),
                    open_fds(),
                    max_fds(),
                    tokio::runtime::Handle::current()
                        .metrics()
                        .num_alive_tasks(),
                );
                let mut response = text(StatusCode::OK, handle.render());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            None => text(StatusCode::NOT_FOUND, "no metrics recorder installed\n"),
        },
        "/admin/streams" => json_reply(&streams_json(shared)),
        "/debug/vars" if shared.config.debug_vars => json_reply(&debug_vars(shared)),
        "/admin/report" => {
            let window = req
                .uri()
                .query()
                .and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "window")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_else(|| "1h".into());
            let window = match window.as_str() {
                "1h" => Duration::from_secs(3600),
                "24h" => Duration::from_secs(24 * 3600),
                other => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("window {other:?}: use 1h or 24h\n"),
                    );
                }
            };
            let report = shared
                .reports
                .lock()
                .report(Instant::now().into_std(), window);
            json_reply(&json!({
                "window_secs": report.window.as_secs(),
                "attempts": report.attempts,
                "opened": report.opened,
                "failure_ratio": report.failure_ratio,
                "rotations": report.rotations,
                "events": report.events,
                "events_per_sec": report.events_per_sec,
                "peak_events_per_sec": report.peak_events_per_sec,
                "bytes": report.bytes,
                "event_trend": report.event_trend,
                "resources_last": resources_json(report.resources_last),
                "resources_max": resources_json(report.resources_max),
                "rss_growth_bytes": report.rss_growth,
            }))
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: / (status page; POST /admin/login, /admin/logout) /healthz /readyz /metrics /admin/streams /admin/events /admin/report?window=1h|24h /admin/log-level\n",
        ),
    }
}

/// The operator's actions (POST): rotate or reconnect one stream, or
/// rotate them all (make-before-break: subscribers see no gap).
fn actions_allowed<C: Connector>(shared: &Shared<C>) -> bool {
    shared.config.admin_token.is_some() || shared.admin_loopback
}

fn actions_forbidden() -> Reply {
    text(
        StatusCode::FORBIDDEN,
        "admin actions on a non-loopback admin listener need bridge.admin_token\n",
    )
}

fn action<C: Connector>(shared: &Arc<Shared<C>>, path: &str) -> Reply {
    if !actions_allowed(shared) {
        return actions_forbidden();
    }
    let pool = shared.hub.pool();
    if path == "/admin/rotate" {
        let topics: Vec<String> = pool.snapshot().into_iter().map(|s| s.topic).collect();
        let rotating = topics.iter().filter(|t| pool.rotate(t)).count();
        tracing::info!(rotating, "admin action: rotate every stream");
        return json_reply(&json!({"action": "rotate", "streams": rotating}));
    }
    if path == "/admin/disconnect" {
        let subscribers = shared.hub.disconnect(None);
        tracing::info!(subscribers, "admin action: disconnect every subscriber");
        return json_reply(&json!({"action": "disconnect", "subscribers": subscribers}));
    }
    let Some((topic, verb)) = path
        .strip_prefix("/admin/streams/")
        .and_then(|rest| rest.rsplit_once('/'))
    else {
        return text(
            StatusCode::NOT_FOUND,
            "actions: POST /admin/rotate, /admin/disconnect, /admin/streams/{topic}/rotate|reconnect|disconnect\n",
        );
    };
    let done = match verb {
        "rotate" => pool.rotate(topic),
        "reconnect" => pool.reconnect(topic),
        "disconnect" => {
            let subscribers = shared.hub.disconnect(Some(topic));
            tracing::info!(topic, subscribers, "admin action: disconnect subscribers");
            return json_reply(
                &json!({"action": "disconnect", "topic": topic, "subscribers": subscribers}),
            );
        }
        _ => {
            return text(
                StatusCode::NOT_FOUND,
                "actions on a stream: rotate, reconnect, disconnect\n",
            );
        }
    };
    if !done {
        return text(
            StatusCode::NOT_FOUND,
            format!("no upstream stream for topic {topic:?}\n"),
        );
    }
    tracing::info!(topic, action = verb, "admin action");
    let mut reply = json_reply(&json!({"action": verb, "topic": topic}));
    *reply.status_mut() = StatusCode::ACCEPTED;
    reply
}

/// What the status page shows, as one JSON object.
fn snapshot_json<C: Connector>(shared: &Shared<C>) -> serde_json::Value {
    let mut snapshot = streams_json(shared);
    let pool = shared.hub.pool();
    let readiness = readiness(shared);
    let draining = shared.draining.load(Ordering::SeqCst);
    snapshot["pool"] = json!({
        "streams": pool.counts().streams,
        "max_streams": pool.max_streams(),
    });
    snapshot["ready"] = json!(readiness.ready && !draining);
    snapshot["ready_reason"] = json!(if draining {
        "draining".to_string()
    } else {
        readiness.reason.map(|r| r.to_string()).unwrap_or_default()
    });
    snapshot["time_ms"] = json!(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, duration_ms)
    );
    snapshot
}

/// `/admin/events`: a snapshot every 2 s as `event: snapshot` (at most
/// [`MAX_STATUS_STREAMS`] at once; a reader too slow for them skips some).
fn status_events<C: Connector>(shared: &Arc<Shared<C>>) -> Reply {
    if shared.status_streams.fetch_add(1, Ordering::SeqCst) >= MAX_STATUS_STREAMS {
        shared.status_streams.fetch_sub(1, Ordering::SeqCst);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many status pages open\n",
        );
    }
    struct Watching<C: Connector>(Arc<Shared<C>>);
    impl<C: Connector> Drop for Watching<C> {
        fn drop(&mut self) {
            self.0.status_streams.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let watching = Watching(shared.clone());
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        let shared = &watching.0;
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !tx.is_closed() && !shared.draining.load(Ordering::SeqCst) {
            tick.tick().await;
            // Compact JSON has no line breaks: one data line.
            let event = format!("event: snapshot\ndata: {}\n\n", snapshot_json(shared));
            if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
                tx.try_send(Bytes::from(event))
            {
                break;
            }
        }
    });
    let mut reply = Response::new(ChannelBody { rx }.boxed_unsync());
    let headers = reply.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    reply
}

/// A response body fed by a channel; it ends when the sender goes.
struct ChannelBody {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

/// Everything the soak harness compares against its baseline.
fn debug_vars<C: Connector>(shared: &Shared<C>) -> serde_json::Value {
    let pool = shared.hub.pool();
    let counts = pool.counts();
    let snapshot = pool.snapshot();
    let mut phases: HashMap<&'static str, usize> = HashMap::new();
    let (mut attempts, mut opened, mut events) = (0, 0, 0);
    for info in &snapshot {
        *phases
            .entry(sse_conn_pool::metrics::phase_label(info.state.phase))
            .or_default() += 1;
        attempts += info.state.attempts;
        opened += info.state.opened;
        events += info.state.events;
    }
    let auth = shared.principals.counts();
    let heap = HEAP_PROBE.get().map(|probe| {
        let heap = probe();
        json!({"bytes": heap.bytes, "blocks": heap.blocks})
    });
    json!({
        "heap": heap,
        "rss_bytes": rss_bytes(),
        "open_fds": open_fds(),
        "tasks": tokio::runtime::Handle::current().metrics().num_alive_tasks(),
        "client_streams": shared.limits.total(),
        "client_connections": shared.connections.load(Ordering::SeqCst),
        "draining": shared.draining.load(Ordering::SeqCst),
        "registries": {
            "per_ip": shared.limits.ips(),
            "pool_streams": snapshot.len(),
            "pool_subscribers": snapshot.iter().map(|s| s.subscribers).sum::<usize>(),
            "socket_hosts": pool.connections().hosts(),
        },
        // Each group is read under one lock: its equations hold exactly.
        "limits": shared.limits.counts(),
        "pool": {
            "streams": counts.streams,
            "subscribers": counts.subscribers,
            "created": counts.created,
            "removed": counts.removed,
            "pending": pool.pending(),
            "attempts": counts.attempts,
            "connections_opened": counts.connections_opened,
            "events": counts.events,
            "rotations": counts.rotations,
        },
        "hub": shared.hub.stats(),
        // admitted - released == streams; an entry per holder with a stream.
        "auth": {
            "enabled": shared.auth.read().enabled(),
            "jwt_keys": shared.auth.read().jwt_keys(),
            // Status-page logins: at most 64 (see session.rs).
            "admin_sessions": shared.sessions.len(),
            "principals": auth.0,
            "streams": auth.1,
            "admitted": auth.2,
            "released": auth.3,
        },
        "upstream": {
            "phases": phases,
            "sockets": pool.connections().open_sockets(),
            "attempts": attempts,
            "opened": opened,
            "events": events,
        },
        "lifetime": metrics::LIFETIME.json(),
    })
}

fn resources_json(r: sse_health::Resources) -> serde_json::Value {
    json!({
        "upstream_connections": r.connections,
        "subscribers": r.subscribers,
        "rss_bytes": r.rss_bytes,
        "open_fds": r.open_fds,
    })
}

fn streams_json<C: Connector>(shared: &Shared<C>) -> serde_json::Value {
    let clients: HashMap<String, usize> = shared.hub.topics().into_iter().collect();
    let now = Instant::now();
    let streams: Vec<serde_json::Value> = shared
        .hub
        .pool()
        .snapshot()
        .into_iter()
        .map(|info| {
            let s = &info.state;
            json!({
                "topic": info.topic,
                "phase": s.phase.to_string(),
                "reason": s.reason.to_string(),
                "in_phase_secs": now.saturating_duration_since(s.since).as_secs(),
                "clients": clients.get(&info.topic).copied().unwrap_or(0),
                "lingering": info.lingering,
                "attempts": s.attempts,
                "connections_opened": s.opened,
                "rotations": s.rotations,
                "events": s.events,
                "bytes": s.bytes,
                "last_event_id": s.last_event_id,
                "health": format!("{:?}", s.health).to_lowercase(),
                "causes": s.causes,
                "rotations_advised": s.rotations_advised,
            })
        })
        .collect();
    json!({
        "run": shared.hub.run_token(),
        "client_streams": shared.limits.total(),
        "upstream_sockets": shared.hub.pool().connections().open_sockets(),
        "streams": streams,
    })
}

/// sse-health's pool verdict: not ready while more than half of the
/// upstream streams have been unhealthy for a minute.
fn readiness<C: Connector>(shared: &Shared<C>) -> sse_health::Readiness {
    let verdicts: Vec<sse_health::Verdict> = shared
        .hub
        .pool()
        .snapshot()
        .into_iter()
        .map(|s| sse_health::Verdict {
            level: s.state.health,
            since: s.state.health_since.into_std(),
            causes: Vec::new(),
        })
        .collect();
    sse_health::readiness(
        &sse_health::ReadinessConfig::default(),
        Instant::now().into_std(),
        &verdicts,
    )
}

/// Every few seconds: disconnect stalled subscribers, record the health,
/// pool and process gauges, and feed the rolling report.
async fn housekeeping<C: Connector>(shared: Arc<Shared<C>>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (0u64, 0u64, 0u64, 0u64);
    // Counting descriptors reads /proc/self/fd, one entry per client: with
    // 10,000 subscribers it was a sixth of an idle gateway's CPU. Every
    // sixth tick here; `/metrics` counts afresh at each scrape.
    let mut fds = open_fds();
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stopped(&mut stop) => return,
        }
        let now = Instant::now();
        let write_timeout = Duration::from_millis(shared.write_timeout_ms.load(Ordering::Relaxed));
        let stalled = shared.hub.sweep(now, write_timeout);
        if stalled > 0 {
            tracing::warn!(stalled, "disconnected subscribers that stopped reading");
        }
        let pool = shared.hub.pool();
        let mut levels = [0usize; 3];
        for stream in pool.snapshot() {
            levels[match stream.state.health {
                sse_health::Level::Healthy => 0,
                sse_health::Level::Degraded => 1,
                sse_health::Level::Unhealthy => 2,
            }] += 1;
        }
        sse_health::metrics::record_levels(levels[0], levels[1], levels[2]);
        let counts = pool.counts();
        let sockets = pool.connections().open_sockets();
        sse_health::metrics::record_pool(&readiness(&shared), counts.streams, pool.max_streams());
        let resources = sse_health::Resources {
            connections: sockets as u64,
            subscribers: shared.limits.total() as u64,
            rss_bytes: rss_bytes(),
            open_fds: {
                ticks += 1;
                if ticks.is_multiple_of(6) {
                    fds = open_fds();
                }
                fds
            },
        };
        metrics::record_process(
            resources.rss_bytes,
            resources.open_fds,
            max_fds(),
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
        );
        // Lifetime totals (removed streams included): count growth only.
        let totals = (
            counts.attempts,
            counts.connections_opened,
            counts.events,
            counts.bytes,
        );
        let mut reports = shared.reports.lock();
        let minute = reports.current(now.into_std());
        minute.attempts += totals.0.saturating_sub(last.0);
        minute.opened += totals.1.saturating_sub(last.1);
        minute.events += totals.2.saturating_sub(last.2);
        minute.bytes += totals.3.saturating_sub(last.3);
        minute.resources = resources;
        last = totals;
    }
}

/// Resident memory from /proc (0 where there is none).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The soft limit on open files, from /proc (0 where there is none).
fn max_fds() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line["Max open files".len()..]
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0)
}

/// Open file descriptors from /proc (0 where there is none).
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve` leaves TCP_NODELAY and SO_SNDBUF to the listener on Linux:
    /// an accepted stream socket must have both (a stalled client is only
    /// cut if its send buffer is bounded).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_stream_sockets_inherit_nodelay_and_the_send_buffer() {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)), 64 << 10).expect("a listener");
        let addr = listener.local_addr().expect("bound");
        let _client = TcpStream::connect(addr).await.expect("connects");
        let (accepted, _) = listener.accept().await.expect("accepted");
        assert!(
            accepted.nodelay().expect("readable"),
            "TCP_NODELAY inherited"
        );
        let size = socket2::SockRef::from(&accepted)
            .send_buffer_size()
            .expect("readable");
        // The kernel doubles what it is given (up to net.core.wmem_max);
        // without it the socket would start at tcp_wmem's 16 KiB and be
        // autotuned to megabytes.
        assert!(
            (64 << 10..=128 << 10).contains(&size),
            "SO_SNDBUF inherited: {size}"
        );
    }

    #[test]
    fn resume_ids_are_parsed_per_topic() {
        let t = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        assert_eq!(starts("r", &t(&["A"]), None), [Start::Now]);
        assert_eq!(starts("r", &t(&["A"]), Some("r:42")), [Start::After(42)]);
        assert_eq!(starts("r", &t(&["A"]), Some("old:42")), [Start::Reset]);
        assert_eq!(starts("r", &t(&["A"]), Some("garbage")), [Start::Reset]);
        assert_eq!(
            starts("r", &t(&["A", "B"]), Some("r:42")),
            [Start::Reset, Start::Reset]
        );
        assert_eq!(
            starts("r", &t(&["A", "B", "C"]), Some("r:A=5,B=7")),
            [Start::After(5), Start::After(7), Start::Now]
        );
        assert_eq!(
            starts("r", &t(&["A", "B"]), Some("r:A=5,B=x")),
            [Start::Reset, Start::Reset]
        );
    }

    #[test]
    fn repeated_warnings_are_let_through_once_per_interval() {
        let mut limit = RateLimited::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(11)), Some(2));
    }

    #[test]
    fn run_tokens_differ_between_runs() {
        let a = run_token();
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(a, run_token());
        assert_eq!(a.len(), 8);
    }
}
