//! An HTTP/1.1 client for the gateway's responses, over any connection (a
//! socket, or an in-memory pipe): the status, the headers, and the body
//! parsed as SSE, every step bounded by the wait given at the request. A
//! response from another client (HTTP/2) is read the same way
//! ([`Client::from_response`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sse_parser::{Event, Item, Parser};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;

/// A response: status, headers and, for 200, an SSE stream.
pub struct Client {
    /// The status.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    body: Incoming,
    parser: Parser,
    wait: Duration,
    _driver: Option<tokio::task::JoinHandle<()>>,
}

/// `GET path` on `io` for the host `host`, with no extra header; each step
/// within `wait` (see [`request`]).
///
/// # Panics
///
/// As [`request`].
pub async fn get<I>(io: I, host: &str, path: &str, wait: Duration) -> Client
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    request(io, host, http::Method::GET, path, &[], Bytes::new(), wait).await
}

/// One request on `io`: `method path` with `headers` and `body`, for the
/// host `host`. Each step (the response, then each frame of its body) must
/// come within `wait`.
///
/// # Panics
///
/// When the connection fails or a step takes longer than `wait`: this is
/// for tests.
pub async fn request<I>(
    io: I,
    host: &str,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    wait: Duration,
) -> Client
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body)).expect("a request");
    let response = timeout(wait, sender.send_request(request))
        .await
        .expect("a response in time")
        .expect("a response");
    let (parts, body) = response.into_parts();
    Client {
        status: parts.status,
        headers: parts.headers,
        body,
        parser: Parser::new(),
        wait,
        _driver: Some(driver),
    }
}

impl Client {
    /// A response another client received (an HTTP/2 stream, say), read
    /// the same way: each step within `wait`.
    pub fn from_response(response: http::Response<Incoming>, wait: Duration) -> Self {
        let (parts, body) = response.into_parts();
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
            parser: Parser::new(),
            wait,
            _driver: None,
        }
    }

    /// The next parsed item, or `None` when the stream ended.
    pub async fn next_item(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.parser.next_item().expect("within limits") {
                return Some(item);
            }
            let frame = timeout(self.wait, self.body.frame())
                .await
                .expect("data in time")?;
            let Ok(frame) = frame else { return None };
            if let Ok(data) = frame.into_data() {
                self.parser.feed(data);
            }
        }
    }

    /// The next event, skipping comments and `retry:`, within the wait
    /// (heartbeats alone never satisfy it).
    pub async fn next_event(&mut self) -> Event {
        let wait = self.wait;
        let next = async {
            loop {
                match self.next_item().await.expect("the stream is open") {
                    Item::Event(event) => return event,
                    _ => continue,
                }
            }
        };
        timeout(wait, next).await.expect("an event in time")
    }

    /// The next `n` events.
    pub async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            events.push(self.next_event().await);
        }
        events
    }

    /// The body as text (for refusals).
    pub async fn text(self) -> String {
        let body = timeout(self.wait, self.body.collect())
            .await
            .expect("the body in time")
            .expect("a body")
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Reads until the stream ends; returns the items seen.
    pub async fn drain(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while let Some(item) = self.next_item().await {
            items.push(item);
        }
        items
    }
}
