//! Upstream sockets: at most `max_per_host` per target, and one HTTP/2
//! connection per origin shared by every stream to it.
//!
//! A stream asks for a [`Lease`] per connection attempt. When the origin has
//! a live HTTP/2 connection, the lease is a new h2 stream on it; otherwise a
//! socket is opened (waiting for a per-host slot, within the caller's
//! connect deadline) and, if HTTP/2 was negotiated, offered to the next
//! streams. A socket closes when the last lease on it is dropped: the
//! registry holds only weak references, so nothing outlives its users.
//!
//! Until an origin is known not to speak HTTP/2, connection attempts to it
//! are made one at a time, so that a burst of streams to a new origin (a
//! pool starting up) shares the first connection instead of racing to open
//! one each. Once an origin answered with HTTP/1.1, attempts run in parallel.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::connector::{Connector, Target};
use crate::metrics;

/// How often an HTTP/2 upstream connection is PINGed (also while idle),
/// and how long an answer may take before the connection is closed: a
/// half-dead connection shared by many streams is found within 30 s, not
/// at each stream's idle timeout.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
/// See [`H2_PING_INTERVAL`].
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);

/// The sockets of one pool (or of streams that share a [`StreamConfig`]):
/// clones share them.
///
/// [`StreamConfig`]: crate::StreamConfig
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Registry>,
}

struct Registry {
    max_per_host: usize,
    hosts: Mutex<HashMap<Target, Host>>,
    /// Established connections lost per origin, over about the last second
    /// (at most [`MAX_LOSS_ORIGINS`] origins).
    losses: Mutex<HashMap<Target, Losses>>,
}

/// Origins whose recent losses are remembered; older ones are forgotten
/// first. Origins come from the configuration, so this is never reached
/// in practice.
const MAX_LOSS_ORIGINS: usize = 1024;

/// A sliding one-second count: the current second's losses plus the last
/// second's, weighted by how much of it the window still covers.
#[derive(Debug, Clone, Copy)]
struct Losses {
    /// When the current second began.
    since: tokio::time::Instant,
    current: u32,
    previous: u32,
}

impl Losses {
    fn new(now: tokio::time::Instant) -> Self {
        Self {
            since: now,
            current: 0,
            previous: 0,
        }
    }

    /// Rolls the window to `now`.
    fn roll(&mut self, now: tokio::time::Instant) {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= Duration::from_secs(2) {
            *self = Self::new(now);
        } else if elapsed >= Duration::from_secs(1) {
            self.previous = self.current;
            self.current = 0;
            self.since += Duration::from_secs(1);
        }
    }

    /// Losses within the last second (estimated across the boundary).
    fn count(&self, now: tokio::time::Instant) -> u32 {
        let into = now.saturating_duration_since(self.since).as_millis();
        let left = 1000u64.saturating_sub(u64::try_from(into).unwrap_or(u64::MAX));
        // Rounded up: a loss just before the boundary still counts.
        let carried = (u64::from(self.previous) * left).div_ceil(1000);
        self.current
            .saturating_add(u32::try_from(carried).unwrap_or(u32::MAX))
    }
}

struct Host {
    slots: Arc<Semaphore>,
    h2: Option<Weak<H2Conn>>,
    /// What the last connection negotiated (`None`: no connection yet).
    speaks_h2: Option<bool>,
    /// Held while connecting, unless the origin is known to be HTTP/1.1.
    connecting: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("max_per_host", &self.inner.max_per_host)
            .field("open_sockets", &self.open_sockets())
            .finish()
    }
}

impl Default for Connections {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_PER_HOST)
    }
}

impl Connections {
    /// Sockets per target by default: twice the pool's default stream cap,
    /// so every HTTP/1.1 stream can rotate make-before-break.
    pub const DEFAULT_MAX_PER_HOST: usize = 100;

    /// A registry allowing `max_per_host` sockets per target (at least 1).
    pub fn new(max_per_host: usize) -> Self {
        Self {
            inner: Arc::new(Registry {
                max_per_host: max_per_host.max(1),
                hosts: Mutex::new(HashMap::new()),
                losses: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The per-target cap.
    pub fn max_per_host(&self) -> usize {
        self.inner.max_per_host
    }

    /// Sockets open now, over every target.
    pub fn open_sockets(&self) -> usize {
        let max = self.inner.max_per_host;
        self.inner
            .hosts
            .lock()
            .values()
            .map(|h| max - h.slots.available_permits())
            .sum()
    }

    /// Targets with an entry (an open socket, or a waiter for one).
    pub fn hosts(&self) -> usize {
        self.inner.hosts.lock().len()
    }

    /// Established connections to `origin` lost within about the last
    /// second, by any stream sharing these connections.
    pub fn losses(&self, origin: &Target) -> u32 {
        let now = tokio::time::Instant::now();
        let mut losses = self.inner.losses.lock();
        losses.get_mut(origin).map_or(0, |l| {
            l.roll(now);
            l.count(now)
        })
    }

    /// Counts a lost established connection to `origin`.
    pub(crate) fn record_loss(&self, origin: &Target) {
        let now = tokio::time::Instant::now();
        let mut losses = self.inner.losses.lock();
        if !losses.contains_key(origin) && losses.len() >= MAX_LOSS_ORIGINS {
            // Forget what is quiet; if nothing is, the stalest origin.
            losses.retain(|_, l| now.saturating_duration_since(l.since) < Duration::from_secs(2));
            if losses.len() >= MAX_LOSS_ORIGINS
                && let Some(stalest) = losses
                    .iter()
                    .min_by_key(|(_, l)| l.since)
                    .map(|(t, _)| t.clone())
            {
                losses.remove(&stalest);
            }
        }
        let entry = losses
            .entry(origin.clone())
            .or_insert_with(|| Losses::new(now));
        entry.roll(now);
        entry.current = entry.current.saturating_add(1);
    }

    /// A live shared HTTP/2 connection to `target`, if any.
    fn shared_h2(&self, target: &Target) -> Option<Arc<H2Conn>> {
        let hosts = self.inner.hosts.lock();
        let conn = hosts.get(target)?.h2.as_ref()?.upgrade()?;
        (!conn.sender.is_closed()).then_some(conn)
    }

    /// A connection to `target` through `connector`: a new stream on a shared
    /// HTTP/2 connection, or a new socket (`fresh`: always a new socket,
    /// which then becomes the origin's shared HTTP/2 connection: a rotation
    /// must replace a connection that may be the problem, not reuse it).
    ///
    /// `dialing` is awaited when the attempt really starts: at once for a
    /// shared connection, else once the connector's limiter let it through
    /// ([`Connector::ready`]). The caller's connect deadline runs from then.
    pub(crate) async fn lease<C: Connector>(
        &self,
        connector: &C,
        target: &Target,
        fresh: bool,
        dialing: impl Future<Output = ()>,
    ) -> Result<Lease, LeaseError> {
        let shared = |this: &Self| if fresh { None } else { this.shared_h2(target) };
        if let Some(conn) = shared(self) {
            dialing.await;
            return Ok(Lease::h2(conn));
        }
        let (slots, connecting) = {
            let mut hosts = self.inner.hosts.lock();
            let host = hosts.entry(target.clone()).or_insert_with(|| Host {
                slots: Arc::new(Semaphore::new(self.inner.max_per_host)),
                h2: None,
                speaks_h2: None,
                connecting: Arc::new(tokio::sync::Mutex::new(())),
            });
            let connecting =
                (!fresh && host.speaks_h2 != Some(false)).then(|| host.connecting.clone());
            (host.slots.clone(), connecting)
        };
        // Removes the entry if this attempt leaves it unused (on every path:
        // the attempt may be aborted by the connect deadline while waiting).
        // A socket takes it over and does the same when it closes.
        let tidy = Tidy {
            registry: self.inner.clone(),
            target: target.clone(),
            slots,
        };
        let _connecting = match connecting {
            Some(lock) => {
                let guard = lock.lock_owned().await;
                if let Some(conn) = shared(self) {
                    dialing.await;
                    return Ok(Lease::h2(conn));
                }
                Some(guard)
            }
            None => None,
        };
        // Held until the connect ends (a concurrency slot of the limiter).
        let ready = connector.ready().await;
        dialing.await;
        let permit = match tidy.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics::record_host_wait();
                tidy.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| LeaseError::Connect(std::io::Error::other("closed")))?
            }
        };
        // Someone may have opened an HTTP/2 connection while this waited.
        if let Some(conn) = shared(self) {
            return Ok(Lease::h2(conn));
        }
        let io = connector
            .connect(target)
            .await
            .map_err(LeaseError::Connect)?;
        drop(ready);
        let socket = Socket::new(permit, tidy);
        let h2 = connector.negotiated_h2(&io);
        if let Some(host) = self.inner.hosts.lock().get_mut(target) {
            host.speaks_h2 = Some(h2);
        }
        if h2 {
            let (sender, driver) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(H2_PING_INTERVAL))
                .keep_alive_timeout(H2_PING_TIMEOUT)
                .keep_alive_while_idle(true)
                .handshake(io)
                .await
                .map_err(|_| LeaseError::Handshake)?;
            let conn = Arc::new(H2Conn {
                sender,
                _driver: AbortOnDrop(tokio::spawn(async move {
                    let _ = driver.await;
                })),
                _socket: socket,
            });
            // The newest connection is the one shared from now on; streams
            // on an older one stay there until they reconnect or rotate.
            if let Some(host) = self.inner.hosts.lock().get_mut(target) {
                host.h2 = Some(Arc::downgrade(&conn));
            }
            Ok(Lease::h2(conn))
        } else {
            let (sender, driver) = http1::handshake(io)
                .await
                .map_err(|_| LeaseError::Handshake)?;
            Ok(Lease {
                kind: LeaseKind::H1(sender),
                _conn: Box::new((
                    AbortOnDrop(tokio::spawn(async move {
                        let _ = driver.await;
                    })),
                    socket,
                )),
            })
        }
    }
}

/// Drops a target's entry once it has no socket, no waiter and no live h2.
/// Every holder of the entry's semaphore holds it through a `Tidy` (or a
/// permit), so "only the registry and this one" means unused.
struct Tidy {
    registry: Arc<Registry>,
    target: Target,
    slots: Arc<Semaphore>,
}

impl Drop for Tidy {
    fn drop(&mut self) {
        let mut hosts = self.registry.hosts.lock();
        let unused = hosts.get(&self.target).is_some_and(|h| {
            Arc::ptr_eq(&h.slots, &self.slots)
                && Arc::strong_count(&h.slots) == 2
                && h.slots.available_permits() == self.registry.max_per_host
                && h.h2.as_ref().is_none_or(|w| w.strong_count() == 0)
        });
        if unused {
            hosts.remove(&self.target);
        }
    }
}

/// Why a lease failed.
#[derive(Debug)]
pub(crate) enum LeaseError {
    /// The connector failed (DNS, TCP, TLS).
    Connect(std::io::Error),
    /// The HTTP handshake failed.
    Handshake,
}

/// One open socket: holds its per-host slot and counts in the gauge. Fields
/// drop in order: the slot is freed before the entry is tidied.
struct Socket {
    _permit: OwnedSemaphorePermit,
    _tidy: Tidy,
}

impl Socket {
    fn new(permit: OwnedSemaphorePermit, tidy: Tidy) -> Self {
        metrics::record_socket(1.0);
        Self {
            _permit: permit,
            _tidy: tidy,
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        metrics::record_socket(-1.0);
    }
}

struct H2Conn {
    sender: http2::SendRequest<Full<Bytes>>,
    _driver: AbortOnDrop,
    _socket: Socket,
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum LeaseKind {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// The right to send one request (and read its response) on a connection.
/// Keep it while reading the body: dropping it may close the socket.
pub(crate) struct Lease {
    kind: LeaseKind,
    _conn: Box<dyn Send + Sync>,
}

impl Lease {
    fn h2(conn: Arc<H2Conn>) -> Self {
        Self {
            kind: LeaseKind::H2(conn.sender.clone()),
            _conn: Box::new(conn),
        }
    }

    /// Whether this is an HTTP/2 stream (requests then use absolute form).
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self.kind, LeaseKind::H2(_))
    }

    /// Sends `request`.
    pub(crate) async fn send(
        &mut self,
        request: http::Request<Full<Bytes>>,
    ) -> hyper::Result<http::Response<Incoming>> {
        match &mut self.kind {
            LeaseKind::H1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
            LeaseKind::H2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
        }
    }
}
