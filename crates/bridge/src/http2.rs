//! HTTP/2 on the stream listener, served with the `h2` crate directly
//! (hyper serves it on the admin listener).
//!
//! Through hyper, a response body is polled only while its stream has
//! flow-control window, and hyper offers no way to reset one stream from
//! outside: a subscriber whose window stayed shut could only be cut by
//! closing the whole connection, and with it the client's other streams.
//! Here each stream's task owns its `SendStream`, so:
//!
//! - **A shut window is a slow consumer.** The body is pulled only when
//!   the stream has window, so the subscriber's queue fills and its topic's
//!   policy applies, exactly as when an HTTP/1.1 socket stops draining.
//!   When its data has not moved for the write timeout, that stream alone
//!   is reset (`CANCEL`); the connection's other streams go on.
//! - **Rapid reset is cut.** Every stream the client resets within a
//!   second of opening it costs a token from a bucket of
//!   `h2_max_pending_resets` refilled at one a second; an empty bucket
//!   closes the connection with `ENHANCE_YOUR_CALM`. (`h2` itself bounds
//!   the resets of streams not yet accepted.)
//! - **Drain sends GOAWAY** as soon as the gateway starts draining: the
//!   client opens its next stream elsewhere while this connection's
//!   streams end with their `retry:` hints.
//! - A client that does not answer PINGs is gone; a connection with no
//!   stream for the idle timeout (or none at all for the header timeout)
//!   is closed with a GOAWAY.

use std::convert::Infallible;
use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, SendStream};
use http::{Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Body as _;
use sse_conn_pool::Connector;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::metrics;

/// A reply's body.
type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;
use crate::state::{Shared, stopped};

/// The client's connection preface: how a cleartext HTTP/2 (h2c) client
/// with prior knowledge starts.
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Stream resets by the server (errors) a client may cause before its
/// connection is closed.
pub(crate) const MAX_ERROR_RESETS: usize = 256;
/// The largest header list a client may send.
pub(crate) const MAX_HEADER_LIST: u32 = 16 << 10;
/// PINGs: how often, and how long an answer may take.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(20);
pub(crate) const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes h2 holds for one stream beyond its window (like the socket's
/// `send_buffer` on HTTP/1.1).
const MAX_SEND_BUFFER: usize = 64 << 10;

/// How one stream ended.
#[derive(PartialEq, Eq)]
enum Ended {
    /// Its body ended, or the gateway reset it.
    Done,
    /// The client reset it.
    ClientReset,
}

/// A client reset counts against the connection's bucket only when its
/// stream was younger than this: the attack opens and resets at once,
/// while a page closing `EventSource`s it has had for a while (a
/// dashboard switching views) is not one.
const EARLY_RESET: Duration = Duration::from_secs(1);

/// Serves one HTTP/2 connection (`io` starts with the client's preface)
/// from `peer`; every request goes through `route`.
pub(crate) async fn serve<C, I>(
    io: I,
    peer: IpAddr,
    shared: &Arc<Shared<C>>,
    stop: &mut watch::Receiver<bool>,
) where
    C: Connector,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(config.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(config.h2_max_pending_resets)
        .max_local_error_reset_streams(Some(MAX_ERROR_RESETS))
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER);
    let accepted = Instant::now();
    let Ok(Ok(mut conn)) = tokio::time::timeout(
        config.header_read_timeout,
        builder.handshake::<_, Bytes>(io),
    )
    .await
    else {
        return;
    };
    let mut keepalive = std::pin::pin!(keepalive(conn.ping_pong()));
    let mut drain = shared.drain.subscribe();
    let mut streams = JoinSet::new();
    let mut resets = Bucket::new(config.h2_max_pending_resets, accepted);
    // When there was last no stream in progress (`None`: there has been none).
    let mut idle_since: Option<Instant> = None;
    let mut closing = false;
    loop {
        let idle_at = match (streams.is_empty(), idle_since) {
            (false, _) => None,
            (true, None) => Some(accepted + config.header_read_timeout),
            (true, Some(since)) => Some(since + config.idle_timeout),
        };
        let idle = async {
            match idle_at {
                Some(at) if !closing => tokio::time::sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            request = conn.accept() => match request {
                Some(Ok((req, respond))) => {
                    let shared = shared.clone();
                    streams.spawn(async move {
                        let opened = Instant::now();
                        let ended = stream(&shared, req, respond, peer).await;
                        (ended, opened.elapsed())
                    });
                }
                // The client left, or broke the protocol; or the GOAWAY's
                // streams are done.
                Some(Err(_)) | None => break,
            },
            Some(ended) = streams.join_next() => {
                if streams.is_empty() {
                    idle_since = Some(Instant::now());
                }
                let early = matches!(ended, Ok((Ended::ClientReset, lived)) if lived < EARLY_RESET);
                if early && !resets.take(Instant::now()) {
                    metrics::record_h2_rapid_reset();
                    tracing::warn!(%peer, "HTTP/2 client resets streams in a loop: connection closed");
                    conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                    break;
                }
            }
            () = &mut keepalive => break,
            () = idle => {
                closing = true;
                conn.graceful_shutdown();
            }
            _ = drain.wait_for(Option::is_some), if !closing => {
                closing = true;
                conn.graceful_shutdown();
            }
            () = stopped(stop), if !closing => {
                closing = true;
                conn.graceful_shutdown();
            }
        }
    }
    // Send what is queued (a GOAWAY), briefly: the streams are ended.
    streams.abort_all();
    let _ = tokio::time::timeout(Duration::from_secs(1), poll_fn(|cx| conn.poll_closed(cx))).await;
}

/// Resolves when the client stopped answering PINGs.
async fn keepalive(ping: Option<h2::PingPong>) {
    let Some(mut ping) = ping else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(PING_EVERY).await;
        if ping.send_ping(h2::Ping::opaque()).is_err() {
            return;
        }
        match tokio::time::timeout(PING_TIMEOUT, poll_fn(|cx| ping.poll_pong(cx))).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}

/// Client resets a connection may make: a burst of `burst`, then one a
/// second.
struct Bucket {
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(burst: usize, now: Instant) -> Self {
        #[allow(clippy::cast_precision_loss)]
        let burst = burst as f64;
        Self {
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token; `false` when there is none.
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// One request: routed, then its response written as the stream's window
/// allows.
async fn stream<C: Connector>(
    shared: &Arc<Shared<C>>,
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: IpAddr,
) -> Ended {
    // Requests on this listener carry no body worth reading: drop it
    // (its window is given back by h2).
    let (parts, _) = req.into_parts();
    let req = Request::from_parts(parts, ());
    // This stream's own kill: a stalled stream is reset alone.
    let kill = Arc::new(Notify::new());
    let route = crate::route::stream(shared, req, peer, kill.clone());
    let reply = tokio::select! {
        reply = route => reply,
        _ = poll_fn(|cx| respond.poll_reset(cx)) => return Ended::ClientReset,
    };
    let (parts, body) = reply.into_parts();
    let end = body.is_end_stream();
    let Ok(send) = respond.send_response(Response::from_parts(parts, ()), end) else {
        return Ended::Done;
    };
    if end {
        return Ended::Done;
    }
    pipe(send, body, &kill).await
}

/// Writes `body` to `send`, pulling a frame only once the stream has
/// window for it (as hyper does: h2 holds one frame beyond the window, at
/// most `MAX_SEND_BUFFER` per stream, and trickles it out as WINDOW_UPDATEs
/// come).
async fn pipe(mut send: SendStream<Bytes>, mut body: Body, kill: &Notify) -> Ended {
    // One registration for the whole stream, not one per frame (a new
    // `Notified` takes the Notify's lock when polled and when dropped).
    let killed = kill.notified();
    tokio::pin!(killed);
    loop {
        // Window first: while the client takes nothing, the subscriber's
        // queue holds (and bounds) what waits for it.
        send.reserve_capacity(1);
        while send.capacity() == 0 {
            let window = poll_fn(|cx| {
                if let Poll::Ready(capacity) = send.poll_capacity(cx) {
                    // `None` or an error: the stream is gone (reset,
                    // connection closed).
                    return Poll::Ready(matches!(capacity, Some(Ok(_))));
                }
                send.poll_reset(cx).map(|_| false)
            });
            tokio::select! {
                open = window => if !open {
                    return Ended::ClientReset;
                },
                () = &mut killed => return cut(&mut send),
            }
        }
        // Biased: a frame ready goes out without polling the rest; they
        // are polled (their wakers registered) when the body has nothing.
        let frame = tokio::select! {
            biased;
            frame = body.frame() => frame,
            _ = poll_fn(|cx| send.poll_reset(cx)) => return Ended::ClientReset,
            () = &mut killed => return cut(&mut send),
        };
        let Some(Ok(frame)) = frame else {
            let _ = send.send_data(Bytes::new(), true);
            return Ended::Done;
        };
        if let Ok(data) = frame.into_data()
            && send.send_data(data, false).is_err()
        {
            return Ended::ClientReset;
        }
    }
}

/// The subscriber stalled (its window stayed shut for the write timeout):
/// reset this stream only.
fn cut(send: &mut SendStream<Bytes>) -> Ended {
    metrics::record_h2_stalled();
    send.send_reset(Reason::CANCEL);
    Ended::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_allowed_in_a_burst_then_one_a_second() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(3, t0);
        assert!((0..3).all(|_| bucket.take(t0)));
        assert!(!bucket.take(t0));
        assert!(bucket.take(t0 + Duration::from_secs(1)));
        assert!(!bucket.take(t0 + Duration::from_secs(1)));
        assert!((0..3).all(|_| bucket.take(t0 + Duration::from_secs(60))));
    }
}
