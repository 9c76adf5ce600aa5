//! The running gateway: [`start`] puts it in front of a pool on two
//! listeners (streams, admin) the caller bound; each connection is served
//! by the HTTP/1.1 fast path or hyper; [`GatewayHandle::shutdown`] drains.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http::header::ORIGIN;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use sse_conn_pool::{Connector, Pool, Source};
use sse_health::Reports;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::admin;
use crate::admin::session::Sessions;
use crate::admin::throttle::Throttle;
use crate::auth::Principals;
use crate::config::BridgeConfig;
use crate::edge::forwarded;
use crate::edge::proxy;
use crate::edge::tls::{Certificate, TlsFiles};
use crate::event::run_token;
use crate::h1;
use crate::hooks::Hooks;
use crate::housekeeping::housekeeping;
use crate::http2;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::listener::Listener;
use crate::metrics;
use crate::queue::Closed;
use crate::reload::Reloader;
use crate::reply;
use crate::route;
use crate::state::{Shared, duration_ms, stopped};
use crate::subscribe;

/// A running gateway. [`shutdown`](Self::shutdown) drains it.
pub struct GatewayHandle<C: Connector> {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared<C>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// Starts the gateway in front of `pool`: client streams on `streams`, the
/// admin endpoints on `admin` (bind them with
/// [`TcpAcceptor`](crate::TcpAcceptor), or use [`memory`](crate::memory)
/// listeners in tests), with the application's `hooks`.
///
/// Bind the listeners before building the pool, and give their addresses
/// to `pool`'s `stream.redirects.own`: an upstream URL or redirect that
/// leads back to the gateway is then refused (the `ssegate` binary does).
///
/// # Errors
///
/// The configuration is invalid (`InvalidInput`, naming the key), or a
/// listener cannot tell its address.
pub fn start<C: Connector, S: Listener, A: Listener>(
    config: BridgeConfig,
    pool: Pool<C>,
    streams: S,
    admin: A,
    hooks: Hooks,
) -> io::Result<GatewayHandle<C>> {
    let source = Arc::new(pool.clone());
    start_with_source(config, pool, source, streams, admin, hooks)
}

/// As [`start`], with the topics' events from `source` instead of from
/// `pool` directly: a cluster (`sse-cluster`) that shares upstreams
/// between instances. `pool` still serves the admin views and is closed at
/// shutdown. When the source numbers its events, event ids are its
/// positions under its token, so a client resumes on any instance.
///
/// # Errors
///
/// As [`start`].
pub fn start_with_source<C: Connector, S: Listener, A: Listener>(
    config: BridgeConfig,
    pool: Pool<C>,
    source: Arc<dyn Source>,
    streams: S,
    admin: A,
    hooks: Hooks,
) -> io::Result<GatewayHandle<C>> {
    let invalid = |e: String| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid bridge configuration: {e}"),
        )
    };
    config.validate().map_err(|e| invalid(e.to_string()))?;
    let (addr, admin_addr) = (streams.local_addr()?, admin.local_addr()?);
    // The listener given may differ from `admin_listen`: its real address
    // decides.
    if !admin_addr.ip().is_loopback() && config.admin_token.is_none() {
        if !config.admin_public_read {
            return Err(invalid(format!(
                "admin_listen: the admin listener is on {admin_addr}, not loopback, and has no admin_token: set one (SSEGATE_ADMIN_TOKEN), or admin_public_read = true"
            )));
        }
        tracing::warn!(%admin_addr, "the admin listener is not on loopback and has no token: anyone who reaches it can read it (admin_public_read)");
    }
    let authenticator = config.auth.load().map_err(|e| invalid(e.to_string()))?;
    let certificate = |files: Option<&TlsFiles>, key: &'static str, listener: &'static str| {
        files
            .map(|f| {
                f.load(key)
                    .and_then(|pair| Certificate::new(listener, pair))
            })
            .transpose()
            .map_err(|e| invalid(e.to_string()))
    };
    let tls = certificate(config.tls.as_ref(), "tls", "streams")?;
    let admin_tls = certificate(config.admin_tls.as_ref(), "admin_tls", "admin")?;
    let principals = Principals::new(config.auth.max_streams_per_token);
    let max_connections = connection_cap(&config, &hooks);
    metrics::record_connections_max(max_connections);
    let config = Arc::new(config);
    let limits = Limits::new(
        config.max_subscribers,
        config.max_per_ip,
        config.new_streams_per_sec,
        config.new_streams_per_ip_per_sec,
        hooks.leak,
    );
    let shared = Arc::new(Shared {
        hub: Hub::new(
            pool,
            source.clone(),
            config.clone(),
            source.positions().unwrap_or_else(|| run_token().into()),
        ),
        limits,
        draining: AtomicBool::new(false),
        drain: watch::channel(None).0,
        reports: Mutex::new(Reports::new(Instant::now().into_std())),
        spread: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        max_connections,
        admin_connections: AtomicU64::new(0),
        admin_addr,
        write_timeout_ms: AtomicU64::new(duration_ms(config.write_timeout)),
        status_streams: AtomicU64::new(0),
        auth: parking_lot::RwLock::new(Arc::new(authenticator)),
        principals,
        sessions: Sessions::default(),
        admin_throttle: Throttle::default(),
        hooks,
        in_force: Mutex::new((*config).clone()),
        tls,
        admin_tls,
        trusted_proxies: parking_lot::RwLock::new(config.trusted_proxies.clone()),
        config,
    });
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(accept(
        streams,
        shared.clone(),
        stopped.clone(),
        Role::Streams,
    ));
    tasks.spawn(accept(admin, shared.clone(), stopped.clone(), Role::Admin));
    tasks.spawn(housekeeping(shared.clone(), stopped));
    tracing::info!(
        %addr,
        %admin_addr,
        run = shared.hub.run_token(),
        max_connections,
        "gateway listening"
    );
    Ok(GatewayHandle {
        addr,
        admin_addr,
        shared,
        stop,
        tasks,
    })
}

/// The cap on client connections: `max_connections`, or (when it is 0)
/// the process's open-file limit minus `fd_reserve`, or no cap if the
/// limit is unknown (no process probe).
fn connection_cap(config: &BridgeConfig, hooks: &Hooks) -> u64 {
    if config.max_connections > 0 {
        return config.max_connections as u64;
    }
    let limit = hooks.process.as_ref().map_or(0, |p| p.max_fds());
    if limit == 0 {
        return u64::MAX;
    }
    limit.saturating_sub(config.fd_reserve as u64).max(1)
}

impl<C: Connector> GatewayHandle<C> {
    /// A handle that applies reloaded settings to this gateway.
    pub fn reloader(&self) -> Reloader<C> {
        Reloader::new(self.shared.clone())
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

    /// Client connections open now.
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
        // keep time for closing the upstreams. The last stream to end wakes
        // this (a stream's admission is released when its body drops).
        let streams_by = deadline - self.shared.config.drain_deadline / 4;
        let _ = tokio::time::timeout_at(streams_by, self.shared.limits.emptied()).await;
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

#[derive(Clone, Copy)]
enum Role {
    Streams,
    Admin,
}

impl Role {
    fn admin(self) -> bool {
        matches!(self, Self::Admin)
    }

    fn label(self) -> &'static str {
        match self {
            Self::Streams => "streams",
            Self::Admin => "admin",
        }
    }
}

async fn accept<C: Connector, L: Listener>(
    mut listener: L,
    shared: Arc<Shared<C>>,
    mut stop: watch::Receiver<bool>,
    role: Role,
) {
    let mut connections = JoinSet::new();
    let mut accept_errors = RateLimited::new(Duration::from_secs(10));
    loop {
        let (io, peer) = tokio::select! {
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
        // Over the cap: closed at once, before anything is read, so that
        // descriptors and memory stay bounded and the accept queue drains.
        let Some(counted) = Connection::open(&shared, role) else {
            drop(io);
            continue;
        };
        connections.spawn(serve(io, peer, counted, stop.clone(), role));
        while connections.try_join_next().is_some() {}
    }
    // Connections finish their graceful shutdown; the caller bounds this.
    while connections.join_next().await.is_some() {}
}

/// Counts a connection of `role` while it lives (on every path out of
/// `serve`, a panic included: the guard is dropped as the task unwinds).
struct Connection<C: Connector> {
    shared: Arc<Shared<C>>,
    role: Role,
}

impl<C: Connector> Connection<C> {
    /// Counts a new connection of `role`, or `None` at its cap.
    fn open(shared: &Arc<Shared<C>>, role: Role) -> Option<Self> {
        let (count, cap) = shared.connection_count(role.admin());
        let open = count.fetch_add(1, Ordering::SeqCst) + 1;
        if open > cap {
            count.fetch_sub(1, Ordering::SeqCst);
            metrics::record_connection_refused(role.label());
            return None;
        }
        metrics::record_connections(role.label(), open);
        Some(Self {
            shared: shared.clone(),
            role,
        })
    }
}

impl<C: Connector> Drop for Connection<C> {
    fn drop(&mut self) {
        let (count, _) = self.shared.connection_count(self.role.admin());
        let open = count.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::record_connections(self.role.label(), open);
    }
}

async fn serve<C: Connector, I>(
    mut io: I,
    peer: SocketAddr,
    counted: Connection<C>,
    mut stop: watch::Receiver<bool>,
    role: Role,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = counted.shared.clone();
    let timeout = shared.config.header_read_timeout;
    match role {
        Role::Admin => match &shared.admin_tls {
            Some(tls) => {
                Box::pin(async {
                    if let Some(io) = tls.accept(io, timeout).await {
                        serve_hyper(io, peer.ip(), &shared, &mut stop, role).await;
                    }
                })
                .await;
            }
            None => Box::pin(serve_hyper(io, peer.ip(), &shared, &mut stop, role)).await,
        },
        Role::Streams if shared.config.proxy_protocol => {
            // The balancer's header comes first, in clear (see `edge`).
            Box::pin(async {
                match proxy::read(&mut io, timeout).await {
                    Ok(proxied) => {
                        let believed = {
                            let trusted = shared.trusted_proxies.read();
                            trusted.is_empty() || forwarded::trusted(&trusted, peer.ip())
                        };
                        let client = proxied
                            .source
                            .filter(|_| believed)
                            .map_or(peer.ip(), |a| a.ip());
                        let io = h1::Rewind::new(proxied.rest, io);
                        serve_streams_tls(io, client, &shared, &mut stop).await;
                    }
                    Err(reason) => metrics::record_proxy_failure(reason),
                }
            })
            .await;
        }
        // Inline: the cleartext HTTP/1.1 subscription is what the gateway
        // holds by the thousand, and every other path is boxed below, so
        // this task stays the size of that one.
        Role::Streams => serve_streams_tls(io, peer.ip(), &shared, &mut stop).await,
    }
}

/// A stream-listener connection from `peer`, through TLS when the listener
/// has it; ALPN `h2` goes straight to HTTP/2.
async fn serve_streams_tls<C: Connector, I>(
    io: I,
    peer: IpAddr,
    shared: &Arc<Shared<C>>,
    stop: &mut watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match &shared.tls {
        Some(tls) => {
            Box::pin(async {
                let Some(io) = tls.accept(io, shared.config.header_read_timeout).await else {
                    return;
                };
                if io.get_ref().1.alpn_protocol() == Some(b"h2") {
                    http2::serve(io, peer, shared, stop).await;
                } else {
                    serve_streams(io, peer, shared, stop).await;
                }
            })
            .await;
        }
        None => serve_streams(io, peer, shared, stop).await,
    }
}

/// An HTTP/1.1 (or prior-knowledge HTTP/2) stream-listener connection:
/// subscriptions take the fast path (see `h1`), HTTP/2's preface goes to
/// `http2`, everything else to hyper, from the first byte.
async fn serve_streams<C: Connector, I>(
    mut io: I,
    peer: IpAddr,
    shared: &Arc<Shared<C>>,
    stop: &mut watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match h1::read_head(&mut io, shared.config.header_read_timeout).await {
        h1::Head::Stream(req) => {
            let kill = Arc::new(Notify::new());
            let origin = req.headers().get(ORIGIN).cloned();
            let ip = shared.client_ip(peer, req.headers());
            let mut reply = subscribe::stream(shared, req, ip, kill.clone()).await;
            reply::cors(&shared.config, origin.as_ref(), &mut reply);
            // Not raced with `stop`: a stream ends in the drain, before the
            // listeners stop; one still open at the deadline is aborted
            // with its task. (A select here would poll the stop channel,
            // shared by every stream, at each of this stream's events.)
            let _ = h1::respond(&mut io, reply, &kill).await;
        }
        // Boxed: neither may size the fast path's task (see `serve`).
        h1::Head::Other(read) if read.starts_with(&http2::PREFACE[..14]) => {
            Box::pin(http2::serve(h1::Rewind::new(read, io), peer, shared, stop)).await;
        }
        h1::Head::Other(read) => {
            let io = h1::Rewind::new(read, io);
            Box::pin(serve_hyper(io, peer, shared, stop, Role::Streams)).await;
        }
        h1::Head::Gone => {}
    }
}

/// One connection through hyper (HTTP/1.1 and HTTP/2): the admin listener,
/// and whatever the streams' fast path does not take.
async fn serve_hyper<C: Connector, I>(
    io: I,
    peer: IpAddr,
    shared: &Arc<Shared<C>>,
    stop: &mut watch::Receiver<bool>,
    role: Role,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let kill = &Arc::new(Notify::new());
    let activity = Arc::new(Activity::default());
    let service = {
        let (shared, kill, activity) = (shared.clone(), kill.clone(), activity.clone());
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let (shared, kill) = (shared.clone(), kill.clone());
            // In progress until the response body is dropped: a stream
            // keeps its connection busy for as long as it is open.
            let in_flight = activity.enter();
            async move {
                let reply = match role {
                    Role::Streams => route::stream(&shared, req, peer, kill).await,
                    Role::Admin => admin::route(&shared, req, peer).await,
                };
                Ok::<_, Infallible>(reply.map(|body| {
                    Tracked {
                        body,
                        _in_flight: in_flight,
                    }
                    .boxed_unsync()
                }))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_read_timeout);
    let config = &shared.config;
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(config.h2_max_pending_resets)
        .max_local_error_reset_streams(http2::MAX_ERROR_RESETS)
        .max_header_list_size(http2::MAX_HEADER_LIST)
        // A client that stopped answering PINGs is gone: its streams end.
        .keep_alive_interval(http2::PING_EVERY)
        .keep_alive_timeout(http2::PING_TIMEOUT);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), service));
    let idle = activity.idle(config.header_read_timeout, config.idle_timeout);
    tokio::select! {
        _ = conn.as_mut() => return,
        // A stalled slow consumer: drop the socket (nothing else frees it).
        () = kill.notified() => return,
        () = stopped(stop) => {}
        // No request at all, or none in progress for the idle timeout.
        () = idle => {}
    }
    // A GOAWAY (HTTP/2) or a close after the response in progress.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.as_mut()).await;
}

/// Requests in progress on one connection served by hyper, and since when
/// there has been none: what the idle deadline watches.
#[derive(Default)]
struct Activity {
    state: Mutex<ActivityState>,
    changed: Notify,
}

#[derive(Default)]
struct ActivityState {
    in_flight: usize,
    /// Since when no request is in progress (`None`: never one yet, so
    /// since the connection was accepted).
    idle_since: Option<Instant>,
    ever: bool,
}

impl Activity {
    fn enter(self: &Arc<Self>) -> InFlight {
        let mut state = self.state.lock();
        state.in_flight += 1;
        state.ever = true;
        drop(state);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// Resolves when the connection has had no request in progress for
    /// `idle` (for `first` before its first request).
    async fn idle(&self, first: Duration, idle: Duration) {
        let accepted = Instant::now();
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let due = {
                let state = self.state.lock();
                if state.in_flight > 0 {
                    None
                } else if state.ever {
                    Some(state.idle_since.unwrap_or(accepted) + idle)
                } else {
                    Some(accepted + first)
                }
            };
            match due {
                None => changed.await,
                Some(due) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {
                            let state = self.state.lock();
                            if state.in_flight == 0 {
                                return;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in progress; dropping it (with the response body) ends it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.idle_since = Some(Instant::now());
        }
        drop(state);
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request in progress until dropped.
struct Tracked {
    body: UnsyncBoxBody<Bytes, Infallible>,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_warnings_are_let_through_once_per_interval() {
        let mut limit = RateLimited::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(11)), Some(2));
    }
}
