//! A subscriber's response body: pulls from its queue as fast as the client
//! reads, writes a heartbeat comment when nothing else was written for the
//! heartbeat interval, and ends with a `retry:` hint when its queue closes
//! or the gateway drains.
//!
//! Frames on the wire (see the crate docs for the scheme):
//! - single-topic: the hub's shared block, `id: <run>:<seq>` included;
//! - multi-topic: the hub's shared block (`event: <topic>[:<type>]`), then
//!   this stream's `id: <run>:<topic>=<seq>,<topic>=<seq>...`;
//! - `event: ssegate-gap` / `event: ssegate-reset` with a JSON `data`.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Body, Frame};
use sse_conn_pool::Connector;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::auth::PrincipalGuard;
use crate::event::UNPOSITIONED;
use crate::hub::Membership;
use crate::limits::Admission;
use crate::metrics;
use crate::queue::{Out, Queue, Taken};

/// Items written as one frame at most (a bound on the frame's size with
/// the queue's byte bound).
const MAX_BATCH: usize = 256;

/// When a heartbeat is due after `now`: `every` later, rounded up to a
/// grid of a sixteenth of `every` (at most a second). Thousands of idle
/// streams then wake together about once a second instead of each on its
/// own: far fewer thread wake-ups for the same heartbeats.
fn heartbeat_at(now: Instant, every: Duration) -> Instant {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    let grid = (every / 16).clamp(Duration::from_millis(1), Duration::from_secs(1));
    let due = (now + every).saturating_duration_since(base);
    let slots = due.as_nanos().div_ceil(grid.as_nanos());
    base + grid * u32::try_from(slots).unwrap_or(u32::MAX)
}

pub(crate) struct SseBody<C: Connector> {
    queue: Arc<Queue>,
    topics: Vec<Arc<str>>,
    positions: Vec<u64>,
    /// Per topic: whether its last event had no position (a cluster's
    /// fallback upstream): the id line then says so, and a resume from it
    /// is a reset, never a wrong place.
    unpositioned: Vec<bool>,
    run: Arc<str>,
    /// A frame to write before pulling again (a multi-topic id line).
    pending: Option<Bytes>,
    heartbeat_every: Duration,
    heartbeat: Pin<Box<Sleep>>,
    /// Resolves when the gateway drains (with the drain's start); then this
    /// stream ends at `drain_at`.
    drain: Pin<Box<dyn Future<Output = Option<Instant>> + Send>>,
    /// Whether `drain` was polled once (its waker is then registered: a
    /// task's waker does not change, so it need not be polled again until
    /// the drain starts; every poll would lock the channel's waiter list,
    /// shared by every stream).
    drain_armed: bool,
    /// Tells, without a lock, whether the drain has started.
    drain_seen: watch::Receiver<Option<Instant>>,
    drain_at: Option<Pin<Box<Sleep>>>,
    /// This stream's place in the drain window, as a fraction.
    drain_offset: f64,
    drain_spread: Duration,
    retry_hint: Duration,
    ended: bool,
    /// The subscriber's span: its topics and address, for every log line.
    span: tracing::Span,
    /// When its token expires (auth on): then the stream ends.
    expiry: Option<Pin<Box<Sleep>>>,
    counters: metrics::StreamCounters,
    _membership: Membership<C>,
    _admission: Admission,
    _principal: Option<PrincipalGuard>,
}

pub(crate) struct BodyParts<C: Connector> {
    pub(crate) span: tracing::Span,
    pub(crate) queue: Arc<Queue>,
    pub(crate) topics: Vec<Arc<str>>,
    pub(crate) positions: Vec<u64>,
    pub(crate) run: Arc<str>,
    pub(crate) first: Bytes,
    pub(crate) heartbeat: Duration,
    pub(crate) drain: watch::Receiver<Option<Instant>>,
    pub(crate) drain_offset: f64,
    pub(crate) drain_spread: Duration,
    pub(crate) retry_hint: Duration,
    pub(crate) membership: Membership<C>,
    pub(crate) admission: Admission,
    pub(crate) principal: Option<PrincipalGuard>,
    pub(crate) expires: Option<Instant>,
}

impl<C: Connector> SseBody<C> {
    pub(crate) fn new(parts: BodyParts<C>) -> Self {
        metrics::record_stream_opened();
        parts.span.in_scope(|| tracing::debug!("stream opened"));
        Self {
            span: parts.span,
            queue: parts.queue,
            topics: parts.topics,
            unpositioned: vec![false; parts.positions.len()],
            positions: parts.positions,
            run: parts.run,
            pending: Some(parts.first),
            heartbeat_every: parts.heartbeat,
            heartbeat: Box::pin(tokio::time::sleep_until(heartbeat_at(
                Instant::now(),
                parts.heartbeat,
            ))),
            drain_armed: false,
            drain_seen: parts.drain.clone(),
            drain: Box::pin(async move {
                let mut rx = parts.drain;
                rx.wait_for(Option::is_some).await.ok().and_then(|v| *v)
            }),
            drain_at: None,
            drain_offset: parts.drain_offset,
            drain_spread: parts.drain_spread,
            retry_hint: parts.retry_hint,
            ended: false,
            expiry: parts
                .expires
                .map(|at| Box::pin(tokio::time::sleep_until(at))),
            counters: metrics::StreamCounters::new(),
            _membership: parts.membership,
            _admission: parts.admission,
            _principal: parts.principal,
        }
    }

    fn multi(&self) -> bool {
        self.topics.len() > 1
    }

    /// The `id:` line of a multi-topic stream, with the blank line.
    fn id_line(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(16 + self.topics.len() * 16);
        out.put_slice(b"id: ");
        out.put_slice(self.run.as_bytes());
        if self.unpositioned.contains(&true) {
            out.put_u8(UNPOSITIONED);
        }
        out.put_u8(b':');
        for (i, (topic, seq)) in self.topics.iter().zip(&self.positions).enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.put_slice(topic.as_bytes());
            // Formatted in place: no string per number (this runs per
            // subscriber per event).
            let _ = write!(out, "={seq}");
        }
        out.put_slice(b"\n\n");
        out.freeze()
    }

    /// Everything taken from the queue as one frame (one write): a lone
    /// item as it is, without a copy.
    fn render_batch(&mut self, taken: Taken) -> Bytes {
        let (mut events, mut bytes) = (0, 0);
        let frame = match taken {
            Taken::Nothing => Bytes::new(),
            Taken::One(out) => {
                let part = self.render(out, &mut events, &mut bytes);
                match self.pending.take() {
                    // A multi-topic stream's id line goes in the same write.
                    Some(id) => {
                        let mut frame = BytesMut::with_capacity(part.len() + id.len());
                        frame.extend_from_slice(&part);
                        frame.extend_from_slice(&id);
                        frame.freeze()
                    }
                    None => part,
                }
            }
            Taken::Many(batch) => {
                let mut frame = BytesMut::new();
                for out in batch {
                    let part = self.render(out, &mut events, &mut bytes);
                    frame.extend_from_slice(&part);
                    // A multi-topic stream's id line follows each event.
                    if let Some(id) = self.pending.take() {
                        frame.extend_from_slice(&id);
                    }
                }
                frame.freeze()
            }
        };
        if events > 0 {
            self.counters.sent(events, bytes);
        }
        frame
    }

    fn render(&mut self, out: Out, events: &mut u64, bytes: &mut usize) -> Bytes {
        match out {
            Out::Event { topic, event } => {
                if event.positioned {
                    self.positions[topic] = event.seq;
                }
                self.unpositioned[topic] = !event.positioned;
                *events += 1;
                *bytes += event.len();
                if self.multi() {
                    self.pending = Some(self.id_line());
                    event.multi.clone()
                } else {
                    event.single.clone()
                }
            }
            Out::Gap { topic, missed } => Bytes::from(format!(
                "event: ssegate-gap\ndata: {{\"topic\":\"{}\",\"missed\":{missed}}}\n\n",
                self.topics[topic]
            )),
            Out::Reset { topic, reason } => Bytes::from(format!(
                "event: ssegate-reset\ndata: {{\"topic\":\"{}\",\"reason\":\"{reason}\"}}\n\n",
                self.topics[topic]
            )),
        }
    }

    /// The last frame: a retry hint (jittered by this stream's offset, so
    /// that clients come back spread out).
    fn farewell(&mut self) -> Bytes {
        self.ended = true;
        self.span
            .in_scope(|| tracing::debug!("stream ending with a retry hint"));
        let spread = self.drain_spread.mul_f64(self.drain_offset);
        sse_parser::encode_retry(self.retry_hint + spread)
            .into_iter()
            .chain(*b"\n")
            .collect::<Vec<u8>>()
            .into()
    }
}

impl<C: Connector> Body for SseBody<C> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        // A pending frame goes out even after the end was decided (the
        // goodbye after `ssegate-expired`).
        if let Some(frame) = this.pending.take() {
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(expiry) = this.expiry.as_mut()
            && expiry.as_mut().poll(cx).is_ready()
        {
            this.expiry = None;
            metrics::record_expired();
            this.span
                .in_scope(|| tracing::debug!("token expired: ending the stream"));
            this.pending = Some(this.farewell());
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b"event: ssegate-expired\ndata: {\"reason\":\"token expired\"}\n\n",
            )))));
        }
        // Draining: end at this stream's moment in the drain window.
        let drain_started = !this.drain_armed || this.drain_seen.has_changed().unwrap_or(true);
        if this.drain_at.is_none()
            && drain_started
            && let Poll::Ready(start) = {
                this.drain_armed = true;
                this.drain.as_mut().poll(cx)
            }
        {
            let start = start.unwrap_or_else(Instant::now);
            let at = start + this.drain_spread.mul_f64(this.drain_offset);
            this.drain_at = Some(Box::pin(tokio::time::sleep_until(at)));
        }
        if let Some(at) = this.drain_at.as_mut()
            && at.as_mut().poll(cx).is_ready()
        {
            let bye = this.farewell();
            return Poll::Ready(Some(Ok(Frame::data(bye))));
        }
        match this.queue.pop_many(cx.waker(), MAX_BATCH) {
            Ok(Taken::Nothing) => {}
            Ok(taken) => {
                let frame = this.render_batch(taken);
                let next = heartbeat_at(Instant::now(), this.heartbeat_every);
                this.heartbeat.as_mut().reset(next);
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            Err(_) => {
                let bye = this.farewell();
                return Poll::Ready(Some(Ok(Frame::data(bye))));
            }
        }
        if this.heartbeat.as_mut().poll(cx).is_ready() {
            let next = heartbeat_at(Instant::now(), this.heartbeat_every);
            this.heartbeat.as_mut().reset(next);
            this.counters.heartbeat();
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b":\n")))));
        }
        Poll::Pending
    }
}

impl<C: Connector> Drop for SseBody<C> {
    fn drop(&mut self) {
        self.span.in_scope(|| tracing::debug!("stream closed"));
        metrics::record_stream_closed();
    }
}
