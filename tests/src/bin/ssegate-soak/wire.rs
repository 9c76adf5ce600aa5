//! A load process's side of the wire: opening a stream from a chosen
//! source address (with a TCP reset on drop when asked), and reading its
//! SSE events.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sse_parser::{Event, Item, Parser};
use tokio::net::TcpSocket;

/// This process's token (from `--token`), for every request.
pub(crate) static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Opens a stream: `GET path` from `source`, with `Last-Event-ID` if given.
/// `reset`: the socket closes with a TCP reset when dropped.
pub(crate) async fn open(
    gateway: SocketAddr,
    source: IpAddr,
    path: &str,
    last_id: Option<&str>,
    reset: bool,
) -> Result<hyper::Response<Incoming>, String> {
    let socket = TcpSocket::new_v4().map_err(|_| "socket".to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|_| "bind".to_string())?;
    let stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(gateway))
        .await
        .map_err(|_| "connect-timeout".to_string())?
        .map_err(|_| "connect".to_string())?;
    if reset {
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .map_err(|_| "linger".to_string())?;
    }
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| "handshake".to_string())?;
    tokio::spawn(conn);
    let mut request = hyper::Request::get(path)
        .header(hyper::header::HOST, gateway.to_string())
        .header(hyper::header::ACCEPT, "text/event-stream");
    if let Some(id) = last_id {
        request = request.header("last-event-id", id);
    }
    if let Some(token) = TOKEN.get().and_then(Option::as_deref) {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|_| "request".to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
        .await
        .map_err(|_| "headers-timeout".to_string())?
        .map_err(|_| "headers".to_string())?;
    if response.status() != hyper::StatusCode::OK {
        return Err(format!("status-{}", response.status().as_u16()));
    }
    Ok(response)
}

/// Reads SSE items from a response body.
pub(crate) struct Stream {
    body: Incoming,
    parser: Parser,
}

impl Stream {
    pub(crate) fn new(response: hyper::Response<Incoming>) -> Self {
        Self {
            body: response.into_body(),
            parser: Parser::new(),
        }
    }

    /// The next event; `Ok(None)` when the stream ended.
    pub(crate) async fn next_event(&mut self) -> Result<Option<Event>, String> {
        loop {
            match self.parser.next_item() {
                Ok(Some(Item::Event(event))) => return Ok(Some(event)),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(_) => return Err("parse".to_string()),
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser.feed(data);
                    }
                }
                Some(Err(_)) => return Err("body".to_string()),
                None => return Ok(None),
            }
        }
    }

    pub(crate) fn last_id(&self) -> String {
        self.parser.last_event_id().as_str().to_string()
    }
}
