//! The stream listener's HTTP/1.1 fast path for SSE subscriptions.
//!
//! An idle subscriber is what a gateway holds by the thousand, so what it
//! costs in memory is what the gateway costs. Through hyper's HTTP/1.1
//! server a stream keeps hyper's connection state: an 8 KiB read buffer
//! and an 8 KiB write buffer (`INIT_BUFFER_SIZE`, not configurable below
//! that), the dispatcher and the cached request headers, about 20 KiB of
//! resident memory per idle subscriber in the fan-out benchmark. Here, a
//! `GET /v1/stream...` HTTP/1.1 request is parsed with `httparse` (the
//! parser hyper itself uses), answered through the same `subscribe::stream`
//! logic as any other, and its body written with chunked framing straight
//! to the socket: what stays per subscriber is its body, its queue and a
//! small task.
//!
//! Everything else (other paths and methods, HTTP/1.0, requests with a
//! body or an `Upgrade`, HTTP/2's preface, anything `httparse` refuses) is
//! handed to hyper with the bytes already read put back in front
//! ([`Rewind`]), so hyper sees the connection from its first byte.
//!
//! A stream ends the connection when it ends (`connection: close` is not
//! needed: the chunked body's last chunk ends the response, then the socket
//! closes). Bytes a client sends after its request are read and dropped;
//! its EOF ends the stream at once, like hyper's server would.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderName, HeaderValue, Method, Request, Version};
use hyper::body::Body as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use crate::reply::Reply;

/// The most header bytes read before giving the connection to hyper (which
/// then applies its own limits and answers 431).
const MAX_HEAD: usize = 64 * 1024;
/// Headers `httparse` looks at; more goes to hyper.
const MAX_HEADERS: usize = 64;

/// What the first bytes of a connection are.
pub(crate) enum Head {
    /// A subscription this path serves.
    Stream(Request<()>),
    /// Anything else: these bytes were read and go back in front.
    Other(Vec<u8>),
    /// The client left (or sent nothing) before a complete head.
    Gone,
}

/// Reads the request head within `timeout`.
pub(crate) async fn read_head<I: AsyncRead + Unpin>(socket: &mut I, timeout: Duration) -> Head {
    let mut buf = Vec::with_capacity(1024);
    let read = tokio::time::timeout(timeout, async {
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve(buf.len());
            }
            match socket.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf) {
                // Pipelined bytes after the head (unusual for a GET that
                // streams forever) are hyper's to handle.
                Ok(httparse::Status::Complete(len)) if len == buf.len() => {
                    return Some(subscription_of(&request));
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                // Too long, too many headers, not HTTP/1, or pipelined:
                // hyper decides.
                _ => return Some(None),
            }
        }
    })
    .await;
    match read {
        // Slow headers: hyper's own timer would cut it too.
        Err(_) | Ok(None) => Head::Gone,
        Ok(Some(Some(request))) => Head::Stream(request),
        Ok(Some(None)) => Head::Other(buf),
    }
}

/// The request, if `head` is a subscription this path serves.
#[cfg(test)]
fn subscription(head: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(head).ok()?;
    subscription_of(&parsed)
}

/// The parsed request, if it is a subscription this path serves.
fn subscription_of(parsed: &httparse::Request<'_, '_>) -> Option<Request<()>> {
    if parsed.method? != "GET" || parsed.version? != 1 {
        return None;
    }
    let path = parsed.path?;
    if !(path == "/v1/stream" || path.starts_with("/v1/stream?") || path.starts_with("/v1/stream/"))
    {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11);
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        // A body, an expectation or an upgrade: hyper's business. Any other
        // `connection` (browsers send `keep-alive`) is fine: a stream ends
        // its connection anyway.
        let upgrade = name == http::header::CONNECTION
            && header
                .value
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"upgrade"));
        if upgrade
            || name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::UPGRADE
            || name == http::header::EXPECT
        {
            return None;
        }
        request = request.header(name, HeaderValue::from_bytes(header.value).ok()?);
    }
    request.body(()).ok()
}

/// Writes `reply` and, for a stream, its body until it ends, the client
/// leaves, or `kill` fires. Returns when the connection should close.
pub(crate) async fn respond<I: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut I,
    reply: Reply,
    kill: &tokio::sync::Notify,
) -> io::Result<()> {
    let (parts, mut body) = reply.into_parts();
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    // Written into `head`: the header map (its heap part too) is not held
    // for the stream's life.
    drop(parts);
    // A refusal has its whole (small) body at hand: length-delimited, and
    // the connection closes after it.
    if let Some(length) = body.size_hint().exact() {
        head.extend_from_slice(
            format!("content-length: {length}\r\nconnection: close\r\n\r\n").as_bytes(),
        );
        let mut all = head;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let Ok(frame) = frame;
            if let Ok(data) = frame.into_data() {
                all.extend_from_slice(&data);
            }
        }
        socket.write_all(&all).await?;
        return socket.shutdown().await;
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
    socket.write_all(&head).await?;
    drop(head);
    let mut scratch = [0u8; 64];
    // One registration for the whole stream, not one per event: a new
    // `Notified` takes the Notify's lock when first polled and again when
    // dropped.
    let killed = kill.notified();
    tokio::pin!(killed);
    loop {
        // Biased: the body first, so that an event ready to go is written
        // without polling the rest; they are polled (and their wakers
        // registered) whenever the body has nothing.
        let frame = tokio::select! {
            biased;
            frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)) => frame,
            // The client leaving (EOF or an error) ends the stream now;
            // anything it sends is dropped.
            read = socket.read(&mut scratch) => match read {
                Ok(n) if n > 0 => continue,
                _ => return Ok(()),
            },
            () = &mut killed => return Ok(()),
        };
        let Some(Ok(frame)) = frame else {
            // The body ended (drain, slow-consumer disconnect, expiry): the
            // last chunk, then close.
            socket.write_all(b"0\r\n\r\n").await?;
            return socket.shutdown().await;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        // Per event and subscriber: the chunk header is formatted on the
        // stack, and the three parts go out in one `writev` (tokio's
        // `write_all_buf` writes a chained `Buf` vectored), no allocation.
        let mut size = [0u8; 18];
        let header = chunk_size(&mut size, data.len());
        let mut chunk = Buf::chain(Buf::chain(header, &data[..]), &b"\r\n"[..]);
        // A stalled client: the write waits, and the sweep's `kill` ends
        // it (the write timeout).
        tokio::select! {
            biased;
            written = socket.write_all_buf(&mut chunk) => written?,
            () = &mut killed => return Ok(()),
        }
    }
}

/// `len` in hex followed by CRLF, written into `buf`: a chunk's header.
fn chunk_size(buf: &mut [u8; 18], len: usize) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut at = buf.len() - 2;
    buf[at..].copy_from_slice(b"\r\n");
    let mut n = len;
    loop {
        at -= 1;
        buf[at] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

/// A connection with bytes already read put back in front of it.
pub(crate) struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Rewind<I> {
    pub(crate) fn new(prefix: Vec<u8>, inner: I) -> Self {
        Self {
            prefix: Bytes::from(prefix),
            inner,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_headers_are_the_length_in_hex() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_size(&mut buf, 0), b"0\r\n");
        assert_eq!(chunk_size(&mut buf, 26), b"1a\r\n");
        assert_eq!(chunk_size(&mut buf, 4096), b"1000\r\n");
        assert_eq!(
            chunk_size(&mut buf, usize::MAX),
            b"ffffffffffffffff\r\n".as_slice()
        );
    }

    #[test]
    fn only_plain_subscriptions_take_the_fast_path() {
        let ok =
            subscription(b"GET /v1/stream/AAPL HTTP/1.1\r\nHost: x\r\nLast-Event-ID: r:5\r\n\r\n")
                .expect("a subscription");
        assert_eq!(ok.uri().path(), "/v1/stream/AAPL");
        assert_eq!(ok.headers()["last-event-id"], "r:5");
        assert!(subscription(b"GET /v1/stream?topic=A&topic=B HTTP/1.1\r\n\r\n").is_some());
        // What browsers send.
        assert!(
            subscription(b"GET /v1/stream/A HTTP/1.1\r\nConnection: keep-alive\r\nAccept: text/event-stream\r\n\r\n")
                .is_some()
        );
        for other in [
            &b"GET /v1/stream/A HTTP/1.0\r\n\r\n"[..],
            b"POST /v1/stream/A HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\n\r\n",
            b"GET /v1/streamer HTTP/1.1\r\n\r\n",
            b"GET /v1/stream/A HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"GET /v1/stream/A HTTP/1.1\r\nConnection: Upgrade\r\n\r\n",
            b"GET /v1/stream/A HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                subscription(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
