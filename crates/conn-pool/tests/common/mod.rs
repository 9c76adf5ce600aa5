//! In-memory upstreams for paused-time tests: a duplex pipe served by hyper.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different subset.

use std::convert::Infallible;

use bytes::Bytes;
use hyper::body::{Body, Incoming};
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::DuplexStream;

/// One in-memory connection: every request on it gets a `text/event-stream`
/// response whose body `make_body` builds from the request.
pub fn serve_in_memory<B, F>(make_body: F) -> TokioIo<DuplexStream>
where
    F: Fn(&hyper::Request<Incoming>) -> B + Send + Sync + 'static,
    B: Body<Data = Bytes, Error = Infallible> + Send + 'static,
{
    let (client, server) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let response = event_stream(make_body(&req));
            async move { Ok::<_, Infallible>(response) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    TokioIo::new(client)
}

/// A body that sends `id: n` / `data: tick` events: the first after
/// `first`, then one per `period` (virtual time in paused tests); with
/// `open`, counted there while it lives.
pub struct Ticks {
    next: u64,
    period: std::time::Duration,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    open: Option<Arc<AtomicUsize>>,
}

impl Ticks {
    /// Ticks every `period` after `first`; counted in `open` while alive.
    pub fn new(
        first: std::time::Duration,
        period: std::time::Duration,
        open: Option<Arc<AtomicUsize>>,
    ) -> Self {
        if let Some(open) = &open {
            open.fetch_add(1, Ordering::SeqCst);
        }
        Self {
            next: 0,
            period,
            // Paused time (paused tests): the first tick after `first` of virtual time.
            sleep: Box::pin(tokio::time::sleep(first)),
            open,
        }
    }
}

impl Drop for Ticks {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Body for Ticks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        use std::future::Future as _;
        if self.sleep.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        let at = self.sleep.deadline() + self.period;
        self.sleep.as_mut().reset(at);
        self.next += 1;
        let event = format!("id: {}\ndata: tick\n\n", self.next);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(event)))))
    }
}

/// A `200 text/event-stream` response carrying `body`.
pub fn event_stream<B>(body: B) -> hyper::Response<B> {
    let mut response = hyper::Response::new(body);
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// One step of a scripted in-memory response body.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send these bytes.
    Send(&'static str),
    /// Send these bytes one per `every` (a drip).
    Drip(&'static str, std::time::Duration),
    /// Wait (virtual time).
    Wait(std::time::Duration),
    /// Stay open and silent until the client leaves.
    Hang,
}

/// How one in-memory connection behaves.
#[derive(Debug, Clone)]
pub enum Script {
    /// The connect fails with `ConnectionRefused`.
    Refuse,
    /// A response with this status and `Content-Type`, then the steps, then
    /// the end of the body.
    Respond {
        /// The status.
        status: u16,
        /// The content type.
        content_type: &'static str,
        /// Extra headers.
        headers: Vec<(&'static str, &'static str)>,
        /// The body.
        steps: Vec<Step>,
    },
}

impl Script {
    /// A `200 text/event-stream` response playing `steps`.
    pub fn stream(steps: Vec<Step>) -> Self {
        Self::Respond {
            status: 200,
            content_type: "text/event-stream",
            headers: Vec::new(),
            steps,
        }
    }
}

/// An in-memory upstream: the k-th connection plays the k-th script (then
/// `fallback`), counting connections and open bodies, recording requests.
#[derive(Clone)]
pub struct MemoryUpstream {
    scripts: Arc<parking_lot::Mutex<std::collections::VecDeque<Script>>>,
    fallback: Script,
    /// Connections attempted.
    pub attempts: Arc<AtomicUsize>,
    /// Response bodies still open.
    pub open: Arc<AtomicUsize>,
    /// The headers of every request, in order.
    pub requests: Arc<parking_lot::Mutex<Vec<hyper::HeaderMap>>>,
    /// When each connection was attempted (tokio's clock).
    pub attempted_at: Arc<parking_lot::Mutex<Vec<tokio::time::Instant>>>,
}

impl MemoryUpstream {
    /// Plays `scripts` in order, then `fallback` forever.
    pub fn new(scripts: Vec<Script>, fallback: Script) -> Self {
        Self {
            scripts: Arc::new(parking_lot::Mutex::new(scripts.into())),
            fallback,
            attempts: Arc::default(),
            open: Arc::default(),
            requests: Arc::default(),
            attempted_at: Arc::default(),
        }
    }

    /// Connections attempted so far.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Bodies open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// A body whose chunks a feeding task sends: the task sets the pace, and
/// ends the body by dropping its sender.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|frame| frame.map(|data| Ok(hyper::body::Frame::data(data))))
    }
}

/// A body fed by a task playing the steps; counts itself open until dropped.
pub struct ScriptBody {
    frames: ChannelBody,
    open: Arc<AtomicUsize>,
}

impl Drop for ScriptBody {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Body for ScriptBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.frames).poll_frame(cx)
    }
}

async fn play(steps: Vec<Step>, tx: tokio::sync::mpsc::Sender<Bytes>) {
    for step in steps {
        match step {
            Step::Send(text) => {
                if tx.send(Bytes::from_static(text.as_bytes())).await.is_err() {
                    return;
                }
            }
            Step::Drip(text, every) => {
                for byte in text.as_bytes() {
                    if tx.send(Bytes::copy_from_slice(&[*byte])).await.is_err() {
                        return;
                    }
                    // Paused time: the drip's pace costs the test nothing.
                    tokio::time::sleep(every).await;
                }
            }
            // Paused time: scripts run in paused tests.
            Step::Wait(d) => tokio::time::sleep(d).await,
            Step::Hang => {
                tx.closed().await;
                return;
            }
        }
    }
}

impl sse_conn_pool::Connector for MemoryUpstream {
    type Io = TokioIo<DuplexStream>;

    async fn connect(&self, _: &sse_conn_pool::Target) -> std::io::Result<Self::Io> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.attempted_at.lock().push(tokio::time::Instant::now());
        let script = self
            .scripts
            .lock()
            .pop_front()
            .unwrap_or_else(|| self.fallback.clone());
        let Script::Respond {
            status,
            content_type,
            headers,
            steps,
        } = script
        else {
            return Err(std::io::ErrorKind::ConnectionRefused.into());
        };
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (open, requests) = (self.open.clone(), self.requests.clone());
        tokio::spawn(async move {
            let steps = Arc::new(parking_lot::Mutex::new(Some(steps)));
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                requests.lock().push(req.headers().clone());
                let (tx, frames) = tokio::sync::mpsc::channel(16);
                if let Some(steps) = steps.lock().take() {
                    tokio::spawn(play(steps, tx));
                }
                open.fetch_add(1, Ordering::SeqCst);
                let mut response = hyper::Response::new(ScriptBody {
                    frames: ChannelBody(frames),
                    open: open.clone(),
                });
                *response.status_mut() =
                    hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
                response
                    .headers_mut()
                    .insert("content-type", HeaderValue::from_static(content_type));
                for (name, value) in &headers {
                    response
                        .headers_mut()
                        .insert(*name, HeaderValue::from_static(value));
                }
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), service)
                .await;
        });
        Ok(TokioIo::new(client))
    }
}

/// Fails every lookup, or hangs, counting lookups in flight.
#[derive(Clone, Default)]
pub struct FakeResolver {
    /// Hang instead of failing.
    pub hang: bool,
    /// Lookups in flight now.
    pub in_flight: Arc<AtomicUsize>,
    /// Lookups started so far.
    pub started: Arc<AtomicUsize>,
}

struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl sse_conn_pool::Resolve for FakeResolver {
    fn resolve(&self, host: &str, _port: u16) -> sse_conn_pool::Resolving {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.in_flight.clone());
        let hang = self.hang;
        let host = host.to_string();
        Box::pin(async move {
            let _guard = guard;
            if hang {
                std::future::pending::<()>().await;
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host}: no such host (in-memory resolver)"),
            ))
        })
    }
}

/// Waits until `done` holds, looking every 5 ms, at most `bound`: a bounded
/// wait on something the test can observe. The 5 ms are paused time in a
/// paused test, and the wall clock in one over real sockets (where the
/// condition comes from another task's I/O).
pub async fn until(bound: std::time::Duration, what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(bound, async {
        while !done() {
            // Paused time in a paused test, the wall clock over sockets.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for: {what}");
}
